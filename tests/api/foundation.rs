//! Foundation: health probes, error shapes, body limit, hosts.

use crate::common::{Options, TestApp};

#[tokio::test]
async fn health_probes_answer_200() {
    let app = TestApp::spawn().await;
    for path in ["/health/readiness", "/health/liveness"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn unknown_route_is_json_404_and_bad_host_is_400() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/nope/", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "Not found.");
    let (status, body) = app
        .send(
            app.client
                .get(app.url("/api/"))
                .header("host", "evil.example"),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("evil.example"));
    // health probes are exempt from the host check (kubelet uses the pod IP)
    let (status, _) = app
        .send(
            app.client
                .get(app.url("/health/readiness"))
                .header("host", "10.1.2.3"),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn body_limit_gives_json_413() {
    let app = TestApp::spawn_with(Options {
        env: vec![("MAX_BODY_BYTES".into(), "2048".into())],
        ..Default::default()
    })
    .await;
    let big = "x".repeat(4096);
    let (status, body) = app
        .send(
            app.client
                .post(app.url("/api/token/"))
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(status, 413);
    assert!(body["detail"].as_str().unwrap().contains("too large"));
}

#[tokio::test]
async fn generated_jwt_key_survives_restarts_and_differs_per_database() {
    let first = TestApp::spawn().await;
    let (_, token) = first.user_with_token("keeper", false).await;
    let (status, _) = first.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 200);
    // A restart (or another replica) on the same database accepts the token.
    let second = TestApp::spawn_with(Options {
        database_url: Some(first.database_url.clone()),
        ..Default::default()
    })
    .await;
    let (status, me) = second.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "keeper");
    // Another installation generated its own key: the token is worthless there.
    let other = TestApp::spawn().await;
    other.user("keeper", "keeper-password-1", false).await;
    let (status, _) = other.get("/api/users/me/", Some(&token)).await;
    assert!(
        status == 401 || status == 403,
        "foreign token accepted: {status}"
    );
}

#[tokio::test]
async fn configured_jwt_secret_is_used_and_not_stored() {
    use application_quality_api::db::entities::kv_setting;
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = TestApp::spawn_with(Options {
        env: vec![("JWT_SECRET".into(), "k".repeat(40))],
        ..Default::default()
    })
    .await;
    let (_, token) = app.user_with_token("sam", false).await;
    let (status, _) = app.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 200);
    let stored = kv_setting::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no generated key when JWT_SECRET is set");
    // A second app with the same secret but a fresh database does not know the user, so the
    // signature is accepted and the lookup fails: proof the key is the configured one.
    let twin = TestApp::spawn_with(Options {
        env: vec![("JWT_SECRET".into(), "k".repeat(40))],
        ..Default::default()
    })
    .await;
    let (status, body) = twin.get("/api/users/me/", Some(&token)).await;
    assert!(status == 401 || status == 403, "{status} {body}");
    assert!(
        !body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid"),
        "same secret, so the signature must verify: {body}"
    );
}

#[tokio::test]
async fn body_limit_applies_to_the_events_route_too() {
    let app = TestApp::spawn_with(Options {
        env: vec![("MAX_BODY_BYTES".into(), "2048".into())],
        ..Default::default()
    })
    .await;
    let r = app
        .client
        .post(app.url("/api/events/"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "big-1")
        .header("ce-source", "/tests")
        .header("ce-type", "org.eoepca.application-quality.probes.health")
        .header("content-type", "application/json")
        .body(format!("{{\"pad\": \"{}\"}}", "x".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// Every configuration variable (a field of a section deserialised from the environment in
/// `src/config/`, by its name or its serde `rename`), and the variables the command line and
/// the tests read, has a row in the configuration table of `docs/configuration.md`.
#[test]
fn configuration_doc_documents_every_variable() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    let mut sections: Vec<_> = std::fs::read_dir(root.join("src/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sections.sort();
    let mut fields = Vec::new();
    for path in sections {
        let text = std::fs::read_to_string(&path).unwrap();
        for body in text
            .split("#[derive(Debug, Clone, Deserialize)]\npub struct ")
            .skip(1)
        {
            let body = body.split("\n}\n").next().unwrap();
            // Attributes (possibly wrapped over several lines) gather until their field.
            let mut attributes = String::new();
            for line in body.lines().skip(1).map(str::trim) {
                if line.starts_with("///") {
                    continue;
                }
                let declaration = line.strip_prefix("pub(super) ").unwrap_or(line);
                let declaration = declaration.strip_prefix("pub ").unwrap_or(declaration);
                let name = declaration
                    .split_once(": ")
                    .map(|(n, _)| n)
                    .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
                let Some(name) = name else {
                    attributes.push_str(line);
                    continue;
                };
                // `#[serde(skip)]`: not read from the environment (derived, or read apart).
                if !attributes.contains("serde(skip)") {
                    let variable = attributes
                        .split("rename = \"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or(name);
                    fields.push(variable.to_uppercase());
                }
                attributes.clear();
            }
        }
    }
    assert!(fields.len() >= 100, "parsed {fields:?}");
    for name in fields.iter().map(String::as_str).chain([
        "APPLICATION_QUALITY_PASSWORD",
        "RUST_LOG",
        "TEST_BACKEND",
        "TEST_DATABASE_URL",
    ]) {
        assert!(
            doc.contains(&format!("| `{name}` |")) || doc.contains(&format!("`{name}`, ")),
            "the configuration table of docs/configuration.md lacks {name}"
        );
    }
}

/// Every relative link of the README and of `docs/` names a file that exists and, with a
/// `#fragment`, a heading of that file (GitHub's anchor rules), so moving a section cannot
/// leave a dead link behind.
#[test]
fn documentation_links_resolve() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.insert(0, root.join("README.md"));
    // Prose only: fenced blocks hold shell comments and JSON, neither headings nor links.
    let prose = |text: &str| -> Vec<String> {
        let mut fenced = false;
        text.lines()
            .filter(|l| {
                if l.starts_with("```") {
                    fenced = !fenced;
                    return false;
                }
                !fenced
            })
            .map(str::to_owned)
            .collect()
    };
    let anchor = |heading: &str| -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    };
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let name = file.strip_prefix(root).unwrap().display().to_string();
        for line in prose(&std::fs::read_to_string(file).unwrap()) {
            let mut rest = line.as_str();
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let target = &rest[..rest.find(')').unwrap_or(rest.len())];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
                let dest = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                if !dest.exists() {
                    broken.push(format!("{name}: {target} (no such file)"));
                } else if !fragment.is_empty() && dest.extension().is_some_and(|e| e == "md") {
                    let found = prose(&std::fs::read_to_string(&dest).unwrap())
                        .iter()
                        .filter(|l| l.starts_with('#'))
                        .any(|l| anchor(l.trim_start_matches('#')) == fragment);
                    if !found {
                        broken.push(format!("{name}: {target} (no such heading)"));
                    }
                }
            }
        }
    }
    assert!(checked >= 30, "found only {checked} relative links");
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

/// Event deliveries pass the `Host` check on every ingress path (brokers use the subscriber
/// URI's host), while the REST side of `/api/events/` keeps CORS for the browser frontend.
#[tokio::test]
async fn event_ingress_ignores_the_host_and_rest_paths_answer_cors_preflights() {
    let app = TestApp::spawn().await;
    for path in ["/", "/api/events/", "/default/primary"] {
        let (status, body) = app
            .send(
                app.client
                    .post(app.url(path))
                    .header("host", "broker-ingress.knative-eventing.svc.cluster.local")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("host-{path}"))
                    .header("ce-source", "tests")
                    .header("ce-type", "org.eoepca.application-quality.probes.health")
                    .header("content-type", "application/json")
                    .body("{}"),
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let origin = app.state.config.server.public_url.clone();
    for path in ["/api/events/", "/api/pipelines/"] {
        let r = app
            .client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", &origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            r.headers()["access-control-allow-origin"].to_str().unwrap(),
            origin,
            "{path}"
        );
    }
}
