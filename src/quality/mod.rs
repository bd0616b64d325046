//! Quality verdicts: a run's digest (the six issue counters summed over its job reports), the
//! pipeline's quality rules evaluated over them in the reference's order, and the manual
//! override staff can record.
//!
//! [`conclude`] is the one place where "a run ended" is handled: every path that moves a run to
//! a terminal status (Job events, reconcile on read, cancel, failed launches, the local runner)
//! calls it inside the transaction that stores the status, so the digest, the verdict and the
//! commit statuses to send (the outbox, [`crate::statuses`]) are committed together.

pub mod rules;

pub use crate::db::entities::pipeline_run::{digest_quality, effective_quality};
use crate::{
    config::Config,
    db::entities::{
        job_report, pipeline,
        pipeline_run::{self, RunStatus},
    },
    error::AppResult,
    statuses,
};
use chrono::{SecondsFormat, Utc};
use rules::{COUNTERS, Rule};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, IntoActiveModel, QueryFilter};
use sea_orm::{ColumnTrait, EntityTrait, QuerySelect, sea_query::Expr};
use serde_json::{Map, Value, json};

/// The rules every pre-defined (seeded or imported) pipeline ships with, as the reference's.
pub fn default_rules() -> Value {
    json!({
        "pass": "error == 0 and critical == 0 and security == 0 and warning == 0",
        "pass_with_comments": "error == 0 and critical == 0 and security == 0 and (info > 0 or warning > 0 or convention > 0)",
    })
}

/// The verdict of a run (`digest.digest_quality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    PassWithComments,
    Fail,
    /// The rules have no `pass` rule (and `pass_with_comments` did not match).
    Unknown,
    /// The rules could not be evaluated (null rules, a rule that does not parse, a division by
    /// zero).
    Exception,
    /// Not evaluated yet.
    Undefined,
}

impl Verdict {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::PassWithComments => "pass_with_comments",
            Verdict::Fail => "fail",
            Verdict::Unknown => "unknown",
            Verdict::Exception => "exception",
            Verdict::Undefined => "undefined",
        }
    }
}

/// Evaluates `rules` over `counters` in the reference's order: `pass_with_comments` first,
/// then `pass` (`pass` or `fail`), else `unknown`; any error is `exception`.
pub fn evaluate(rules: Option<&Value>, counters: &[f64; 6]) -> Verdict {
    let Some(Value::Object(rules)) = rules else {
        return Verdict::Exception;
    };
    let check = |key: &str| -> Option<Result<bool, ()>> {
        let text = rules.get(key)?;
        Some(
            text.as_str()
                .ok_or(())
                .and_then(|t| Rule::parse(t).map_err(|_| ()))
                .and_then(|r| r.matches(counters).map_err(|_| ())),
        )
    };
    match check("pass_with_comments") {
        Some(Err(())) => return Verdict::Exception,
        Some(Ok(true)) => return Verdict::PassWithComments,
        _ => {}
    }
    match check("pass") {
        Some(Err(())) => Verdict::Exception,
        Some(Ok(true)) => Verdict::Pass,
        Some(Ok(false)) => Verdict::Fail,
        None => Verdict::Unknown,
    }
}

/// Checks `quality_rules` as a pipeline is saved: null, or an object whose only keys are `pass`
/// and `pass_with_comments`, each a rule that parses. The message names the rule and the
/// problem.
pub fn validate_rules(value: &Value) -> Result<(), String> {
    let map = match value {
        Value::Null => return Ok(()),
        Value::Object(m) => m,
        _ => {
            return Err(
                "Expected an object {\"pass\": rule, \"pass_with_comments\": rule}.".into(),
            );
        }
    };
    for (key, rule) in map {
        if key != "pass" && key != "pass_with_comments" {
            return Err(format!(
                "Unknown rule '{key}': the rules are 'pass' and 'pass_with_comments'."
            ));
        }
        let Some(text) = rule.as_str() else {
            return Err(format!("The '{key}' rule must be a string."));
        };
        Rule::parse(text).map_err(|e| format!("The '{key}' rule is invalid: {e}."))?;
    }
    Ok(())
}

/// The counters of one job-report digest: `issues`, or `counts` as the reference's generator
/// writes (see docs/verdicts.md). Non-numeric, negative or non-finite values count as 0.
pub fn report_counters(digest: &Value) -> [f64; 6] {
    let mut out = [0.0; 6];
    let counters = digest
        .get("issues")
        .filter(|v| v.is_object())
        .or_else(|| digest.get("counts"));
    if let Some(Value::Object(c)) = counters {
        for (k, name) in COUNTERS.iter().enumerate() {
            if let Some(x) = c.get(*name).and_then(Value::as_f64)
                && x.is_finite()
                && x >= 0.0
            {
                out[k] = x;
            }
        }
    }
    out
}

/// JSON of a counter: an integer when it is one (counts are), a float otherwise.
fn counter_json(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// Builds a run's digest from its job reports' digests and the pipeline's rules.
pub fn run_digest(report_digests: &[Value], rules: Option<&Value>) -> Value {
    let mut sums = [0.0; 6];
    for d in report_digests {
        for (s, x) in sums.iter_mut().zip(report_counters(d)) {
            *s += x;
        }
    }
    let verdict = evaluate(rules, &sums);
    let issues: Map<String, Value> = COUNTERS
        .iter()
        .zip(sums)
        .map(|(n, x)| (n.to_string(), counter_json(x)))
        .collect();
    json!({
        "properties": {"name": "", "version": ""},
        "issues": issues,
        "quality_rules": rules.cloned().unwrap_or(Value::Null),
        "digest_quality": verdict.as_str(),
        "created_at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        "reports": report_digests.len(),
    })
}

/// The verdict of a run that did not succeed (failed, killed): its reports may show that the
/// code fails, never that it passes, since some of its tools may not have run. A deliberate
/// difference from the reference, which painted a run that failed before any tool ran green.
pub fn unfinished_verdict(computed: &str) -> &str {
    match computed {
        "pass" | "pass_with_comments" => Verdict::Unknown.as_str(),
        other => other,
    }
}

/// A run reached a terminal status (`run` as just stored, inside the caller's transaction):
/// computes its digest and verdict when it was executed, and queues the commit status that
/// reports the end (see [`statuses::enqueue_for_run`]). The caller commits, then calls
/// [`statuses::kick`].
pub async fn conclude<C: ConnectionTrait>(
    db: &C,
    config: &Config,
    run: pipeline_run::Model,
) -> AppResult<pipeline_run::Model> {
    let run = if executed(&run) {
        recompute_digest(db, run).await?
    } else {
        run
    };
    statuses::enqueue_for_run(db, config, &run, statuses::Moment::Ended).await?;
    Ok(run)
}

/// Whether the run was executed and has ended (so it has a digest).
fn executed(run: &pipeline_run::Model) -> bool {
    matches!(
        run.status,
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Killed
    )
}

/// A job report was just stored (inside the caller's transaction) for `run`: when the run has
/// ended already (a retried upload), the digest is computed again, and the commit status
/// follows when its state changed. A run that has not ended is left alone (its end will count
/// the report). Returns whether a status was queued.
///
/// The run is locked and read again first: an end committed meanwhile (its conclusion did not
/// see this report) is seen here, and an end still to come waits for this transaction, so its
/// conclusion does. Either way the report is counted.
pub async fn report_after_end<C: ConnectionTrait>(
    db: &C,
    config: &Config,
    run: pipeline_run::Model,
) -> AppResult<bool> {
    // A write takes the row lock on both stores (SQLite has no `SELECT ... FOR UPDATE`).
    pipeline_run::Entity::update_many()
        .col_expr(
            pipeline_run::Column::UpdatedAt,
            Expr::col(pipeline_run::Column::UpdatedAt),
        )
        .filter(pipeline_run::Column::Id.eq(run.id))
        .exec(db)
        .await?;
    let Some(run) = pipeline_run::Entity::find_by_id(run.id).one(db).await? else {
        return Ok(false);
    };
    if !executed(&run) {
        return Ok(false);
    }
    let before = statuses::ended_state(&run);
    let run = recompute_digest(db, run).await?;
    if statuses::ended_state(&run) == before {
        return Ok(false);
    }
    statuses::enqueue_for_run(db, config, &run, statuses::Moment::Ended).await
}

/// Stores the run's digest computed from its job reports and its pipeline's current rules; a
/// manual verdict is kept.
async fn recompute_digest<C: ConnectionTrait>(
    db: &C,
    run: pipeline_run::Model,
) -> AppResult<pipeline_run::Model> {
    {
        let digests: Vec<Value> = job_report::Entity::find()
            .select_only()
            .column(job_report::Column::Digest)
            .filter(job_report::Column::RunId.eq(run.id))
            .into_tuple::<Value>()
            .all(db)
            .await?
            .into_iter()
            .filter(|d| d.as_object().is_some_and(|m| !m.is_empty()))
            .collect();
        let rules = pipeline::Entity::find_by_id(run.pipeline_id)
            .select_only()
            .column(pipeline::Column::QualityRules)
            .into_tuple::<Option<Value>>()
            .one(db)
            .await?
            .flatten();
        let mut digest = run_digest(&digests, rules.as_ref());
        if run.status != RunStatus::Succeeded {
            let ended = unfinished_verdict(digest_quality(&digest));
            digest["digest_quality"] = json!(ended);
        }
        // A verdict staff set before the end stands.
        if let Some(manual) = run.digest.get("manual") {
            digest["manual"] = manual.clone();
        }
        let mut active = run.into_active_model();
        active.digest = Set(digest);
        Ok(active.update(db).await?)
    }
}

/// Longest manual verdict.
pub const MAX_MANUAL_LEN: usize = 50;

/// Records staff's verdict on `run` (the computed one is kept) and queues the commit status it
/// implies, inside the caller's transaction.
pub async fn override_verdict<C: ConnectionTrait>(
    db: &C,
    config: &Config,
    run: pipeline_run::Model,
    verdict: &str,
    username: &str,
) -> AppResult<pipeline_run::Model> {
    let mut digest = match &run.digest {
        Value::Object(m) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    };
    digest["manual"] = json!({
        "digest_quality": verdict,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "user": username,
    });
    let mut active = run.into_active_model();
    active.digest = Set(digest);
    active.updated_at = Set(Utc::now());
    let run = active.update(db).await?;
    // Only a run that ended has a verdict to report; before that the end will report it.
    if run.status.is_terminal() {
        statuses::enqueue_for_run(db, config, &run, statuses::Moment::Override).await?;
    }
    Ok(run)
}

#[cfg(test)]
mod unfinished_tests {
    #[test]
    fn a_run_that_did_not_succeed_never_passes() {
        assert_eq!(super::unfinished_verdict("pass"), "unknown");
        assert_eq!(super::unfinished_verdict("pass_with_comments"), "unknown");
        assert_eq!(super::unfinished_verdict("fail"), "fail");
        assert_eq!(super::unfinished_verdict("exception"), "exception");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "error == 0 and critical == 0 and security == 0 and warning == 0";
    const PWC: &str = "error == 0 and critical == 0 and security == 0 and (info > 0 or warning > 0 or convention > 0)";

    fn c(info: f64, warning: f64, error: f64) -> [f64; 6] {
        [info, 0.0, warning, error, 0.0, 0.0]
    }

    /// The evaluation table of the contract (section 2.3), row by row.
    #[test]
    fn evaluation_order() {
        let both = json!({"pass": PASS, "pass_with_comments": PWC});
        // pass_with_comments is tested first and wins when it matches.
        assert_eq!(
            evaluate(Some(&both), &c(2.0, 1.0, 0.0)),
            Verdict::PassWithComments
        );
        assert_eq!(
            evaluate(
                Some(&json!({"pass": "true", "pass_with_comments": "true"})),
                &c(0.0, 0.0, 0.0)
            ),
            Verdict::PassWithComments
        );
        // Otherwise pass decides: pass or fail.
        assert_eq!(evaluate(Some(&both), &c(0.0, 0.0, 0.0)), Verdict::Pass);
        assert_eq!(evaluate(Some(&both), &c(0.0, 0.0, 1.0)), Verdict::Fail);
        assert_eq!(
            evaluate(Some(&json!({"pass": PASS})), &c(1.0, 1.0, 0.0)),
            Verdict::Fail
        );
        // No pass rule: unknown, even when pass_with_comments exists but did not match.
        assert_eq!(
            evaluate(Some(&json!({})), &c(0.0, 0.0, 0.0)),
            Verdict::Unknown
        );
        assert_eq!(
            evaluate(Some(&json!({"pass_with_comments": PWC})), &c(0.0, 0.0, 0.0)),
            Verdict::Unknown
        );
        assert_eq!(
            evaluate(Some(&json!({"pass_with_comments": PWC})), &c(1.0, 0.0, 0.0)),
            Verdict::PassWithComments
        );
        // Any error is exception: null rules, a rule that does not parse, a non-string rule,
        // a division by zero.
        assert_eq!(evaluate(None, &c(0.0, 0.0, 0.0)), Verdict::Exception);
        assert_eq!(
            evaluate(Some(&Value::Null), &c(0.0, 0.0, 0.0)),
            Verdict::Exception
        );
        assert_eq!(
            evaluate(Some(&json!({"pass": "errors == 0"})), &c(0.0, 0.0, 0.0)),
            Verdict::Exception
        );
        assert_eq!(
            evaluate(Some(&json!({"pass": 1})), &c(0.0, 0.0, 0.0)),
            Verdict::Exception
        );
        assert_eq!(
            evaluate(
                Some(&json!({"pass": PASS, "pass_with_comments": "info / error > 0"})),
                &c(0.0, 0.0, 0.0)
            ),
            Verdict::Exception
        );
        // Default rules, consequences listed in the contract.
        let d = default_rules();
        assert_eq!(evaluate(Some(&d), &[0.0; 6]), Verdict::Pass);
        assert_eq!(
            evaluate(Some(&d), &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]),
            Verdict::PassWithComments
        );
        for k in 3..6 {
            let mut x = [0.0; 6];
            x[k] = 1.0;
            assert_eq!(evaluate(Some(&d), &x), Verdict::Fail, "{}", COUNTERS[k]);
        }
    }

    #[test]
    fn counters_from_issues_or_counts() {
        assert_eq!(
            report_counters(&json!({"issues": {"error": 2, "undefined": 4, "info": 1}})),
            [1.0, 0.0, 0.0, 2.0, 0.0, 0.0]
        );
        assert_eq!(
            report_counters(&json!({"counts": {"security": 3, "critical": "x", "warning": -1}})),
            [0.0, 0.0, 0.0, 0.0, 3.0, 0.0]
        );
        assert_eq!(report_counters(&json!({})), [0.0; 6]);
        let d = run_digest(
            &[
                json!({"issues": {"info": 1, "warning": 2}}),
                json!({"counts": {"info": 3, "convention": 4}}),
            ],
            Some(&default_rules()),
        );
        assert_eq!(
            d["issues"],
            json!({"info": 4, "convention": 4, "warning": 2, "error": 0, "security": 0, "critical": 0})
        );
        assert_eq!(d["digest_quality"], "pass_with_comments");
        assert_eq!(digest_quality(&d), "pass_with_comments");
        assert_eq!(digest_quality(&json!("")), "undefined");
        assert_eq!(digest_quality(&json!({"x": 1})), "undefined");
        let mut overridden = d.clone();
        overridden["manual"] = json!({"digest_quality": "fail"});
        assert_eq!(effective_quality(&overridden), "fail");
        assert_eq!(digest_quality(&overridden), "pass_with_comments");
    }

    #[test]
    fn rules_are_validated_on_save() {
        assert!(validate_rules(&default_rules()).is_ok());
        assert!(validate_rules(&Value::Null).is_ok());
        assert!(validate_rules(&json!({})).is_ok());
        assert!(validate_rules(&json!([])).is_err());
        let e = validate_rules(&json!({"pass": "error == "})).unwrap_err();
        assert!(e.contains("'pass'") && e.contains("ends early"), "{e}");
        let e = validate_rules(&json!({"pas": "true"})).unwrap_err();
        assert!(e.contains("Unknown rule 'pas'"), "{e}");
        let e = validate_rules(&json!({"pass_with_comments": 3})).unwrap_err();
        assert!(e.contains("must be a string"), "{e}");
    }
}
