//! Quality verdicts (issue 13): digests, quality rules, the manual override, commit statuses on
//! GitHub and GitLab, and the Grafana views. One module line in `main.rs`, the files beside it.

#[path = "verdicts_support.rs"]
pub mod support;

#[path = "verdicts_digests.rs"]
mod digests;

#[path = "verdicts_statuses.rs"]
mod statuses;

#[path = "verdicts_grafana.rs"]
mod grafana;
