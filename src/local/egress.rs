//! A sandboxed run's two ways out, each a Unix socket of its own that the sandbox's first
//! process relays its loopback ports to (see [`super::sandbox`]):
//!
//! - **callback**: bytes relayed to the service's own listener, so tools post job reports to
//!   `server_url` exactly as pods do (the token still authenticates them);
//! - **egress**: an HTTP `CONNECT` proxy that opens tunnels only to the `https://` hosts named
//!   in the run's own parameters (its repositories), and only when they resolve to public
//!   addresses: never this machine, a private network, link-local (cloud metadata) or
//!   multicast. Plain `http://` is not proxied.
//!
//! Sockets live in `<data dir>/sandbox/<run id>/` (the data directory is owner-only) and are
//! removed with the run's [`RunNet`].

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::{
    net::{TcpStream, UnixListener},
    task::JoinHandle,
};

/// How long a tunnel's connection to its host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The hosts a run may reach through the proxy: `(host, port)` of every `https://` URL among
/// its parameters, lower-cased.
pub fn allowed_hosts(params: &BTreeMap<String, Value>) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for v in params.values() {
        if let Some(s) = v.as_str()
            && let Ok(url) = url::Url::parse(s.trim())
            && url.scheme() == "https"
            && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
        {
            let entry = (host.trim_matches(['[', ']']).to_ascii_lowercase(), port);
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

/// Whether a tunnel may go to `ip`: public unicast only.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// The sockets of one sandboxed run, served until dropped.
pub struct RunNet {
    dir: PathBuf,
    pub callback_socket: PathBuf,
    pub egress_socket: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunNet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RunNet {
    /// Binds the run's sockets in `dir` (made afresh) and serves them: the callback relay to
    /// `service`, the egress proxy for `allowed`.
    pub fn open(
        dir: &Path,
        service: SocketAddr,
        allowed: Vec<(String, u16)>,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
        let callback_socket = dir.join("callback.sock");
        let egress_socket = dir.join("egress.sock");
        let callback = UnixListener::bind(&callback_socket)?;
        let egress = UnixListener::bind(&egress_socket)?;
        // The run's user must be able to connect; nobody else can reach the directory (the
        // data directory above it is owner-only).
        for s in [&callback_socket, &egress_socket] {
            std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o666))?;
        }
        let tasks = vec![
            tokio::spawn(relay(callback, service)),
            tokio::spawn(proxy(egress, allowed)),
        ];
        Ok(Self {
            dir: dir.to_path_buf(),
            callback_socket,
            egress_socket,
            tasks,
        })
    }
}

async fn relay(listener: UnixListener, service: SocketAddr) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut upstream) = TcpStream::connect(service).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream).await;
            }
        });
    }
}

async fn proxy(listener: UnixListener, allowed: Vec<(String, u16)>) {
    let allowed = std::sync::Arc::new(allowed);
    while let Ok((stream, _)) = listener.accept().await {
        let allowed = allowed.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let allowed = allowed.clone();
                async move { Ok::<_, std::convert::Infallible>(tunnel(req, &allowed).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn refuse(status: StatusCode, why: String) -> Response<Full<Bytes>> {
    tracing::info!(%status, reason = %why, "sandbox egress refused");
    let mut res = Response::new(Full::new(Bytes::from(format!("sandbox egress: {why}\n"))));
    *res.status_mut() = status;
    res
}

/// Answers one proxy request: a `CONNECT` to an allowed public host opens a tunnel.
async fn tunnel(
    mut req: Request<hyper::body::Incoming>,
    allowed: &[(String, u16)],
) -> Response<Full<Bytes>> {
    if req.method() != Method::CONNECT {
        return refuse(
            StatusCode::FORBIDDEN,
            "only https:// (CONNECT) leaves the sandbox".into(),
        );
    }
    let Some(authority) = req.uri().authority().cloned() else {
        return refuse(StatusCode::BAD_REQUEST, "CONNECT without host:port".into());
    };
    let host = authority
        .host()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let port = authority.port_u16().unwrap_or(443);
    if !allowed.iter().any(|(h, p)| *h == host && *p == port) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("{host}:{port} is not a repository of this run"),
        );
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("cannot resolve {host}: {e}"),
            );
        }
    };
    // Every address must be public: a name that also resolves to an internal address is
    // refused as a whole (DNS answers could alternate between the two).
    if addrs.is_empty() || addrs.iter().any(|a| !is_public(a.ip())) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("{host} resolves to an address runs may not reach"),
        );
    }
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..])).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return refuse(StatusCode::BAD_GATEWAY, format!("{host}:{port}: {e}")),
        Err(_) => {
            return refuse(
                StatusCode::GATEWAY_TIMEOUT,
                format!("{host}:{port}: timed out"),
            );
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let mut upstream = upstream;
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
        }
    });
    Response::new(Full::new(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_https_hosts_of_the_parameters_are_allowed() {
        let params: BTreeMap<String, Value> = serde_json::from_value(json!({
            "clone_subworkflow.clone.repo_url": "https://GitHub.com/o/r.git",
            "other": "https://example.org:8443/x",
            "plain": "http://example.net/",
            "file": "file:///etc",
            "n": 3,
            "server_url": "http://127.0.0.1:8080",
        }))
        .unwrap();
        assert_eq!(
            allowed_hosts(&params),
            vec![
                ("github.com".to_string(), 443),
                ("example.org".to_string(), 8443)
            ]
        );
    }

    #[test]
    fn internal_addresses_are_never_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.121.4", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_proxy_refuses_what_is_not_a_repository_of_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let net = RunNet::open(
            &dir.path().join("s"),
            "127.0.0.1:9".parse().unwrap(),
            vec![("localhost".into(), 5432)],
        )
        .unwrap();
        let ask = |line: &'static str| {
            let path = net.egress_socket.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
                s.write_all(line.as_bytes()).await.unwrap();
                let mut buf = vec![0; 512];
                let n = s.read(&mut buf).await.unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
        };
        // Not among the run's hosts.
        let r = ask("CONNECT 127.0.0.1:5432 HTTP/1.1\r\nHost: 127.0.0.1:5432\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        // Among them, but it is this machine.
        let r = ask("CONNECT localhost:5432 HTTP/1.1\r\nHost: localhost:5432\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 403") && r.contains("resolves"),
            "{r}"
        );
        // Plain HTTP is not proxied.
        let r = ask("GET http://localhost:5432/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    }
}
