//! Integration tests: one binary, the real server on port 0, a real SQLite file or PostgreSQL
//! database (`TEST_BACKEND=postgres`, `TEST_DATABASE_URL`), real HTTP.

mod catalogue;
mod ci_tokens;
mod common;
mod events;
mod events_auth;
mod fake_launcher;
mod faults;
mod foundation;
mod fuzz_regressions;
mod hostile;
mod image;
mod k8s_runs;
mod local_runs;
mod manifests;
mod metrics;
mod oidc_support;
mod openapi;
mod pg_tls;
mod process;
mod rate_limit;
mod replay;
mod rest_access;
mod rest_catalogue;
mod rest_pipelines;
mod rest_runs;
mod rest_support;
mod rest_tokens;
mod run_lifecycle;
mod scale;
mod schema;
mod signin;
mod support_http;
mod verdicts;
