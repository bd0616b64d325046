//! Sign-in benchmark: the whole browser round trip (`/oidc/authenticate/` -> the provider's
//! authorization, login and resume -> `/oidc/callback/` -> `/oidc/user-details/`) against the
//! real OpenID provider of the tests (`tests/oidc-provider`, `npm ci` first), with the service
//! in this process on a fresh SQLite file; then the cost of cookie authentication beside Bearer
//! on `GET /api/pipelines/` (sequential requests on one connection).
//!
//! Usage: `cargo run --release --example signin_bench [sign-ins] [requests]`

use application_quality_api::{
    build_state_with, catalogue, config::Config, runs::launcher::RecordingLauncher, serve,
};
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

const PUBLIC_URL: &str = "http://aq.test";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Cookies of one site (name -> value), from `Set-Cookie` headers.
#[derive(Default, Clone)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn absorb(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.0.remove(k);
            } else {
                self.0.insert(k.into(), val.into());
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn location(r: &reqwest::Response) -> url::Url {
    r.url()
        .join(r.headers()["location"].to_str().unwrap())
        .unwrap()
}

async fn get(c: &reqwest::Client, jar: &mut Jar, url: &str) -> reqwest::Response {
    let r = c
        .get(url)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(&r);
    r
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let sign_ins: usize = args.next().map_or(50, |a| a.parse().unwrap());
    let requests: usize = args.next().map_or(5000, |a| a.parse().unwrap());

    let mut provider = Command::new("node")
        .arg("provider.js")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc-provider"))
        .env("AQ_TEST_PUBLIC_URL", PUBLIC_URL)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node, and `npm ci` in tests/oidc-provider");
    let mut line = String::new();
    BufReader::new(provider.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let issuer = serde_json::from_str::<serde_json::Value>(&line).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    let vars = [
        (
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display()),
        ),
        ("KUBERNETES", "off".into()),
        ("PUBLIC_URL", PUBLIC_URL.into()),
        ("OIDC_ENABLED", "true".into()),
        (
            "OIDC_CONNECT_CONFIG_URL",
            format!("{issuer}/.well-known/openid-configuration"),
        ),
        ("OIDC_RP_CLIENT_ID", "application-quality".into()),
        (
            "OIDC_RP_CLIENT_SECRET",
            "application-quality-test-secret".into(),
        ),
    ];
    let config = Config::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.clone()))).unwrap();
    let state = build_state_with(config, Arc::new(RecordingLauncher::new("bench")))
        .await
        .unwrap();
    catalogue::seed::seed(&state.db).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serve_state = state.clone();
    tokio::spawn(async move {
        serve(serve_state, listener, std::future::pending())
            .await
            .unwrap()
    });

    let c = client();
    let (mut total, mut ours) = (Vec::new(), Vec::new());
    let mut last = Jar::default();
    // One more than measured: the first fetches the provider's discovery document and keys.
    for i in 0..=sign_ins {
        let started = Instant::now();
        let mut jar = Jar::default();
        let mut op = Jar::default();
        let t = Instant::now();
        let r = get(&c, &mut jar, &format!("{base}/oidc/authenticate/")).await;
        let mut service = t.elapsed();
        let r = get(&c, &mut op, location(&r).as_str()).await;
        let interaction = location(&r);
        let r = c
            .post(format!("{interaction}/login"))
            .header("cookie", op.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("login=user{}", i % 5))
            .send()
            .await
            .unwrap();
        op.absorb(&r);
        let r = get(&c, &mut op, location(&r).as_str()).await;
        let callback = location(&r);
        let t = Instant::now();
        let r = get(
            &c,
            &mut jar,
            &format!("{base}/oidc/callback/?{}", callback.query().unwrap()),
        )
        .await;
        assert_eq!(r.status(), 302);
        let r = get(&c, &mut jar, &format!("{base}/oidc/user-details/")).await;
        assert_eq!(r.status(), 200);
        service += t.elapsed();
        if i > 0 {
            total.push(started.elapsed());
            ours.push(service);
        }
        last = jar;
    }
    total.sort();
    ours.sort();
    println!(
        "sign-in round trip ({sign_ins} sign-ins): p50 {:.2} ms, p95 {:.2} ms; of which this service (authenticate + callback incl. code exchange + user-details): p50 {:.2} ms, p95 {:.2} ms",
        percentile(&total, 0.5),
        percentile(&total, 0.95),
        percentile(&ours, 0.5),
        percentile(&ours, 0.95)
    );

    // Bearer vs cookie, same user, same route, one keep-alive connection each.
    let pw = "bench-password-1";
    catalogue::users::add_user(&state.db, "bearer", pw, false)
        .await
        .unwrap();
    let token: serde_json::Value = c
        .post(format!("{base}/api/token/"))
        .json(&serde_json::json!({"username": "bearer", "password": pw}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access"].as_str().unwrap().to_string();
    let cookie = last.header();
    let url = format!("{base}/api/pipelines/");
    let mut bearer_times = Vec::new();
    let mut cookie_times = Vec::new();
    // Alternating blocks, so drift on a shared machine hits both alike.
    for _ in 0..10 {
        for (times, auth) in [(&mut bearer_times, true), (&mut cookie_times, false)] {
            let t = Instant::now();
            for _ in 0..requests / 10 {
                let req = c.get(&url);
                let req = if auth {
                    req.bearer_auth(&token)
                } else {
                    req.header("cookie", &cookie)
                };
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
            times.push(t.elapsed());
        }
    }
    let per = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64() * 1e6 / requests as f64;
    let (b, k) = (per(&bearer_times), per(&cookie_times));
    println!(
        "GET /api/pipelines/ ({requests} sequential requests each): Bearer {b:.1} us, session cookie {k:.1} us per request ({:+.1} us)",
        k - b
    );
    drop(provider.stdin.take());
    let _ = provider.wait();
}
