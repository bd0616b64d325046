//! One run's cwltool child: started in a process group of its own, waited for in a dedicated
//! blocking thread (which also collects its resource usage), and stopped as a whole group.
//!
//! The group is killed before the leader is reaped, so its id cannot be reused by an unrelated
//! process while we signal it: the leader stays a zombie (holding the id) until [`run`] has
//! swept the group. Tools a run leaves behind in the background are killed with it.

use std::{
    io,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
};

/// Resources the run's process tree used (cwltool and every tool it waited for).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub user_cpu_secs: f64,
    pub system_cpu_secs: f64,
    pub max_rss_kib: i64,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exit {
    /// Exit status, when it exited.
    pub code: Option<i32>,
    /// Terminating signal, when it was killed.
    pub signal: Option<i32>,
    pub usage: Usage,
}

#[derive(Debug, Default)]
struct Group {
    pgid: Option<i32>,
    reaped: bool,
    /// Killed before it started: [`run`] kills the group as soon as it exists.
    doomed: bool,
}

/// Signals the run's process group from other tasks (cancel, time limit, shutdown).
#[derive(Debug, Clone)]
pub struct GroupHandle {
    group: Arc<Mutex<Group>>,
    /// `true` once the leader is reaped (and its group swept).
    reaped: tokio::sync::watch::Sender<bool>,
}

impl Default for GroupHandle {
    fn default() -> Self {
        Self {
            group: Arc::default(),
            reaped: tokio::sync::watch::channel(false).0,
        }
    }
}

impl GroupHandle {
    /// Completes once the child has ended and its group was swept.
    pub async fn ended(&self) {
        let mut rx = self.reaped.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Sends `signal` to the whole group while the leader is not reaped. False when there is
    /// nothing (left) to signal.
    pub fn signal(&self, signal: i32) -> bool {
        let Ok(g) = self.group.lock() else {
            return false;
        };
        match g.pgid {
            // SAFETY: plain syscall; the group id is held by our unreaped child (module doc).
            Some(pgid) if !g.reaped => unsafe { libc::killpg(pgid, signal) == 0 },
            _ => false,
        }
    }

    /// Kills the whole group now, or as soon as it is started (a stop that races the start
    /// must not let the run go on: both sides decide under the same lock).
    pub fn kill(&self) {
        let Ok(mut g) = self.group.lock() else {
            return;
        };
        g.doomed = true;
        if let Some(pgid) = g.pgid
            && !g.reaped
        {
            // SAFETY: plain syscall; the group id is held by our unreaped child (module doc).
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }

    /// The group id, once started.
    pub fn pgid(&self) -> Option<i32> {
        self.group.lock().ok().and_then(|g| g.pgid)
    }
}

/// Starts `cmd` in a new process group and waits for it; blocking, so call it from a thread
/// that lives as long as the child (the parent-death signal is tied to the spawning thread).
/// `started` is told the group id as soon as it exists.
pub fn run(mut cmd: Command, group: &GroupHandle, pid_file: Option<PathBuf>) -> io::Result<Exit> {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; if the service dies, cwltool dies with it rather than
    // running on unsupervised (the next start-up fails its run and sweeps the group).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = {
        let mut g = group
            .group
            .lock()
            .map_err(|_| io::Error::other("poisoned process-group lock"))?;
        let child = cmd.spawn()?;
        g.pgid = Some(child.id() as i32);
        if g.doomed {
            // SAFETY: the group of the child we just started.
            unsafe {
                libc::killpg(child.id() as i32, libc::SIGKILL);
            }
        }
        child
    };
    let pid = child.id() as libc::pid_t;
    // The std handle never waits (we do, below); dropping it neither kills nor reaps.
    drop(child);
    if let Some(file) = pid_file {
        let _ = std::fs::write(file, pid.to_string());
    }
    wait_exited_not_reaped(pid)?;
    let mut g = group
        .group
        .lock()
        .map_err(|_| io::Error::other("poisoned process-group lock"))?;
    // SAFETY: the leader is a zombie, so the group id is still ours.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
    }
    let reaped = reap(pid);
    g.reaped = true;
    drop(g);
    group.reaped.send_replace(true);
    let (status, usage) = reaped?;
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Ok(Exit {
        code,
        signal,
        usage,
    })
}

/// Blocks until `pid` has exited, leaving it unreaped.
fn wait_exited_not_reaped(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: zeroed siginfo is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reaps `pid`, returning its wait status and the usage of its whole waited-for tree.
fn reap(pid: libc::pid_t) -> io::Result<(i32, Usage)> {
    loop {
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid out-parameter for wait4.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc == pid {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return Ok((
                status,
                Usage {
                    user_cpu_secs: secs(ru.ru_utime),
                    system_cpu_secs: secs(ru.ru_stime),
                    max_rss_kib: ru.ru_maxrss,
                },
            ));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The live (not zombie) processes of group `pgid`, read from `/proc`.
pub fn group_members(pgid: i32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (state, group) = state_and_group(&stat)?;
            (group == pgid && state != "Z").then_some(pid)
        })
        .collect()
}

/// The state and process group fields of a `/proc/<pid>/stat` line (the command name may
/// hold spaces and parentheses, so fields are counted after its last `)`).
fn state_and_group(stat: &str) -> Option<(&str, i32)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((state, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_parsed() {
        let line = "4242 (weird) name) S 1 4240 4240 0 -1 4194560 1 0 0 0";
        assert_eq!(state_and_group(line), Some(("S", 4240)));
        assert_eq!(state_and_group("garbage"), None);
    }

    #[test]
    fn exit_codes_and_group_kill() {
        let group = GroupHandle::default();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let exit = run(cmd, &group, None).unwrap();
        assert_eq!((exit.code, exit.signal), (Some(3), None));
        assert!(!group.signal(libc::SIGTERM), "nothing left to signal");

        // A background grandchild outlives its parent shell: it is swept with the group.
        let group = GroupHandle::default();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60 & echo started"]);
        cmd.stdout(std::process::Stdio::null());
        let exit = run(cmd, &group, None).unwrap();
        assert_eq!(exit.code, Some(0));
        let pgid = group.pgid().unwrap();
        // SIGKILL is delivered before `run` returns; the sleeper may linger as a zombie only.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(group_members(pgid).is_empty());
    }

    #[test]
    fn a_group_killed_before_it_starts_never_runs() {
        let group = GroupHandle::default();
        group.kill();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60"]);
        let exit = run(cmd, &group, None).unwrap();
        assert_eq!(exit.signal, Some(libc::SIGKILL));
    }

    #[test]
    fn a_signalled_group_ends() {
        let group = GroupHandle::default();
        let g2 = group.clone();
        let waiter = std::thread::spawn(move || {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "sleep 60; exit 0"]);
            run(cmd, &g2, None).unwrap()
        });
        while group.pgid().is_none() {
            std::thread::yield_now();
        }
        // The group exists from spawn on: signalling it must reach the shell.
        assert!(group.signal(libc::SIGTERM));
        let exit = waiter.join().unwrap();
        assert_eq!(exit.signal, Some(libc::SIGTERM));
    }
}
