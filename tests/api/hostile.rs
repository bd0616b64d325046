//! A generated corpus of hostile requests and events (issue 7, "bad input, proven").
//!
//! Every route gets malformed JSON, wrong types for each field of each write endpoint, huge
//! values, broken CloudEvents, invalid UTF-8 in headers, wrong content types, path traversal in
//! ids and slugs, SQL-looking strings, deep nesting, NUL escapes, duplicate keys, junk query
//! strings and header floods, as anonymous, as a user, as staff and with a run's callback
//! token. The corpus is built in code (deterministic) and sent over raw TCP, so bytes no
//! ordinary client would send reach the server, and a dropped connection (what a panicking
//! handler causes) is seen as such.
//!
//! Every answer must be a 4xx with a JSON error body, and the database must be unchanged:
//! every table is dumped before and after and compared. The only rows the corpus may add are
//! the ones the service documents recording: `pipeline.execute` events refused with 422 are
//! stored as `rejected` (docs/events.md), so those cases use their own source and are checked
//! to be exactly that, and nothing else.

use crate::{
    common::{Options, TestApp},
    fake_launcher::FakeLauncher,
    support_http::{RawError, RawRequest, RawResponse, exchange},
};
use application_quality_api::db::entities::pipeline;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, Statement,
};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

/// Source of the corpus events that reach dispatch and are recorded as `rejected` by design.
const RECORDED_SOURCE: &str = "hostile-recorded";
const EXECUTE: &str = "org.eoepca.application-quality.events.pipeline.execute";

/// What a case may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A 4xx with a JSON error body; nothing stored.
    Reject,
    /// A 422 with a JSON error body; the event is stored as `rejected` (documented).
    RecordedRejection,
    /// Refused by the HTTP/1 parser before any routing (too many headers: hyper's own 431,
    /// which no middleware sees, so its body is empty). Still a 4xx on an intact connection.
    ParserReject,
}

struct Case {
    group: &'static str,
    name: String,
    req: RawRequest,
    expect: Expect,
    /// For field-validation cases: the field the error body must name.
    field: Option<String>,
}

/// What the corpus needs to address real objects.
struct Fixtures {
    user: String,
    staff: String,
    /// Refresh token of the user (a valid token of the wrong type on user routes).
    refresh: String,
    callback: String,
    public_pipeline: i64,
    own_pipeline: i64,
    run: i64,
    trigger: String,
}

/// Every table as sorted JSON rows (backend-neutral: raw queries through sea-orm).
async fn dump(db: &DatabaseConnection) -> BTreeMap<String, Vec<String>> {
    let backend = db.get_database_backend();
    let tables_sql = match backend {
        DbBackend::Sqlite => {
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        DbBackend::Postgres => {
            "SELECT tablename::text AS t FROM pg_tables WHERE schemaname = 'public'"
        }
        other => panic!("unsupported backend {other:?}"),
    };
    let tables: Vec<String> = db
        .query_all_raw(Statement::from_string(backend, tables_sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "t").unwrap())
        .collect();
    assert!(tables.len() >= 10, "tables: {tables:?}");
    let mut out = BTreeMap::new();
    for t in tables {
        let rows = Value::find_by_statement(Statement::from_string(
            backend,
            format!("SELECT * FROM \"{t}\""),
        ))
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("dumping {t}: {e}"));
        let mut rows: Vec<String> = rows.iter().map(Value::to_string).collect();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

async fn fixtures(app: &TestApp, launcher: &FakeLauncher) -> Fixtures {
    app.seed().await;
    let pw = "hostile-user-password-1";
    app.user("alice", pw, false).await;
    let (status, tokens) = app
        .post(
            "/api/token/",
            None,
            &json!({"username": "alice", "password": pw}),
        )
        .await;
    assert_eq!(status, 200);
    let user = tokens["access"].as_str().unwrap().to_string();
    let refresh = tokens["refresh"].as_str().unwrap().to_string();
    let (_, staff) = app.user_with_token("boss", true).await;
    let public_pipeline = pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq("Notebook static analysis"))
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("demo notebook pipeline")
        .id;
    let (status, own) = app
        .post(
            "/api/pipelines/",
            Some(&user),
            &json!({"name": "Own pipeline", "description": "d", "version": "1",
                    "tools": ["clone_subworkflow"]}),
        )
        .await;
    assert_eq!(status, 201, "{own}");
    let (status, run) = app
        .post(
            &format!("/api/pipelines/{public_pipeline}/runs/"),
            Some(&user),
            &json!({"parameters": {}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let run = run["id"].as_i64().unwrap();
    let (status, trigger) = app
        .post(
            "/api/triggers/",
            Some(&user),
            &trigger_body(public_pipeline),
        )
        .await;
    assert_eq!(status, 201, "{trigger}");
    Fixtures {
        user,
        staff,
        refresh,
        callback: launcher.token(run),
        public_pipeline,
        own_pipeline: own["id"].as_i64().unwrap(),
        run,
        trigger: "hostile-trigger".into(),
    }
}

fn trigger_body(pipeline: i64) -> Value {
    json!({
        "slug": "hostile-trigger",
        "description": "d",
        "status": "Enabled",
        "enabled": true,
        "trigger_type": "github_webhook_push",
        "pipeline": pipeline,
        "cql2_filter": {"op": "=", "args": [{"property": "ref"}, "refs/heads/main"]},
        "params_default": {"parameters": {"clone_subworkflow": {"clone": {"repo_branch": "main"}}}},
        "params_mapping": {"clone_subworkflow.clone.repo_url": "repository.clone_url"}
    })
}

/// Syntactically broken or refused JSON documents (each must be a 400 wherever JSON is read).
fn bad_json() -> Vec<(&'static str, Vec<u8>)> {
    let deep_arrays = "[".repeat(1000) + &"]".repeat(1000);
    let deep_objects = "{\"a\":".repeat(1000) + "1" + &"}".repeat(1000);
    let deep_unclosed = "[".repeat(100_000);
    vec![
        ("empty", b"".to_vec()),
        ("open brace", b"{".to_vec()),
        ("close brace", b"}".to_vec()),
        ("bare word", b"nul".to_vec()),
        ("missing value", br#"{"a":}"#.to_vec()),
        ("single quotes", b"{'name': 'x'}".to_vec()),
        ("missing colon", br#"{"name" "x"}"#.to_vec()),
        ("trailing comma", br#"{"name":"x",}"#.to_vec()),
        ("trailing garbage", br#"{"name":"x"}garbage"#.to_vec()),
        ("NaN", br#"{"name": NaN}"#.to_vec()),
        ("Infinity", br#"{"name": Infinity}"#.to_vec()),
        ("invalid UTF-8", b"{\"name\":\"\xff\xfe\xfd\"}".to_vec()),
        ("lone surrogate", br#"{"name":"\ud800"}"#.to_vec()),
        ("bad escape", br#"{"name":"\x41"}"#.to_vec()),
        ("BOM", b"\xef\xbb\xbf{\"name\":\"x\"}".to_vec()),
        (
            "NUL escape",
            br#"{"name":"x\u0000y","description":"\u0000"}"#.to_vec(),
        ),
        ("raw control char", b"{\"name\":\"a\x01b\"}".to_vec()),
        ("deep arrays x1000", deep_arrays.into_bytes()),
        ("deep objects x1000", deep_objects.into_bytes()),
        ("unclosed 100k", deep_unclosed.into_bytes()),
        ("huge exponent", b"{\"name\": 1e999999}".to_vec()),
    ]
}

/// A JSON value of every kind, labelled.
fn kinds() -> Vec<(&'static str, Value)> {
    vec![
        ("string", json!("x")),
        ("integer", json!(7)),
        ("float", json!(1.5)),
        ("bool", json!(true)),
        ("null", Value::Null),
        ("array", json!(["x"])),
        ("object", json!({"x": 1})),
    ]
}

/// Number edge cases, as JSON text (some are not representable as `Value`).
const NUMBERS: [(&str, &str); 7] = [
    ("1e308", "1e308"),
    ("-1e308", "-1e308"),
    ("-0", "-0"),
    ("u64 overflow", "18446744073709551616"),
    ("i64 underflow", "-9223372036854775809"),
    ("i64 max+1", "9223372036854775808"),
    ("negative", "-1"),
];

/// One field of a write endpoint: the kinds it accepts, and a few extra bad values.
struct Field {
    name: &'static str,
    accepts: &'static [&'static str],
    /// Extra refused values as JSON text (over-long strings, bad enums...).
    extra: Vec<(&'static str, String)>,
    /// Whether out-of-range numbers are a type error for it (integer fields).
    numeric: bool,
}

fn field(name: &'static str, accepts: &'static [&'static str]) -> Field {
    Field {
        name,
        accepts,
        extra: Vec::new(),
        numeric: false,
    }
}

fn long(n: usize) -> String {
    Value::String("x".repeat(n)).to_string()
}

/// A JSON body: `base` with `name` set to the raw JSON text `value`.
fn with_field(base: &Value, name: &str, value: &str) -> String {
    let mut m = base.as_object().cloned().unwrap_or_default();
    m.insert(name.into(), json!("__HOSTILE__"));
    Value::Object(m)
        .to_string()
        .replace("\"__HOSTILE__\"", value)
}

fn json_req(method: &str, path: &str, token: Option<&str>, body: &[u8]) -> RawRequest {
    RawRequest::new(method, path).bearer(token).json_text(body)
}

fn reject(group: &'static str, name: String, req: RawRequest) -> Case {
    Case {
        group,
        name,
        req,
        expect: Expect::Reject,
        field: None,
    }
}

/// JSON write endpoints: (label, method, path, identities that may reach the body check).
fn json_endpoints(f: &Fixtures) -> Vec<(String, &'static str, String, Vec<Option<String>>)> {
    let user = Some(f.user.clone());
    let staff = Some(f.staff.clone());
    let cb = Some(f.callback.clone());
    let (pp, op, run, t) = (f.public_pipeline, f.own_pipeline, f.run, &f.trigger);
    vec![
        ("token".into(), "POST", "/api/token/".into(), vec![None]),
        (
            "token refresh".into(),
            "POST",
            "/api/token/refresh/".into(),
            vec![None],
        ),
        (
            "pipeline create".into(),
            "POST",
            "/api/pipelines/".into(),
            vec![None, user.clone(), staff.clone()],
        ),
        (
            "pipeline put".into(),
            "PUT",
            format!("/api/pipelines/{op}/"),
            vec![user.clone(), staff.clone()],
        ),
        (
            "pipeline patch".into(),
            "PATCH",
            format!("/api/pipelines/{op}/"),
            vec![None, user.clone(), staff.clone()],
        ),
        (
            "run create".into(),
            "POST",
            format!("/api/pipelines/{pp}/runs/"),
            vec![None, user.clone(), staff.clone()],
        ),
        (
            "trigger create".into(),
            "POST",
            "/api/triggers/".into(),
            vec![None, user.clone(), staff.clone()],
        ),
        (
            "trigger put".into(),
            "PUT",
            format!("/api/triggers/{t}/"),
            vec![user.clone(), staff.clone()],
        ),
        (
            "trigger patch".into(),
            "PATCH",
            format!("/api/triggers/{t}/"),
            vec![None, user.clone(), staff],
        ),
        (
            "job report".into(),
            "POST",
            format!("/api/pipelines/{pp}/runs/{run}/jobreports/?name=lint"),
            vec![None, cb.clone(), user.clone()],
        ),
        (
            "results".into(),
            "POST",
            format!("/api/pipelines/{pp}/runs/{run}/results/"),
            vec![None, cb, user],
        ),
    ]
}

fn who(token: &Option<String>, f: &Fixtures) -> &'static str {
    match token.as_deref() {
        None => "anonymous",
        Some(t) if t == f.user => "user",
        Some(t) if t == f.staff => "staff",
        Some(_) => "callback",
    }
}

fn bad_json_cases(f: &Fixtures, out: &mut Vec<Case>) {
    for (label, method, path, identities) in json_endpoints(f) {
        for token in &identities {
            for (what, body) in bad_json() {
                out.push(reject(
                    "bad JSON",
                    format!("{label} as {} : {what}", who(token, f)),
                    json_req(method, &path, token.as_deref(), &body),
                ));
            }
        }
    }
}

/// Wrong types and out-of-range values for every field of every write endpoint, each in an
/// otherwise valid body, sent as the identity that passes authentication.
fn field_cases(f: &Fixtures, out: &mut Vec<Case>) {
    let pipeline_base = json!({"name": "Hostile pipeline", "description": "d", "version": "9",
        "tools": ["clone_subworkflow"], "default_inputs": {}});
    let pipeline_fields = vec![
        Field {
            extra: vec![
                ("too long", long(51)),
                ("blank", "\"   \"".into()),
                ("huge", long(200_000)),
            ],
            ..field("name", &["string"])
        },
        Field {
            extra: vec![("too long", long(10_001))],
            ..field("description", &["string", "null"])
        },
        Field {
            extra: vec![("too long", long(51))],
            ..field("version", &["string", "null"])
        },
        Field {
            extra: vec![
                ("unknown slug", r#"["no_such_subworkflow"]"#.into()),
                ("traversal slug", r#"["../../etc/passwd"]"#.into()),
                (
                    "SQL slug",
                    r#"["x'; DROP TABLE backend_pipeline; --"]"#.into(),
                ),
                ("number items", "[1, 2]".into()),
                ("nested", r#"[["clone_subworkflow"]]"#.into()),
                (
                    "too many",
                    serde_json::to_string(&vec!["clone_subworkflow"; 101]).unwrap(),
                ),
            ],
            ..field("tools", &["array"])
        },
        Field {
            extra: vec![
                ("flat", r#"{"a": 1}"#.into()),
                ("two levels", r#"{"a": {"b": 1}}"#.into()),
            ],
            ..field("default_inputs", &["object", "null"])
        },
        Field {
            numeric: true,
            extra: vec![("unknown id", "999999".into()), ("float id", "1.0".into())],
            ..field("owner", &["integer", "null"])
        },
        Field {
            extra: vec![("too long", long(256 * 1024 + 1))],
            ..field("template", &["string"])
        },
    ];
    let op = f.own_pipeline;
    let pipeline_targets = [
        (
            "pipeline create",
            "POST",
            "/api/pipelines/".to_string(),
            &f.user,
        ),
        (
            "pipeline put",
            "PUT",
            format!("/api/pipelines/{op}/"),
            &f.user,
        ),
        (
            "pipeline patch",
            "PATCH",
            format!("/api/pipelines/{op}/"),
            &f.staff,
        ),
    ];
    for (label, method, path, token) in &pipeline_targets {
        // PATCH sends the field alone, so nothing else in the body could be the reason.
        let base = if *method == "PATCH" {
            json!({})
        } else {
            pipeline_base.clone()
        };
        push_field_cases(label, method, path, token, &base, &pipeline_fields, out);
    }

    let trigger_fields = vec![
        Field {
            extra: vec![
                ("traversal", "\"../../etc\"".into()),
                ("encoded traversal", "\"%2e%2e%2f\"".into()),
                ("SQL", "\"a' OR '1'='1\"".into()),
                ("too long", long(51)),
                ("empty", "\"\"".into()),
                ("NUL", "\"a\\u0000b\"".into()),
            ],
            ..field("slug", &["string"])
        },
        Field {
            extra: vec![("unknown", "\"Sometimes\"".into())],
            ..field("status", &["string"])
        },
        field("enabled", &["bool"]),
        Field {
            extra: vec![
                ("unknown op", r#"{"op": "drop", "args": []}"#.into()),
                ("deep", {
                    let mut v = json!({"op": "=", "args": [{"property": "a"}, 1]});
                    for _ in 0..40 {
                        v = json!({"op": "not", "args": [v]});
                    }
                    v.to_string()
                }),
                (
                    "SQL property",
                    r#"{"op": "=", "args": [{"property": "a'; --"}, {"x": 1}]}"#.into(),
                ),
            ],
            // null is the empty filter (matches every event), by design.
            ..field("cql2_filter", &["object", "null"])
        },
        Field {
            extra: vec![("unknown input", r#"{"parameters": {"nope": {}}}"#.into())],
            ..field("params_default", &["object"])
        },
        Field {
            extra: vec![
                ("unknown target", r#"{"nope.nope.nope": "ref"}"#.into()),
                (
                    "number source",
                    r#"{"clone_subworkflow.clone.repo_url": 5}"#.into(),
                ),
            ],
            ..field("params_mapping", &["object"])
        },
        Field {
            numeric: true,
            extra: vec![("unknown id", "99999999".into())],
            ..field("pipeline", &["integer"])
        },
        Field {
            extra: vec![
                ("unknown", "\"no_such_type\"".into()),
                ("traversal", "\"../x\"".into()),
            ],
            ..field("trigger_type", &["string"])
        },
        Field {
            // A name or an id; null (no owner) is for staff only, and these run as the user.
            extra: vec![
                ("unknown user", "\"nobody-at-all\"".into()),
                ("null as a user", "null".into()),
            ],
            ..field("owner", &["string", "integer", "null"])
        },
    ];
    let t = &f.trigger;
    let mut create_base = trigger_body(f.public_pipeline);
    create_base["slug"] = json!("hostile-new");
    let trigger_targets = [
        (
            "trigger create",
            "POST",
            "/api/triggers/".to_string(),
            &f.user,
        ),
        ("trigger put", "PUT", format!("/api/triggers/{t}/"), &f.user),
        (
            "trigger patch",
            "PATCH",
            format!("/api/triggers/{t}/"),
            &f.user,
        ),
    ];
    for (label, method, path, token) in &trigger_targets {
        let base = match *method {
            "PATCH" => json!({}),
            "PUT" => trigger_body(f.public_pipeline),
            _ => create_base.clone(),
        };
        // Renaming a trigger through PUT/PATCH is a valid request: leave the slug to create.
        let fields: Vec<&Field> = trigger_fields
            .iter()
            .filter(|fl| *method == "POST" || fl.name != "slug")
            .collect();
        for fl in fields {
            push_field_cases(
                label,
                method,
                path,
                token,
                &base,
                std::slice::from_ref(fl),
                out,
            );
        }
    }

    // Runs: the parameters document.
    let pp = f.public_pipeline;
    let run_path = format!("/api/pipelines/{pp}/runs/");
    let bad_parameters = [
        ("string", "\"x\""),
        ("number", "1"),
        ("bool", "true"),
        ("array", "[]"),
        ("subworkflow string", r#"{"clone_subworkflow": "x"}"#),
        ("tool array", r#"{"clone_subworkflow": {"clone": []}}"#),
        (
            "input number",
            r#"{"clone_subworkflow": {"clone": {"repo_url": 5}}}"#,
        ),
        (
            "input object",
            r#"{"clone_subworkflow": {"clone": {"repo_url": {"a": 1}}}}"#,
        ),
        ("unknown subworkflow", r#"{"../../etc": {}}"#),
        ("unknown tool", r#"{"clone_subworkflow": {"nope": {}}}"#),
        (
            "unknown input",
            r#"{"clone_subworkflow": {"clone": {"x'; DROP TABLE backend_pipelinerun; --": "1"}}}"#,
        ),
        (
            "over-long value",
            &format!(
                r#"{{"clone_subworkflow": {{"clone": {{"repo_url": {}}}}}}}"#,
                long(5000)
            ),
        ),
    ];
    for (what, p) in bad_parameters {
        for token in [&f.user, &f.staff] {
            out.push(reject(
                "wrong types",
                format!("run create parameters: {what}"),
                json_req(
                    "POST",
                    &run_path,
                    Some(token),
                    format!(r#"{{"parameters": {p}}}"#).as_bytes(),
                ),
            ));
        }
    }
    for body in ["[]", "\"parameters\"", "1", "null"] {
        out.push(reject(
            "wrong types",
            format!("run create body {body}"),
            json_req("POST", &run_path, Some(&f.user), body.as_bytes()),
        ));
    }

    // Login and refresh.
    for (name, accepts) in [("username", &["string"]), ("password", &["string"])] {
        let base = json!({"username": "alice", "password": "wrong-password"});
        for (kind, v) in kinds() {
            if accepts.contains(&kind) {
                continue;
            }
            out.push(reject(
                "wrong types",
                format!("token {name}: {kind}"),
                json_req(
                    "POST",
                    "/api/token/",
                    None,
                    with_field(&base, name, &v.to_string()).as_bytes(),
                ),
            ));
        }
    }
    for (what, body) in [
        (
            "SQL username",
            r#"{"username": "' OR '1'='1' --", "password": "x"}"#.to_string(),
        ),
        (
            "SQL password",
            r#"{"username": "alice", "password": "' OR '1'='1"}"#.to_string(),
        ),
        (
            "over-long password",
            format!(r#"{{"username": "alice", "password": {}}}"#, long(5000)),
        ),
        (
            "over-long username",
            format!(r#"{{"username": {}, "password": "x"}}"#, long(100_000)),
        ),
        (
            "duplicate keys",
            r#"{"username": "alice", "username": 5, "password": "x"}"#.into(),
        ),
        ("array body", r#"[{"username": "alice"}]"#.into()),
    ] {
        out.push(reject(
            "wrong types",
            format!("token {what}"),
            json_req("POST", "/api/token/", None, body.as_bytes()),
        ));
    }
    for (kind, v) in kinds() {
        let body = if kind == "string" {
            json!({"refresh": "not.a.jwt"})
        } else {
            json!({"refresh": v})
        };
        out.push(reject(
            "wrong types",
            format!("refresh: {kind}"),
            json_req(
                "POST",
                "/api/token/refresh/",
                None,
                body.to_string().as_bytes(),
            ),
        ));
    }
    out.push(reject(
        "wrong types",
        "refresh: access token given".into(),
        json_req(
            "POST",
            "/api/token/refresh/",
            None,
            json!({"refresh": f.user}).to_string().as_bytes(),
        ),
    ));

    // Results callback: an object with `output` / `usage_report` only.
    let run = f.run;
    let results = format!("/api/pipelines/{pp}/runs/{run}/results/");
    for body in [
        "[]",
        "\"output\"",
        "5",
        "null",
        "true",
        r#"{"outputs": {"a": 1}}"#,
        r#"{"output": {"a": 1}, "extra": 1}"#,
    ] {
        out.push(reject(
            "wrong types",
            format!("results body {body}"),
            json_req("POST", &results, Some(&f.callback), body.as_bytes()),
        ));
    }
    // Job reports: the query names the report.
    let reports = format!("/api/pipelines/{pp}/runs/{run}/jobreports/");
    for q in [
        "".to_string(),
        "?name=".into(),
        "?name=../../etc".into(),
        "?name=%2e%2e%2f".into(),
        "?name=a%00b".into(),
        "?name=x'%20OR%201=1".into(),
        format!("?name={}", "a".repeat(51)),
        format!("?name=lint&instance={}", "i".repeat(201)),
        "?name=%ff%fe".into(),
        "?name=lint&instance=%ff".into(),
    ] {
        out.push(reject(
            "junk query",
            format!("job report query {q:.40}"),
            json_req(
                "POST",
                &format!("{reports}{q}"),
                Some(&f.callback),
                br#"{"ok": true}"#,
            ),
        ));
    }
}

fn push_field_cases(
    label: &str,
    method: &str,
    path: &str,
    token: &str,
    base: &Value,
    fields: &[Field],
    out: &mut Vec<Case>,
) {
    for fl in fields {
        let mut values: Vec<(String, String)> = kinds()
            .into_iter()
            .filter(|(k, _)| !fl.accepts.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if fl.numeric {
            values.extend(NUMBERS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        }
        values.extend(fl.extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        for (kind, v) in values {
            let body = with_field(base, fl.name, &v);
            out.push(Case {
                group: "wrong types",
                name: format!("{label} {}: {kind}", fl.name),
                req: json_req(method, path, Some(token), body.as_bytes()),
                expect: Expect::Reject,
                field: Some(fl.name.to_string()),
            });
        }
    }
}

/// Path traversal, odd ids and slugs on every route with a path parameter.
fn path_cases(f: &Fixtures, out: &mut Vec<Case>) {
    let pp = f.public_pipeline;
    let run = f.run;
    let long_id = "9".repeat(5000);
    let bad_ids: Vec<String> = vec![
        "..".into(),
        "../..".into(),
        "..%2f..%2fetc%2fpasswd".into(),
        "%2e%2e".into(),
        "%2e%2e%2f%2e%2e".into(),
        "%00".into(),
        "1%00".into(),
        "-1".into(),
        "0".into(),
        "9223372036854775808".into(),
        "18446744073709551616".into(),
        "1e3".into(),
        "0x10".into(),
        "1;DROP%20TABLE%20auth_user".into(),
        "1'%20OR%20'1'='1".into(),
        "%ff%fe".into(),
        "%".into(),
        long_id,
    ];
    let templates: Vec<(&str, String)> = vec![
        ("GET", "/api/pipelines/{}/".into()),
        ("PATCH", "/api/pipelines/{}/".into()),
        ("DELETE", "/api/pipelines/{}/".into()),
        ("GET", "/api/pipelines/{}/runs/".into()),
        ("POST", "/api/pipelines/{}/runs/".into()),
        ("GET", format!("/api/pipelines/{pp}/runs/{{}}/")),
        ("POST", format!("/api/pipelines/{pp}/runs/{{}}/cancel/")),
        ("GET", format!("/api/pipelines/{pp}/runs/{{}}/jobreports/")),
        (
            "GET",
            format!("/api/pipelines/{pp}/runs/{run}/jobreports/{{}}/"),
        ),
        ("POST", format!("/api/pipelines/{pp}/runs/{{}}/results/")),
        ("GET", "/api/tools/{}/".into()),
        ("GET", "/api/tags/{}/".into()),
        ("GET", "/api/triggertypes/{}/".into()),
        ("GET", "/api/triggers/{}/".into()),
        ("DELETE", "/api/triggers/{}/".into()),
        ("GET", "/api/triggers/{}/events/".into()),
        ("GET", format!("/api/triggers/{}/events/{{}}/", f.trigger)),
    ];
    for (i, (method, template)) in templates.iter().enumerate() {
        for (j, id) in bad_ids.iter().enumerate() {
            // Every id on every template as staff (the most privileged caller), and a rotating
            // share as the user and anonymously, to keep the corpus a reasonable size.
            let mut callers = vec![("staff", Some(f.staff.as_str()))];
            match (i + j) % 3 {
                0 => callers.push(("user", Some(f.user.as_str()))),
                1 => callers.push(("anonymous", None)),
                _ => callers.push(("callback", Some(f.callback.as_str()))),
            }
            for (caller, token) in callers {
                let path = template.replace("{}", id);
                let mut req = RawRequest::new(method, &path).bearer(token);
                if *method != "GET" && *method != "DELETE" {
                    req = req.json_text(br#"{"parameters": {"nope": {}}}"#);
                }
                out.push(reject(
                    "path",
                    format!("{method} {template} id={id:.30} as {caller}"),
                    req,
                ));
            }
        }
    }
    // Whole-path traversal outside the API.
    for p in [
        "/../../../../etc/passwd",
        "/api/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/api/pipelines/../../../etc/passwd",
        "/api//pipelines//",
        "/api/%00",
        "/static/..%5c..%5cwindows",
        "/api/pipelines/1/../../users/me/x",
    ] {
        out.push(reject(
            "path",
            format!("GET {p}"),
            RawRequest::new("GET", p).bearer(Some(&f.staff)),
        ));
    }
    // The broker-shaped event path with junk is an event ingress: still not a CloudEvent.
    for p in ["/%2e%2e/%00", "/..%2f/x", "/a'%20OR%201=1/b"] {
        out.push(reject(
            "path",
            format!("POST {p} (event ingress)"),
            RawRequest::new("POST", p).json_text(b"{}"),
        ));
    }
}

/// Content types other than JSON, with bodies that would be valid (so acceptance would show
/// in the database).
fn content_type_cases(f: &Fixtures, out: &mut Vec<Case>) {
    let op = f.own_pipeline;
    let t = &f.trigger;
    let types: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("none", None),
        ("text/plain", Some(b"text/plain".to_vec())),
        ("xml", Some(b"application/xml".to_vec())),
        ("form", Some(b"application/x-www-form-urlencoded".to_vec())),
        (
            "multipart",
            Some(b"multipart/form-data; boundary=x".to_vec()),
        ),
        ("jsonx", Some(b"application/jsonx".to_vec())),
        ("json-patch", Some(b"application/json-patch".to_vec())),
        ("bare json", Some(b"json".to_vec())),
        ("invalid UTF-8", Some(b"application/\xffjson".to_vec())),
        ("empty", Some(b"".to_vec())),
    ];
    let targets = [
        (
            "PATCH",
            format!("/api/pipelines/{op}/"),
            json!({"description": "changed by a content-type case"}),
            &f.user,
        ),
        (
            "PATCH",
            format!("/api/triggers/{t}/"),
            json!({"description": "changed by a content-type case"}),
            &f.user,
        ),
        (
            "POST",
            "/api/pipelines/".to_string(),
            json!({"name": "Content type pipeline"}),
            &f.staff,
        ),
    ];
    for (method, path, body, token) in &targets {
        for (label, ct) in &types {
            let mut req = RawRequest::new(method, path)
                .bearer(Some(token))
                .body(body.to_string());
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            out.push(reject(
                "content type",
                format!("{method} {path} as {label}"),
                req,
            ));
        }
    }
    // The callback reads curl's form type as JSON; other types are refused.
    let pp = f.public_pipeline;
    let run = f.run;
    for ct in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        out.push(reject(
            "content type",
            format!("job report as {ct}"),
            RawRequest::new(
                "POST",
                format!("/api/pipelines/{pp}/runs/{run}/jobreports/?name=lint"),
            )
            .bearer(Some(&f.callback))
            .header("content-type", ct)
            .body(br#"{"ok": true}"#),
        ));
    }
}

/// Headers: credentials in every wrong shape, invalid UTF-8, floods, oversize values.
fn header_cases(f: &Fixtures, out: &mut Vec<Case>) {
    let op = f.own_pipeline;
    let patch = format!("/api/pipelines/{op}/");
    let body = br#"{"description": "changed by a header case"}"#;
    let auths: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8", b"Bearer \xff\xfe\xfd".to_vec()),
        ("bare Bearer", b"Bearer".to_vec()),
        ("Bearer spaces", b"Bearer    ".to_vec()),
        ("Basic", b"Basic YWxpY2U6eA==".to_vec()),
        ("junk token", b"Bearer a.b.c".to_vec()),
        (
            "alg none",
            b"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyX2lkIjoxLCJ0b2tlbl90eXBlIjoiYWNjZXNzIn0."
                .to_vec(),
        ),
        (
            "refresh as access",
            format!("Bearer {}", f.refresh).into_bytes(),
        ),
        (
            "callback as user",
            format!("Bearer {}", f.callback).into_bytes(),
        ),
        (
            "tampered",
            format!("Bearer {}x", f.user).into_bytes(),
        ),
        (
            "huge token",
            format!("Bearer {}", "a".repeat(20_000)).into_bytes(),
        ),
        ("SQL", b"Bearer ' OR '1'='1".to_vec()),
        ("NUL-ish", b"Bearer a%00b".to_vec()),
    ];
    for (label, value) in &auths {
        out.push(reject(
            "headers",
            format!("pipeline patch, Authorization {label}"),
            RawRequest::new("PATCH", &patch)
                .header("authorization", value)
                .json_text(body),
        ));
    }
    // A user token on the callbacks.
    let pp = f.public_pipeline;
    let run = f.run;
    for (label, token) in [("user", &f.user), ("staff", &f.staff)] {
        out.push(reject(
            "headers",
            format!("results with a {label} token"),
            json_req(
                "POST",
                &format!("/api/pipelines/{pp}/runs/{run}/results/"),
                Some(token),
                br#"{"output": {"a": 1}}"#,
            ),
        ));
    }
    // Host header: invalid UTF-8, unknown hosts.
    for (label, host) in [
        ("invalid UTF-8", b"\xff\xfe.example".to_vec()),
        ("evil", b"evil.example.org".to_vec()),
        ("SQL", b"a' OR 1=1".to_vec()),
    ] {
        out.push(reject(
            "headers",
            format!("Host {label}"),
            RawRequest::new("PATCH", &patch)
                .header("host", host)
                .bearer(Some(&f.user))
                .json_text(body),
        ));
    }
    // Floods: many headers, one huge header; with a body that must then be refused anyway.
    for n in [150usize, 1000] {
        let mut req = RawRequest::new("PATCH", &patch).bearer(Some(&f.user));
        for i in 0..n {
            req = req.header(format!("x-junk-{i}"), "junk");
        }
        out.push(Case {
            group: "headers",
            name: format!("{n} headers"),
            req: req.json_text(br#"{"name": 5}"#),
            expect: Expect::ParserReject,
            field: None,
        });
    }
    out.push(reject(
        "headers",
        "one 60 kB header".into(),
        RawRequest::new("PATCH", &patch)
            .bearer(Some(&f.user))
            .header("x-big", "b".repeat(60_000))
            .json_text(br#"{"name": 5}"#),
    ));
    out.push(reject(
        "headers",
        "traceparent junk on a bad run".into(),
        json_req(
            "POST",
            &format!("/api/pipelines/{pp}/runs/"),
            Some(&f.user),
            br#"{"parameters": 5}"#,
        )
        .header("traceparent", b"\xff00-zz"),
    ));
    // Bodies over the limit (1 MiB by default) on JSON and event routes.
    let huge = format!(r#"{{"name": {}}}"#, long(1_100_000));
    for (method, path, token) in [
        ("POST", "/api/pipelines/".to_string(), Some(&f.user)),
        ("PATCH", patch.clone(), Some(&f.user)),
        ("POST", "/api/token/".to_string(), None),
        (
            "POST",
            format!("/api/pipelines/{pp}/runs/{run}/results/"),
            Some(&f.callback),
        ),
    ] {
        out.push(reject(
            "huge",
            format!("{method} {path} 1.1 MB body"),
            json_req(method, &path, token.map(String::as_str), huge.as_bytes()),
        ));
    }
    // Junk query strings on authenticated lists reached anonymously, and on the staff list.
    for q in [
        "?limit=abc",
        "?limit=-1",
        "?limit=99999999999999999999999",
        "?outcome=%ff",
        "?type=%00&source=%ff%fe",
        "?limit=1&limit=2&limit=x",
    ] {
        out.push(reject(
            "junk query",
            format!("events list {q}"),
            RawRequest::new("GET", format!("/api/events/{q}")).bearer(Some(&f.user)),
        ));
        out.push(reject(
            "junk query",
            format!("runs list anonymous {q}"),
            RawRequest::new("GET", format!("/api/pipelines/_/runs/{q}")),
        ));
    }
    for q in ["?limit=abc", "?limit=99999999999999999999999", "?limit=-5"] {
        out.push(reject(
            "junk query",
            format!("events list as staff {q}"),
            RawRequest::new("GET", format!("/api/events/{q}")).bearer(Some(&f.staff)),
        ));
    }
}

/// CloudEvents that must be refused before anything is stored, and `pipeline.execute` events
/// that are refused after decoding (recorded as `rejected`, by design).
fn event_cases(f: &Fixtures, out: &mut Vec<Case>) {
    let subject = format!("pipelines/{}", f.public_pipeline);
    let base: Vec<(&str, Vec<u8>)> = vec![
        ("ce-specversion", b"1.0".to_vec()),
        ("ce-id", b"hostile-1".to_vec()),
        ("ce-source", b"hostile".to_vec()),
        ("ce-type", EXECUTE.as_bytes().to_vec()),
        ("ce-user", b"alice".to_vec()),
        ("ce-subject", subject.as_bytes().to_vec()),
    ];
    let binary = |overrides: &[(&str, Option<Vec<u8>>)], ct: Option<&[u8]>, body: &[u8]| {
        let mut req = RawRequest::new("POST", "/api/events/");
        for (k, v) in &base {
            match overrides.iter().find(|(n, _)| n == k) {
                Some((_, Some(nv))) => req = req.header(k, nv),
                Some((_, None)) => {}
                None => req = req.header(k, v),
            }
        }
        for (k, v) in overrides {
            if !base.iter().any(|(n, _)| n == k)
                && let Some(v) = v
            {
                req = req.header(k, v);
            }
        }
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.body(body)
    };
    let good_data = br#"{"parameters": {}}"#;
    let json_ct: &[u8] = b"application/json";
    let mut push = |name: String, req: RawRequest| out.push(reject("events", name, req));
    for attr in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
        push(
            format!("binary without {attr}"),
            binary(&[(attr, None)], Some(json_ct), good_data),
        );
        push(
            format!("binary with empty {attr}"),
            binary(&[(attr, Some(Vec::new()))], Some(json_ct), good_data),
        );
        push(
            format!("binary with invalid UTF-8 {attr}"),
            binary(
                &[(attr, Some(b"\xff\xfe".to_vec()))],
                Some(json_ct),
                good_data,
            ),
        );
    }
    for attr in ["ce-id", "ce-source", "ce-type", "ce-subject"] {
        push(
            format!("binary over-long {attr}"),
            binary(
                &[(attr, Some("a".repeat(256).into_bytes()))],
                Some(json_ct),
                good_data,
            ),
        );
    }
    push(
        "binary over-long ce-user".into(),
        binary(
            &[("ce-user", Some("u".repeat(151).into_bytes()))],
            Some(json_ct),
            good_data,
        ),
    );
    push(
        "binary invalid UTF-8 ce-user".into(),
        binary(
            &[("ce-user", Some(b"\xff".to_vec()))],
            Some(json_ct),
            good_data,
        ),
    );
    for v in ["0.3", "2.0", "1", "1.0.0", "' OR 1=1"] {
        push(
            format!("specversion {v}"),
            binary(
                &[("ce-specversion", Some(v.as_bytes().to_vec()))],
                Some(json_ct),
                good_data,
            ),
        );
    }
    for t in ["yesterday", "2024-13-45T99:99:99Z", "0", "1\t2"] {
        push(
            format!("ce-time {t:?}"),
            binary(
                &[("ce-time", Some(t.as_bytes().to_vec()))],
                Some(json_ct),
                good_data,
            ),
        );
    }
    for (what, body) in bad_json() {
        if what == "empty" {
            continue; // an empty body is an event without data
        }
        push(
            format!("binary data: {what}"),
            binary(&[], Some(json_ct), &body),
        );
    }
    push(
        "batch mode".into(),
        binary(&[], Some(b"application/cloudevents-batch+json"), b"[]"),
    );
    for ct in [&b"text/plain"[..], b"application/xml", b"", b"\xff/\xfe"] {
        push(
            format!(
                "no ce headers, content type {:?}",
                String::from_utf8_lossy(ct)
            ),
            RawRequest::new("POST", "/api/events/")
                .header("content-type", ct)
                .body(good_data),
        );
    }
    // Structured mode.
    let structured = |doc: &str| {
        RawRequest::new("POST", "/api/events/")
            .header("content-type", "application/cloudevents+json")
            .body(doc)
    };
    let good = json!({"specversion": "1.0", "id": "hostile-s", "source": "hostile",
        "type": EXECUTE, "user": "alice", "subject": subject, "data": {"parameters": {}}});
    for attr in ["specversion", "id", "source", "type"] {
        let mut doc = good.clone();
        doc.as_object_mut().unwrap().remove(attr);
        push(
            format!("structured without {attr}"),
            structured(&doc.to_string()),
        );
        for (kind, v) in kinds() {
            if kind == "string" {
                continue;
            }
            let mut doc = good.clone();
            doc[attr] = v;
            push(
                format!("structured {attr}: {kind}"),
                structured(&doc.to_string()),
            );
        }
    }
    for (what, doc) in [
        ("data_base64 not base64", json!({"data_base64": "!!!"})),
        (
            "data_base64 not JSON",
            json!({"data_base64": "bm90IGpzb24="}),
        ),
        ("data_base64 number", json!({"data_base64": 5})),
        ("time junk", json!({"time": "tomorrow"})),
        ("time number", json!({"time": 5})),
        ("user object", json!({"user": {"a": 1}})),
        ("extension array", json!({"webhooksource": [1, 2]})),
        ("over-long id", json!({"id": "i".repeat(256)})),
    ] {
        let mut d = good.clone();
        for (k, v) in doc.as_object().unwrap() {
            d[k] = v.clone();
        }
        if what.starts_with("data_base64") {
            d.as_object_mut().unwrap().remove("data");
            d["datacontenttype"] = json!("application/json");
        }
        push(format!("structured {what}"), structured(&d.to_string()));
    }
    for (what, body) in bad_json() {
        push(
            format!("structured document: {what}"),
            structured_bytes(&body),
        );
    }
    for path in ["/", "/default/broker"] {
        push(
            format!("{path}: binary without ce-id"),
            binary(&[("ce-id", None)], Some(json_ct), good_data).with_target(path),
        );
    }
    push(
        "event body over the limit".into(),
        binary(
            &[],
            Some(json_ct),
            format!(r#"{{"parameters": {}}}"#, long(1_100_000)).as_bytes(),
        ),
    );

    // Decoded, then refused by dispatch: 422 and recorded as `rejected` (documented).
    let mut recorded = 0;
    let mut record = |name: String, overrides: Vec<(&str, Option<Vec<u8>>)>, body: &[u8]| {
        recorded += 1;
        let id = format!("hostile-recorded-{recorded}");
        let mut o = overrides;
        o.push(("ce-id", Some(id.into_bytes())));
        o.push(("ce-source", Some(RECORDED_SOURCE.as_bytes().to_vec())));
        out.push(Case {
            group: "events (recorded)",
            name,
            req: binary(&o, Some(json_ct), body),
            expect: Expect::RecordedRejection,
            field: None,
        });
    };
    for user in [
        "nobody",
        "alice' OR '1'='1",
        "alice\"; DROP TABLE auth_user; --",
        "../../etc/passwd",
        "%00",
        "ALICE",
    ] {
        record(
            format!("execute as user {user:?}"),
            vec![("ce-user", Some(user.as_bytes().to_vec()))],
            good_data,
        );
    }
    record(
        "execute without user".into(),
        vec![("ce-user", None)],
        good_data,
    );
    for s in [
        "pipelines/",
        "pipelines/-1",
        "pipelines/0",
        "pipelines/99999999999999999999",
        "pipelines/9223372036854775807",
        "pipelines/../1",
        "pipelines/1 OR 1=1",
        "pipelines/%2e%2e",
        "pipeline/1",
        "1",
    ] {
        record(
            format!("execute subject {s:?}"),
            vec![("ce-subject", Some(s.as_bytes().to_vec()))],
            good_data,
        );
    }
    for (what, body) in [
        ("data array", "[1, 2]".to_string()),
        ("data string", "\"parameters\"".into()),
        ("data number", "1e308".into()),
        ("parameters string", r#"{"parameters": "x"}"#.into()),
        ("parameters array", r#"{"parameters": []}"#.into()),
        (
            "parameter number",
            r#"{"parameters": {"clone_subworkflow": {"clone": {"repo_url": 5}}}}"#.into(),
        ),
        (
            "unknown subworkflow",
            r#"{"parameters": {"x'; DROP TABLE backend_pipelinerun; --": {}}}"#.into(),
        ),
        (
            "over-long parameter",
            format!(
                r#"{{"parameters": {{"clone_subworkflow": {{"clone": {{"repo_url": {}}}}}}}}}"#,
                long(5000)
            ),
        ),
    ] {
        record(format!("execute {what}"), Vec::new(), body.as_bytes());
    }
}

fn structured_bytes(body: &[u8]) -> RawRequest {
    RawRequest::new("POST", "/api/events/")
        .header("content-type", "application/cloudevents+json")
        .body(body)
}

trait WithTarget {
    fn with_target(self, target: &str) -> Self;
}

impl WithTarget for RawRequest {
    fn with_target(mut self, target: &str) -> Self {
        self.target = target.as_bytes().to_vec();
        self
    }
}

fn corpus(f: &Fixtures) -> Vec<Case> {
    let mut out = Vec::new();
    bad_json_cases(f, &mut out);
    field_cases(f, &mut out);
    path_cases(f, &mut out);
    content_type_cases(f, &mut out);
    header_cases(f, &mut out);
    event_cases(f, &mut out);
    out
}

/// Problems with one answer (empty when it is as expected).
fn check(case: &Case, result: &Result<RawResponse, RawError>) -> Vec<String> {
    let r = match result {
        Ok(r) => r,
        Err(e) => return vec![format!("no complete response: {e}")],
    };
    let mut problems = Vec::new();
    if !(400..500).contains(&r.status) {
        problems.push(format!("status {}", r.status));
    }
    if case.expect == Expect::ParserReject {
        if r.status != 431 {
            problems.push(format!("expected the parser's 431, got {}", r.status));
        }
    } else if !r.is_json_error() {
        problems.push(format!(
            "not a JSON error body: {:?} {:.200}",
            r.header("content-type"),
            String::from_utf8_lossy(&r.body)
        ));
    }
    if case.expect == Expect::RecordedRejection && r.status != 422 {
        problems.push(format!("expected 422, got {}", r.status));
    }
    if let (Some(field), Some(Value::Object(m))) = (&case.field, r.json())
        && r.status == 400
        && m.get("detail").is_none()
        && !m.contains_key(field)
    {
        problems.push(format!("field errors do not name {field:?}: {m:?}"));
    }
    problems
}

#[tokio::test]
async fn hostile_corpus_gets_4xx_json_and_leaves_the_database_unchanged() {
    let launcher = Arc::new(FakeLauncher::default());
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        ..Default::default()
    })
    .await;
    let f = fixtures(&app, &launcher).await;
    let cases = corpus(&f);
    let recorded_cases = cases
        .iter()
        .filter(|c| c.expect == Expect::RecordedRejection)
        .count();
    assert!(cases.len() >= 200, "only {} cases", cases.len());

    let before = dump(&app.state.db).await;
    // The dump sees the fixtures (so it would see a change to them).
    for (table, rows) in [
        ("auth_user", 2),
        ("backend_pipelinerun", 1),
        ("backend_trigger", 1),
    ] {
        assert_eq!(before[table].len(), rows, "{table} in the dump");
    }
    let mut histogram: BTreeMap<u16, usize> = BTreeMap::new();
    let mut by_group: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    // A few at a time: faster than one by one, and still a deterministic set of requests.
    for chunk in cases.chunks(8) {
        let results =
            futures::future::join_all(chunk.iter().map(|c| exchange(app.addr, &c.req))).await;
        for (case, result) in chunk.iter().zip(results) {
            *by_group.entry(case.group).or_default() += 1;
            if let Ok(r) = &result {
                *histogram.entry(r.status).or_default() += 1;
            }
            let problems = check(case, &result);
            if !problems.is_empty() {
                failures.push(format!(
                    "[{}] {}: {}",
                    case.group,
                    case.name,
                    problems.join("; ")
                ));
            }
        }
    }
    let after = dump(&app.state.db).await;
    eprintln!(
        "hostile corpus: {} requests ({recorded_cases} recorded-by-design events); by group {by_group:?}; status histogram {histogram:?}",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were not answered with a 4xx JSON error:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(
        !histogram.keys().any(|s| *s >= 500),
        "server errors: {histogram:?}"
    );

    // The database: identical, except the documented `rejected` event records.
    let mut recorded = 0;
    let mut changed = Vec::new();
    let tables: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for t in tables {
        let empty = Vec::new();
        let (b, a) = (
            before.get(t).unwrap_or(&empty),
            after.get(t).unwrap_or(&empty),
        );
        let removed: Vec<&String> = b.iter().filter(|r| !a.contains(r)).collect();
        let mut added: Vec<&String> = a.iter().filter(|r| !b.contains(r)).collect();
        if t == "aq_received_event" {
            added.retain(|row| {
                let v: Value = serde_json::from_str(row).unwrap();
                let by_design = v["source"] == RECORDED_SOURCE
                    && v["outcome"] == "rejected"
                    && v["run_ids"].to_string().trim_matches('"') == "[]";
                recorded += usize::from(by_design);
                !by_design
            });
        }
        if !removed.is_empty() || !added.is_empty() {
            changed.push(format!("{t}: removed {removed:.400?}, added {added:.400?}"));
        }
    }
    assert!(
        changed.is_empty(),
        "the hostile corpus changed the database:\n{}",
        changed.join("\n")
    );
    assert_eq!(
        recorded, recorded_cases,
        "each refused pipeline.execute event is recorded once as rejected"
    );
}
