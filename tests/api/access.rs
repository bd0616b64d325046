//! Issue 20, "no one acts as someone else, and no one starves the others": safe event defaults
//! (`access_events.rs`), identities linked by subject (`access_identities.rs`), fair shares
//! (`access_fair_shares.rs`), sessions that end on every replica (`access_sessions.rs`) and
//! owner-only files (`access_files.rs`). Shared here: the built binary as a process.

#[path = "access_events.rs"]
mod events;
#[path = "access_fair_shares.rs"]
mod fair_shares;
#[path = "access_files.rs"]
mod files;
#[path = "access_identities.rs"]
mod identities;
#[path = "access_sessions.rs"]
mod sessions;

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_application-quality-api");

/// The binary with a clean environment, run in `dir`: `LOG_FORMAT=json`, no cluster, runs
/// recorded only, plus `env`.
pub fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .current_dir(dir)
        .env("KUBERNETES", "off")
        .env("EXECUTOR", "off")
        .env("LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a one-off command to its end, with `stdin` as its input.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// A free TCP port on `ip` (released again: the service binds it next).
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve` as a process, killed when dropped; its stderr lines are kept.
pub struct Served {
    child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Starts `serve` on `PORT=port` and waits (bounded) until `/health/readiness` answers 200
    /// on `probe`.
    pub fn start(mut cmd: Command, port: u16, probe: SocketAddr) -> Served {
        let mut child = cmd
            .env("PORT", port.to_string())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut served = Served {
            child,
            stderr: lines,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_status(probe, "/health/readiness") == Some(200) {
                return served;
            }
            if let Some(status) = served.child.try_wait().unwrap() {
                panic!(
                    "serve exited early ({status}): {:?}",
                    served.stderr.lock().unwrap()
                );
            }
            assert!(Instant::now() < deadline, "not ready after 30 s");
            // Connection refused comes back at once: a short pause keeps this from spinning.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether a stderr line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on a fresh plain socket (no runtime needed); the status, if one came.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split(' ').nth(1)?.parse().ok()
}
