//! CloudEvents ingress and triggers (issue 4): one module line in `main.rs`, the files beside it.

#[path = "events_support.rs"]
pub mod support;

#[path = "events_ingress.rs"]
mod ingress;

#[path = "events_exactly_once.rs"]
mod exactly_once;

#[path = "triggers_api.rs"]
mod triggers_api;

#[path = "triggers_github.rs"]
mod triggers_github;

#[path = "events_python.rs"]
mod python;
