//! The fuzz harness: one function per cargo-fuzz target, each turning raw bytes into a call of
//! the product code and checking what must hold whatever the input (no panic, client errors
//! only, deterministic results, bounded work).
//!
//! The targets in `fuzz_targets/` are one-line wrappers around these functions, and the
//! integration tests (`tests/api/fuzz_regressions.rs`) include this very file, so a committed
//! reproducer or corpus seed runs through exactly the code the fuzzer ran. Keep it free of
//! fuzzing-only crates for that reason.
//!
//! Input formats (chosen so that seeds are readable text files):
//! - `cloudevent_decode`: an HTTP header block (`name: value` lines), a blank line, the body.
//! - `cql2`: JSON; an array is `[filter, document...]`, anything else is the filter alone.
//! - `cwl_render`: sections separated by a line `%%`: pipeline template, run parameters JSON,
//!   `default_inputs` JSON, `{subworkflow: user_params}` JSON, then subworkflow definitions.
//! - `fixture_import`: the bytes of a fixture file.

use application_quality_api::{
    catalogue::fixtures,
    db::{
        self,
        entities::{command_line_tool, pipeline, subworkflow, trigger},
    },
    events::{
        cql2::{self, Context},
        decode::{IncomingEvent, MAX_ATTRIBUTE_LEN, MAX_USER_LEN},
        dispatch, triggers,
    },
    k8s::{job_events, status},
    pipelines::{PipelineGraph, params, render},
    telemetry::valid_traceparent,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use k8s_openapi::api::batch::v1::Job;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use std::{
    sync::{LazyLock, Mutex},
    time::Duration,
};

/// Most headers taken from one input (the HTTP layer bounds the count before decoding).
pub const MAX_HEADERS: usize = 64;
/// Most subworkflows built from one `cwl_render` input.
pub const MAX_SUBWORKFLOWS: usize = 8;
/// Most CPU time a render of one fuzz input may take. Real templates render in microseconds; a
/// template that loops for seconds would block a launch, so it counts as a failure. Measured
/// as the thread's CPU time, not wall time: a fuzzer running at low priority beside builds is
/// descheduled for seconds, which is not the template's doing.
pub const RENDER_BUDGET: Duration = Duration::from_secs(2);

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the kernel knows.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
/// The runs namespace the Job classification is checked against.
const RUNS_NAMESPACE: &str = "aq-runs";

/// CloudEvent attributes used when a `cql2` input brings no document of its own.
static SAMPLE_CE: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "specversion": "1.0",
        "id": "1",
        "source": "https://github.com/EOEPCA/application-quality",
        "type": "org.eoepca.webhook.github.push",
        "subject": "pipelines/17",
        "user": "eric",
        "time": "2025-09-16T07:47:34Z"
    })
});

/// Event data every parsed filter is evaluated against, besides the input's own documents.
static SAMPLE_DATA: LazyLock<Vec<Value>> = LazyLock::new(|| {
    vec![
        Value::Null,
        json!({}),
        json!([1, "a", null, [true]]),
        json!({
            "ref": "refs/heads/main",
            "repository": {"full_name": "EOEPCA/application-quality", "stargazers_count": 12,
                           "private": false, "clone_url": "https://github.com/EOEPCA/application-quality.git"},
            "sender": {"login": "alice"},
            "commits": [{"id": "abc"}, {"id": "def"}],
            "size": 2.0,
            "deleted": null,
            "n": -9223372036854775808i64,
            "u": 18446744073709551615u64,
            "f": 1e308
        }),
    ]
});

/// Filters evaluated against every decoded CloudEvent (the trigger-matching step of dispatch).
static EVENT_FILTERS: LazyLock<Vec<cql2::Expr>> = LazyLock::new(|| {
    [
        json!({"op": "like", "args": [{"property": "ce.type"}, "%.push"]}),
        json!({"op": "and", "args": [
            {"op": "=", "args": [{"property": "ref"}, "refs/heads/main"]},
            {"op": "in", "args": [{"property": "ce.user"}, ["eric", "alice"]]},
            {"op": "between", "args": [{"property": "size"}, 1, 10]},
            {"op": "not", "args": [{"op": "isNull", "args": [{"property": "ce.subject"}]}]}
        ]}),
    ]
    .iter()
    .map(|f| cql2::parse(f).expect("built-in filter"))
    .collect()
});

fn split_once<'a>(data: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    data.windows(sep.len())
        .position(|w| w == sep)
        .map(|i| (&data[..i], &data[i + sep.len()..]))
}

/// Headers from `name: value` lines; lines that are not valid header syntax are dropped, as
/// the HTTP server would have refused them before any handler ran.
fn header_map(block: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in block.split(|b| *b == b'\n').take(MAX_HEADERS) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// `cloudevent_decode`: headers + body through the decoder the events handler uses, then the
/// pure classification steps of dispatch (type family, trace context, Job events, trigger
/// filters). A refused event must be a client error (4xx), never a 5xx or a panic.
pub fn cloudevent_decode(data: &[u8]) {
    let (head, body) = split_once(data, b"\n\n").unwrap_or((data, &[]));
    let headers = header_map(head);
    let ev = match IncomingEvent::decode(&headers, body.to_vec()) {
        Ok(ev) => ev,
        Err(e) => {
            assert!(
                e.status().is_client_error(),
                "decoding answered {}: {e}",
                e.status()
            );
            let _ = e.body();
            return;
        }
    };
    for (name, value, max) in [
        ("id", ev.id.as_str(), MAX_ATTRIBUTE_LEN),
        ("source", ev.source.as_str(), MAX_ATTRIBUTE_LEN),
        ("type", ev.ty.as_str(), MAX_ATTRIBUTE_LEN),
        (
            "subject",
            ev.subject.as_deref().unwrap_or("s"),
            MAX_ATTRIBUTE_LEN,
        ),
        ("user", ev.user.as_deref().unwrap_or("u"), MAX_USER_LEN),
    ] {
        assert!(
            !value.is_empty() && value.len() <= max,
            "accepted {name} of {} bytes",
            value.len()
        );
    }
    let headers = ev.headers_json();
    assert!(ev.attributes.is_object() && headers.is_object());
    for name in ["authorization", "cookie", "proxy-authorization"] {
        assert!(headers.get(name).is_none(), "stored the {name} header");
    }

    // Dispatch classification.
    let family = dispatch::type_family(&ev.ty);
    assert_eq!(dispatch::is_health(&ev.ty), family == "health");
    if let Some(tp) = dispatch::event_traceparent(&ev) {
        assert_eq!(valid_traceparent(&tp).as_deref(), Some(tp.as_str()));
    }
    let _ = ev.time_or_now();
    let null = Value::Null;
    let event_data = ev.data.as_ref().unwrap_or(&null);
    if job_events::is_job_event_type(&ev.ty) {
        // A health probe type wins over the ApiServerSource prefix, as in dispatch.
        assert_eq!(
            family,
            if dispatch::is_health(&ev.ty) {
                "health"
            } else {
                "job"
            }
        );
        if let Ok(job) = serde_json::from_value::<Job>(event_data.clone()) {
            let _ = job_events::run_id_of(&job, RUNS_NAMESPACE);
            let _ = status::observe(&job, ev.ty.ends_with(".delete"));
        }
    }
    let ctx = Context {
        data: event_data,
        ce: &ev.attributes,
    };
    for filter in EVENT_FILTERS.iter() {
        assert_eq!(filter.matches(&ctx), filter.matches(&ctx));
    }
}

/// `cql2`: parse a filter (twice: same result); when it parses, evaluate it against the
/// input's documents and built-in ones, as data and as CloudEvent attributes, checking that
/// evaluation is deterministic and that `not` negates. The same JSON also goes through the
/// trigger parameter mapping (`params_mapping` = the filter, `params_default` = the first
/// document), which reads event paths the same way.
pub fn cql2(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (filter, docs) = match &input {
        Value::Array(items) if !items.is_empty() => (&items[0], &items[1..]),
        other => (other, &[][..]),
    };
    let parsed = cql2::parse(filter);
    assert_eq!(parsed, cql2::parse(filter), "parsing is not deterministic");
    if let Ok(expr) = &parsed {
        let negated = cql2::Expr::Not(Box::new(expr.clone()));
        for doc in docs.iter().chain(SAMPLE_DATA.iter()) {
            for ce in [&*SAMPLE_CE, doc] {
                let ctx = Context { data: doc, ce };
                let first = expr.matches(&ctx);
                assert_eq!(first, expr.matches(&ctx), "evaluation is not deterministic");
                assert_eq!(negated.matches(&ctx), !first, "not does not negate");
            }
        }
    }

    if triggers::parse_mapping(filter).is_ok() {
        let t = trigger::Model {
            slug: "fuzz".into(),
            description: None,
            cql2_filter: json!({}),
            params_default: docs.first().cloned().unwrap_or_else(|| json!({})),
            params_mapping: filter.clone(),
            trigger_type_id: "fuzz".into(),
            pipeline_id: 1,
            owner_id: None,
            status: "Enabled".into(),
            enabled: true,
        };
        for doc in docs.iter().chain(SAMPLE_DATA.iter()) {
            let ctx = Context {
                data: doc,
                ce: &SAMPLE_CE,
            };
            let built = triggers::build_parameters(&t, &ctx);
            assert_eq!(built, triggers::build_parameters(&t, &ctx));
        }
    }
}

/// The pipeline graph described by a `cwl_render` input (see the module docs), and the run
/// parameters.
pub fn cwl_graph(data: &[u8]) -> (PipelineGraph, Value) {
    let text = String::from_utf8_lossy(data);
    let sections: Vec<&str> = text.split("\n%%\n").collect();
    let json_at = |i: usize| {
        sections
            .get(i)
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
    };
    let parameters = json_at(1).unwrap_or_else(|| json!({}));
    let default_inputs = json_at(2);
    let by_slug = match json_at(3) {
        Some(Value::Object(m)) if !m.is_empty() => m,
        _ => [("sw".to_string(), json!({}))].into_iter().collect(),
    };
    let definitions = sections.get(4..).unwrap_or(&[]);
    let subworkflows = by_slug
        .iter()
        .take(MAX_SUBWORKFLOWS)
        .enumerate()
        .map(|(i, (slug, user_params))| {
            let tools = user_params
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .take(MAX_SUBWORKFLOWS)
                .map(|tool| command_line_tool::Model {
                    slug: tool.clone(),
                    name: tool.clone(),
                    definition: format!("class: CommandLineTool\nid: {tool}\n"),
                    version: Some("1".into()),
                })
                .collect();
            let sw = subworkflow::Model {
                slug: slug.clone(),
                name: slug.clone(),
                description: None,
                pipeline_step: format!("step{i}"),
                definition: if definitions.is_empty() {
                    String::new()
                } else {
                    definitions[i % definitions.len()].to_string()
                },
                user_params: user_params.clone(),
                version: "1".into(),
                status: "Stable".into(),
                available: true,
            };
            (sw, tools)
        })
        .collect();
    let graph = PipelineGraph {
        pipeline: pipeline::Model {
            id: 1,
            name: "fuzz".into(),
            description: None,
            template: sections[0].to_string(),
            version: None,
            owner_id: None,
            created_at: None,
            edited_at: None,
            default_inputs,
            quality_rules: None,
        },
        subworkflows,
    };
    (graph, parameters)
}

/// `cwl_render`: parameter validation and flattening, then CWL rendering, on an in-memory
/// pipeline graph. Refused parameters are a 4xx; rendering may fail but must not panic and
/// must finish within [`RENDER_BUDGET`].
pub fn cwl_render(data: &[u8]) {
    let (graph, parameters) = cwl_graph(data);
    match params::validate(&graph, &parameters) {
        Ok(()) => {
            let flat = params::flatten(&parameters, 1, 2, "http://aq.example");
            assert_eq!(flat["pipeline_id"], json!("1"));
            assert_eq!(flat["run_id"], json!("2"));
            // Accepted user values never carry structure into the runner's input object.
            fn has_object(v: &serde_json::Value) -> bool {
                match v {
                    serde_json::Value::Object(_) => true,
                    serde_json::Value::Array(items) => items.iter().any(has_object),
                    _ => false,
                }
            }
            assert!(params::directive_key(&parameters, "parameters").is_none());
            assert!(!flat.values().any(has_object), "{flat:?}");
        }
        Err(e) => assert!(e.status().is_client_error(), "validation answered {e}"),
    }
    let started = thread_cpu_time();
    let rendered = render::render(&graph);
    let took = thread_cpu_time().saturating_sub(started);
    assert!(
        took < RENDER_BUDGET,
        "rendering took {took:?} ({})",
        match &rendered {
            Ok(s) => format!("{} bytes", s.len()),
            Err(e) => e.to_string(),
        }
    );
}

/// One in-memory SQLite database, migrated once per process, and the runtime that drives it.
static FIXTURE_DB: LazyLock<(tokio::runtime::Runtime, DatabaseConnection)> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let db = rt.block_on(async {
        let mut opts = ConnectOptions::new("sqlite::memory:");
        // A single connection that is never recycled: each in-memory connection is its own
        // database, so a second or replaced connection would see no tables.
        opts.max_connections(1)
            .min_connections(1)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .sqlx_logging(false);
        let db = Database::connect(opts).await.expect("in-memory SQLite");
        db::migrate(&db).await.expect("migrations");
        db
    });
    (rt, db)
});

/// Tables an import writes, children first, emptied after each successful import so every
/// input starts from the same empty catalogue.
const IMPORTED_TABLES: &[&str] = &[
    "backend_trigger",
    "backend_triggertype",
    "backend_pipeline_tools",
    "backend_pipeline",
    "auth_user",
    "backend_subworkflow_tools",
    "backend_subworkflow_tags",
    "backend_subworkflow",
    "backend_commandlinetool",
    "backend_tag",
];

/// `fixture_import`: the fixture import (`import-fixtures`) on an in-memory SQLite database.
/// Bad files must be refused with an error, never a panic; a file that imports once must
/// import again (the second time as updates) with the same counts.
pub fn fixture_import(data: &[u8]) {
    // `import-fixtures` reads files as UTF-8 text and refuses anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One import at a time: the database is shared (tests may call this from several threads).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rt, db) = &*FIXTURE_DB;
    rt.block_on(async {
        let Ok(first) = fixtures::import_str(db, "fuzz", text).await else {
            return;
        };
        let again = fixtures::import_str(db, "fuzz", text)
            .await
            .expect("a fixture that imported once imports again");
        let total = |r: &fixtures::ImportReport| {
            r.imported
                .iter()
                .map(|(m, (c, u))| (m.clone(), c + u))
                .collect::<Vec<_>>()
        };
        assert_eq!(total(&first), total(&again));
        assert_eq!(first.skipped, again.skipped);
        assert!(again.imported.values().all(|(created, _)| *created == 0));
        for table in IMPORTED_TABLES {
            db.execute_unprepared(&format!("DELETE FROM {table}"))
                .await
                .expect("emptying the catalogue");
        }
    });
}
