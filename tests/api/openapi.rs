//! `GET /api/openapi.json`: a valid OpenAPI 3 document that documents every route the router
//! serves, and nothing it does not serve.
//!
//! [`SERVED`] is the router's route table, written from the `router()` functions (`src/http/`,
//! `src/metrics.rs`). Three checks keep it honest: it equals the `.route(...)` calls found in
//! the sources under `src/` (a new route fails the suite until listed), each entry really
//! reaches a handler of the running server, and each entry is in the document (and the document
//! has no others).

use crate::common::TestApp;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Every (method, path) the router serves, as the router modules declare them (no trailing
/// slash; `NormalizePath` makes the slashed form reach the same handler).
const SERVED: &[(&str, &str)] = &[
    // events.rs
    ("post", "/"),
    ("post", "/api/events"),
    ("get", "/api/events"),
    ("post", "/{namespace}/{broker}"),
    // health.rs
    ("get", "/health/readiness"),
    ("get", "/health/liveness"),
    // index.rs
    ("get", "/api"),
    // metrics.rs
    ("get", "/metrics"),
    // jobreports.rs
    ("get", "/api/pipelines/{pipeline}/runs/{run}/jobreports"),
    ("post", "/api/pipelines/{pipeline}/runs/{run}/jobreports"),
    (
        "get",
        "/api/pipelines/{pipeline}/runs/{run}/jobreports/{id}",
    ),
    // openapi.rs
    ("get", "/api/openapi.json"),
    // pipelines.rs
    ("get", "/api/pipelines"),
    ("post", "/api/pipelines"),
    ("get", "/api/pipelines/{id}"),
    ("put", "/api/pipelines/{id}"),
    ("patch", "/api/pipelines/{id}"),
    ("delete", "/api/pipelines/{id}"),
    // results.rs
    ("post", "/api/pipelines/{pipeline}/runs/{run}/results"),
    // runlogs.rs
    ("get", "/api/pipelines/{pipeline}/runs/{run}/log"),
    // runs.rs
    ("get", "/api/pipelines/{pipeline}/runs"),
    ("post", "/api/pipelines/{pipeline}/runs"),
    ("get", "/api/pipelines/{pipeline}/runs/{run}"),
    ("patch", "/api/pipelines/{pipeline}/runs/{run}"),
    ("post", "/api/pipelines/{pipeline}/runs/{run}/cancel"),
    // settings.rs
    ("get", "/api/settings"),
    // tags.rs
    ("get", "/api/tags"),
    ("get", "/api/tags/{id}"),
    // tokens.rs
    ("post", "/api/token"),
    ("post", "/api/token/refresh"),
    // tools.rs
    ("get", "/api/tools"),
    ("get", "/api/tools/{slug}"),
    // triggers.rs
    ("get", "/api/triggers"),
    ("post", "/api/triggers"),
    ("get", "/api/triggers/{slug}"),
    ("put", "/api/triggers/{slug}"),
    ("patch", "/api/triggers/{slug}"),
    ("delete", "/api/triggers/{slug}"),
    ("get", "/api/triggers/{slug}/events"),
    ("get", "/api/triggers/{slug}/runs"),
    ("get", "/api/triggers/{slug}/events/{id}"),
    // triggertypes.rs
    ("get", "/api/triggertypes"),
    ("get", "/api/triggertypes/{slug}"),
    // users.rs
    ("get", "/api/users/me"),
    ("get", "/oidc/authenticate"),
    ("get", "/oidc/callback"),
    ("get", "/oidc/user-details"),
    ("get", "/oidc/logout"),
    ("post", "/oidc/logout"),
];

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn served() -> BTreeSet<(String, String)> {
    SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// The path as documented: API paths with the trailing slash clients use.
fn documented_path(path: &str) -> String {
    if path == "/api"
        || (path.starts_with("/api/") && !path.ends_with(".json"))
        || path.starts_with("/oidc/")
    {
        format!("{path}/")
    } else {
        path.to_string()
    }
}

async fn fetch_document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

/// Every `$ref` value in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// `{name}` segments of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn openapi_json_is_a_valid_openapi_3_document() {
    let app = TestApp::spawn().await;
    let doc = fetch_document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Application Quality API");
    assert!(doc["info"]["version"].is_string());
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["run_token"]["scheme"], "bearer");

    // Every reference resolves inside the document.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "unresolved {r}");
    }

    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            let id = op["operationId"].as_str().unwrap();
            assert!(
                operation_ids.insert(id.to_string()),
                "operationId {id} repeated"
            );
            // Path parameters: exactly the template's, each required.
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .inspect(|p| assert_eq!(p["required"], true, "{method} {path} {p}"))
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(declared, template_params(path), "{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            // The sign-in's steps succeed with a redirect.
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3')),
                "{method} {path} has no success response"
            );
            for (status, response) in responses {
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok(),
                    "{status}"
                );
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}"
                );
            }
            // Security requirements name existing schemes.
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes[scheme].is_object(), "{method} {path}: {scheme}");
                }
            }
        }
    }

    // A few facts the clients rely on.
    let token = &doc["paths"]["/api/token/"]["post"];
    assert!(token["security"].is_null(), "anyone may ask for a token");
    assert!(token["responses"]["429"]["headers"]["Retry-After"].is_object());
    assert!(token["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
    let create_run = &doc["paths"]["/api/pipelines/{pipeline}/runs/"]["post"];
    assert_eq!(create_run["security"], json!([{"bearer": []}]));
    assert_eq!(
        create_run["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Run"
    );
    assert!(create_run["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
    let report = &doc["paths"]["/api/pipelines/{pipeline}/runs/{run}/jobreports/"]["post"];
    assert_eq!(report["security"], json!([{"run_token": []}]));
    let tools = &doc["paths"]["/api/tools/"]["get"];
    assert_eq!(
        tools["security"],
        json!([{}, {"bearer": []}]),
        "optional auth"
    );

    // Same bytes with the trailing slash, and every time.
    let again: Value = app
        .client
        .get(app.url("/api/openapi.json/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, doc);
}

#[tokio::test]
async fn every_served_route_is_documented_and_nothing_else() {
    let app = TestApp::spawn().await;
    let doc = fetch_document(&app).await;
    let mut missing = Vec::new();
    for (method, path) in SERVED {
        let documented = documented_path(path);
        if !doc["paths"][&documented][method].is_object() {
            missing.push(format!("{} {documented}", method.to_uppercase()));
        }
    }
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    let expected: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), documented_path(p)))
        .collect();
    let mut extra = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if !expected.contains(&(method.clone(), path.clone())) {
                extra.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

/// The `.route(...)` calls of one source file as (method, path) pairs.
fn routes_in_source(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let open = rest.find('"').expect("route path literal");
        let close = open + 1 + rest[open + 1..].find('"').unwrap();
        let path = &rest[open + 1..close];
        // The method router: everything up to the `)` closing `.route(`.
        let mut depth = 1usize;
        let mut end = close + 1;
        for (i, c) in rest[close + 1..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = close + 1 + i;
                break;
            }
        }
        let methods = &rest[close + 1..end];
        for m in METHODS {
            let mut from = 0;
            while let Some(pos) = methods[from..].find(&format!("{m}(")) {
                let start = from + pos;
                let before = methods[..start].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    out.push((m.to_string(), path.to_string()));
                }
                from = start + m.len();
            }
        }
        rest = &rest[end..];
    }
    out
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn route_list_matches_the_router_modules() {
    let mut files = Vec::new();
    rust_files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut found = BTreeSet::new();
    for path in files {
        found.extend(routes_in_source(&std::fs::read_to_string(&path).unwrap()));
    }
    // The parser itself: a multi-line route with two methods and a fallback.
    assert_eq!(
        routes_in_source(
            r#"Router::new()
                .route(
                    "/a/{x}",
                    post(receive).get(list).fallback(m::not_found),
                )
                .route("/b", get(get_b))"#
        ),
        [
            ("get".to_string(), "/a/{x}".to_string()),
            ("post".to_string(), "/a/{x}".to_string()),
            ("get".to_string(), "/b".to_string()),
        ]
    );
    let listed = served();
    let unlisted: Vec<_> = found.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&found).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "in src/ but not in SERVED: {unlisted:?}; in SERVED but not in src/: {stale:?}"
    );
}

/// Each listed route reaches a handler on the running server: neither the router's 405 nor its
/// fallback 404 (`{"detail": "Not found."}`; ids below parse, so handlers answer otherwise).
#[tokio::test]
async fn every_listed_route_is_routed() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("root", true).await;
    for (method, path) in SERVED {
        let concrete: Vec<&str> = path
            .split('/')
            .map(|segment| match segment {
                "{namespace}" => "ns",
                "{broker}" => "default",
                "{slug}" => "no-such-slug",
                s if s.starts_with('{') => "1",
                s => s,
            })
            .collect();
        let url = app.url(&documented_path(&concrete.join("/")));
        // Redirects (the sign-in routes) are answers of the route itself: not followed.
        let req = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .request(method.to_uppercase().parse().unwrap(), &url)
            .bearer_auth(&token);
        let req = if *method == "get" || *method == "delete" {
            req
        } else {
            req.json(&json!({}))
        };
        let (status, body) = app.send(req).await;
        assert_ne!(status, 405, "{method} {url}: {body}");
        assert!(
            !(status == 404 && body == json!({"detail": "Not found."})),
            "{method} {url} fell through to the router's 404"
        );
        assert!(status < 500, "{method} {url}: {status} {body}");
    }
}
