//! `GET /api/openapi.json`: a valid OpenAPI 3.1 document with real schemas for every body, whose
//! operations all reach a handler of the running server. The router and the document are built
//! from one route list (`src/http/routes.rs`), so there is no list to keep in step here.

use crate::common::TestApp;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

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

/// What a schema says beyond words: an empty schema (`{}`, or only a description or an
/// example) accepts anything and documents nothing.
fn says_nothing(schema: &Value) -> bool {
    schema.as_object().is_some_and(|m| {
        m.keys()
            .all(|k| matches!(k.as_str(), "description" | "example" | "examples" | "title"))
    })
}

/// Components that are free-form on purpose, each with its reason.
const FREE_FORM: &[(&str, &str)] = &[(
    "ReportDocument",
    "a job report is whatever JSON the tool writes, stored verbatim",
)];

/// Every request and response body has a schema that describes it: a reference to a component
/// with properties (or items, or a type), never an empty schema, and never an object described
/// only in words.
#[tokio::test]
async fn every_body_has_a_real_schema() {
    let app = TestApp::spawn().await;
    let doc = fetch_document(&app).await;
    let components = &doc["components"]["schemas"];
    let free_form: BTreeSet<&str> = FREE_FORM.iter().map(|(name, _)| *name).collect();
    let resolve = |schema: &Value| -> (Option<String>, Value) {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap().to_string();
                (Some(name.clone()), components[&name].clone())
            }
            None => (None, schema.clone()),
        }
    };
    let mut bodies = 0;
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut contents: Vec<(String, &Value)> = Vec::new();
            if let Some(c) = op["requestBody"]["content"].as_object() {
                assert_eq!(
                    op["requestBody"]["required"], true,
                    "{method} {path}: a body is required"
                );
                contents.extend(c.iter().map(|(t, v)| (format!("request {t}"), v)));
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if let Some(c) = response["content"].as_object() {
                    contents.extend(c.iter().map(|(t, v)| (format!("{status} {t}"), v)));
                }
            }
            for (what, content) in contents {
                bodies += 1;
                let schema = &content["schema"];
                let (name, resolved) = resolve(schema);
                let resolved = match resolved["items"].as_object() {
                    // An array: its items must say something.
                    Some(_) => resolve(&resolved["items"]).1,
                    None => resolved,
                };
                let free = name.as_deref().is_some_and(|n| free_form.contains(n));
                if schema.is_null() || (says_nothing(&resolved) && !free) {
                    problems.push(format!("{method} {path} {what}: {schema}"));
                }
                if resolved["type"] == "object"
                    && resolved["properties"].is_null()
                    && resolved["additionalProperties"].is_null()
                    && !free
                    && !what.contains("text/plain")
                    && path != "/api/openapi.json"
                    && path != "/api/settings/"
                {
                    problems.push(format!(
                        "{method} {path} {what}: an object without properties"
                    ));
                }
            }
        }
    }
    assert!(bodies > 100, "{bodies} bodies");
    assert!(problems.is_empty(), "{problems:#?}");
    // The resources named in the issue have their shapes, not prose.
    for (name, field) in [
        ("Trigger", "cql2_filter"),
        ("TriggerInput", "params_mapping"),
        ("TriggerEvent", "event_body"),
        ("TriggerType", "data"),
        ("ReceivedEvent", "run_ids"),
        ("CloudEvent", "specversion"),
        ("ReplyData", "processed_id"),
        ("Results", "usage_report"),
        ("Stored", "stored"),
        ("Run", "user"),
        ("Pipeline", "owner_name"),
        ("Health", "status"),
    ] {
        assert!(
            components[name]["properties"][field].is_object(),
            "{name}.{field}: {}",
            components[name]
        );
    }
    let ingress = &doc["paths"]["/"]["post"];
    assert_eq!(
        ingress["requestBody"]["content"]["application/cloudevents+json"]["schema"]["$ref"],
        "#/components/schemas/CloudEvent"
    );
    assert_eq!(
        ingress["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ReplyData"
    );
    // No description carries a run of spaces from a broken line continuation.
    let text = doc.to_string();
    assert!(!text.contains("   "), "a run of spaces in the document");
}

/// Each documented operation reaches a handler on the running server: neither the router's 405
/// nor its fallback 404 (`{"detail": "Not found."}`; ids below parse, so handlers answer
/// otherwise).
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn().await;
    let doc = fetch_document(&app).await;
    let (_, token) = app.user_with_token("root", true).await;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
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
            let url = app.url(&concrete.join("/"));
            // Redirects (the sign-in routes) are answers of the route itself: not followed.
            let req = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth(&token);
            let req = if method == "get" || method == "delete" {
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
    assert!(operations >= 49, "{operations} operations");
}
