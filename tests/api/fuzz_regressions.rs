//! Fuzzing regressions: every committed corpus seed (`fuzz/corpus/<target>/`) and every crash
//! reproducer (`fuzz/regressions/<target>/`) goes through the same harness functions the
//! cargo-fuzz targets call (the harness source is included, not copied), so what the fuzzer
//! found stays fixed and the corpus stays exercised in CI without cargo-fuzz. The fuzzing
//! itself is not run here (see docs/fuzzing.md).

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use application_quality_api::{
    events::{cql2, decode::IncomingEvent},
    pipelines::{params, render},
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A harness entry point: bytes in, panics on a violated property.
type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 4] = [
    ("cloudevent_decode", harness::cloudevent_decode),
    ("cql2", harness::cql2),
    ("cwl_render", harness::cwl_render),
    ("fixture_import", harness::fixture_import),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/` (sorted, so failures name the same file every time).
fn files(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(fuzz_dir().join("corpus").join(target).join(name)).unwrap()
}

#[test]
fn every_corpus_seed_runs_clean() {
    for (target, run) in TARGETS {
        let seeds = files("corpus", target);
        assert!(
            seeds.len() >= 3,
            "fuzz/corpus/{target} should keep its seeds"
        );
        for (path, bytes) in seeds {
            eprintln!("{target}: {}", path.display());
            run(&bytes);
        }
    }
}

#[test]
fn every_crash_reproducer_runs_clean() {
    let mut count = 0;
    for (target, run) in TARGETS {
        for (path, bytes) in files("regressions", target) {
            eprintln!("{target}: {}", path.display());
            run(&bytes);
            count += 1;
        }
    }
    eprintln!("{count} reproducers");
}

/// The seeds reach the interesting paths (not just early refusals), so the corpus test above
/// proves something: valid events decode, filters match their documents, templates render,
/// the catalogue fixture imports.
#[test]
fn seeds_reach_the_accepting_paths() {
    let bytes = seed("cloudevent_decode", "binary_execute");
    let sep = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
    let mut headers = http::HeaderMap::new();
    for line in bytes[..sep].split(|b| *b == b'\n') {
        let s = std::str::from_utf8(line).unwrap();
        let (k, v) = s.split_once(": ").unwrap();
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let ev = IncomingEvent::decode(&headers, bytes[sep + 2..].to_vec()).unwrap();
    assert_eq!(ev.user.as_deref(), Some("eric"));
    assert!(ev.headers_json().get("authorization").is_none());

    let input: Value = serde_json::from_slice(&seed("cql2", "and_like")).unwrap();
    let expr = cql2::parse(&input[0]).unwrap();
    let ce = json!({});
    assert!(expr.matches(&cql2::Context {
        data: &input[1],
        ce: &ce
    }));

    let (graph, parameters) = harness::cwl_graph(&seed("cwl_render", "pipeline_two_subworkflows"));
    assert_eq!(graph.subworkflows.len(), 2);
    params::validate(&graph, &parameters).unwrap();
    let cwl = render::render(&graph).unwrap();
    assert!(cwl.contains("- id: clone_subworkflow"), "{cwl}");
    assert!(cwl.contains("repo_branch = develop"), "{cwl}");
    assert!(cwl.contains("run: clone # clone 1"), "{cwl}");
    assert!(cwl.contains("1 tools"), "{cwl}");

    let (graph, parameters) = harness::cwl_graph(&seed("cwl_render", "bad_parameter_type"));
    let err = params::validate(&graph, &parameters).unwrap_err();
    assert_eq!(err.status(), 400);
}

/// A template that loops for ever is stopped by the render budget instead of holding a launch.
#[test]
fn runaway_template_render_is_bounded() {
    let template =
        "{% for a in range(99999) %}{% for b in range(99999) %}x{% endfor %}{% endfor %}";
    let (graph, _) = harness::cwl_graph(template.as_bytes());
    let started = std::time::Instant::now();
    let err = render::render(&graph).unwrap_err();
    assert!(started.elapsed() < harness::RENDER_BUDGET, "{err}");
}

/// Found by `cloudevent_decode`: a type with the ApiServerSource prefix and the health-probe
/// suffix is both; dispatch answers it as a probe (checked first), and classification agrees.
#[test]
fn job_prefixed_health_probe_is_a_probe() {
    use application_quality_api::{events::dispatch, k8s::job_events};
    let ty = "dev.knative.apiserver.resource.update.probes.health";
    assert!(job_events::is_job_event_type(ty));
    assert_eq!(dispatch::type_family(ty), "health");
    let bytes =
        std::fs::read(fuzz_dir().join("regressions/cloudevent_decode/job_prefix_health_suffix"))
            .unwrap();
    harness::cloudevent_decode(&bytes);
}
