//! Cold-start timer used by `scripts/bench.sh`: spawns the service binary N times on a fresh
//! copy of a prepared SQLite database and measures, per start, the time from exec to the first
//! 200 on a path (optionally with a bearer token). Prints one line per start and a summary.
//!
//! Usage: `coldstart <binary> <template.db> <path> <runs> [token]`

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18081)
}

fn get_ok(port: u16, path: &str, token: Option<&str>) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: coldstart <binary> <template.db> <path> <runs> [token]");
        std::process::exit(2);
    }
    let (binary, template, path) = (&args[1], &args[2], &args[3]);
    let runs: usize = args[4].parse().expect("runs");
    let token = args.get(5).map(String::as_str);
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let dir = std::env::temp_dir().join(format!("aq-coldstart-{}-{i}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let db = dir.join("aq.db");
        std::fs::copy(template, &db).expect("copy template db");
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .arg("serve")
            .env("PORT", port.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("KUBERNETES", "off")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn service");
        let deadline = started + Duration::from_secs(10);
        let mut ok = false;
        while Instant::now() < deadline {
            if get_ok(port, path, token) {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let elapsed = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        if !ok {
            eprintln!("start {i}: no 200 on {path} within 10 s");
            std::process::exit(1);
        }
        times.push(elapsed.as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!("{median:.1} {max:.1}");
}
