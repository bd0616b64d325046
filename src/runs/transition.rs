//! The run state machine: the only code that writes a run's `status` (a source scan in the
//! tests below keeps it that way).
//!
//! Every move is a compare-and-set from the status its caller read (`UPDATE ... WHERE id = ?
//! AND status = ?`), so of two writers that read the same status only one moves the run: the
//! other is told it lost and gets the run as it is now. That holds across replicas, since the
//! database decides. The moves allowed:
//!
//! ```text
//! (created) --> starting --launch--> running | starting (queued) | pending | failed
//!               starting --> running (the local runner starts it) | succeeded | failed | killed
//!               running  --> succeeded | failed | killed
//!               failed   --resumed launch--> starting | running | pending | failed
//! ```
//!
//! A terminal status never changes, with one exception kept from the launch design: a run
//! whose launch found the API server unavailable is `failed` with `launched_at` unset, and only
//! a resumed launch (an event redelivery) takes it further, guarded by that column.
//!
//! A run is concluded ([`quality::conclude`]: digest, verdict, the commit status of its end) in
//! the transaction of the move that ends it, so exactly once per end, whoever ends it.

use super::{RunResults, RunService, RunStatus, store_results};
use crate::{
    config::Config,
    db::entities::pipeline_run,
    error::{AppError, AppResult},
    quality, statuses,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};

/// What changes with a run's status.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// The run's `status_message` in its new status (`None` clears it).
    pub message: Option<String>,
    /// When a run that ends here ended (default: now). Only ended runs have one.
    pub completion_time: Option<DateTime<Utc>>,
    /// Set by a launch: what it records.
    pub launch: Option<LaunchRecord>,
    /// What the executor collected, stored once (see [`store_results`]).
    pub results: RunResults,
}

/// What a launch records besides the status.
#[derive(Debug, Clone, Default)]
pub struct LaunchRecord {
    /// When it was launched; `None` when the launch must be resumed (the API server was
    /// unavailable).
    pub launched_at: Option<DateTime<Utc>>,
    /// Namespace and Job name, when the executor placed the run.
    pub job: Option<(String, String)>,
}

/// How a move went.
#[derive(Debug)]
pub enum Transition {
    /// The run moved; `concluded` when this move ended it.
    Moved {
        run: pipeline_run::Model,
        concluded: bool,
    },
    /// The run was not where the caller read it (someone else moved it first), or the move is
    /// not allowed from there: the run as it is now.
    Lost(pipeline_run::Model),
}

impl Transition {
    /// The run after the attempt, moved or not.
    pub fn into_run(self) -> pipeline_run::Model {
        match self {
            Transition::Moved { run, .. } | Transition::Lost(run) => run,
        }
    }
}

/// Whether a run may move from `from` to `to`; `launch` says the move records a launch.
pub fn allowed(from: RunStatus, to: RunStatus, launch: bool) -> bool {
    use RunStatus::*;
    match from {
        // `starting` to itself or `pending` only by a launch (queued, not executed).
        Starting => launch || !matches!(to, Starting | Pending),
        Running => matches!(to, Succeeded | Failed | Killed),
        // A launch the API server cut off, resumed (`launched_at` is checked in the update).
        Failed => launch && to != Killed && to != Succeeded,
        Pending | Succeeded | Killed => false,
    }
}

/// Stores a new run, `starting` (the only way a run comes to exist). Inside the caller's
/// transaction, with whatever else belongs to the creation.
pub async fn create<C: ConnectionTrait>(
    db: &C,
    mut run: pipeline_run::ActiveModel,
) -> AppResult<pipeline_run::Model> {
    run.status = Set(RunStatus::Starting);
    Ok(run.insert(db).await?)
}

/// Moves run `id` from `from` (the status the caller read) to `to` inside `txn`, concluding it
/// when the move ends it. The caller commits (rolls back when lost) and, when concluded, calls
/// [`statuses::kick`] after commit; [`apply`] does all of that.
pub async fn transition(
    txn: &DatabaseTransaction,
    config: &Config,
    id: i64,
    from: RunStatus,
    to: RunStatus,
    patch: Patch,
) -> AppResult<Transition> {
    if !allowed(from, to, patch.launch.is_some()) {
        return Ok(Transition::Lost(current(txn, id).await?));
    }
    let now = Utc::now();
    let ended = matches!(
        to,
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Killed
    );
    let completion = ended.then(|| patch.completion_time.unwrap_or(now));
    // The compare-and-set is the transaction's first statement: on SQLite it takes the write
    // lock before anything is read, so a concurrent writer makes it wait, never fail.
    let mut update = pipeline_run::Entity::update_many()
        .col_expr(pipeline_run::Column::Status, Expr::value(to))
        .col_expr(
            pipeline_run::Column::StatusMessage,
            Expr::value(patch.message.as_deref().map(storable)),
        )
        .col_expr(
            pipeline_run::Column::CompletionTime,
            Expr::value(completion),
        )
        .col_expr(pipeline_run::Column::UpdatedAt, Expr::value(now))
        .filter(pipeline_run::Column::Id.eq(id))
        .filter(pipeline_run::Column::Status.eq(from));
    if let Some(launch) = &patch.launch {
        update = update.col_expr(
            pipeline_run::Column::LaunchedAt,
            Expr::value(launch.launched_at),
        );
        if let Some((namespace, job)) = &launch.job {
            update = update
                .col_expr(
                    pipeline_run::Column::K8sNamespace,
                    Expr::value(namespace.clone()),
                )
                .col_expr(pipeline_run::Column::K8sJobName, Expr::value(job.clone()));
        }
    }
    if from.is_terminal() {
        update = update.filter(pipeline_run::Column::LaunchedAt.is_null());
    }
    let moved = update.exec(txn).await?.rows_affected == 1;
    let run = current(txn, id).await?;
    if !moved {
        return Ok(Transition::Lost(run));
    }
    let (run, _) = store_results(txn, run, patch.results).await?;
    let concluded = to.is_terminal() && !from.is_terminal();
    let run = if concluded {
        quality::conclude(txn, config, run).await?
    } else {
        run
    };
    Ok(Transition::Moved { run, concluded })
}

/// A status message as both stores keep it: control characters (other than newline and tab)
/// dropped. A tool's output quoted in a message may hold NUL bytes (a hostile repository can
/// make Ruff print `/proc/self/environ`), which PostgreSQL refuses in text: the run's end
/// would never be recorded.
pub fn storable(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// [`transition`] in a transaction of its own: commits a move (and delivers the commit status
/// of an end after commit), rolls back a lost one.
pub async fn apply(
    service: &RunService,
    id: i64,
    from: RunStatus,
    to: RunStatus,
    patch: Patch,
) -> AppResult<Transition> {
    let txn = service.db.begin().await?;
    let outcome = transition(&txn, &service.config, id, from, to, patch).await?;
    match &outcome {
        Transition::Moved { concluded, .. } => {
            txn.commit().await?;
            if *concluded {
                statuses::kick(&service.notifier);
            }
        }
        Transition::Lost(_) => txn.rollback().await?,
    }
    Ok(outcome)
}

async fn current<C: ConnectionTrait>(db: &C, id: i64) -> AppResult<pipeline_run::Model> {
    pipeline_run::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound("No PipelineRun matches the given query.".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    #[test]
    fn messages_are_stored_without_control_characters() {
        assert_eq!(storable("a\0b\u{1b}[31mc\nd\te"), "ab[31mc\nd\te");
    }

    #[test]
    fn stored_names_are_the_reference_s() {
        let names: Vec<String> = RunStatus::iter().map(|s| s.to_value()).collect();
        assert_eq!(
            names,
            [
                "starting",
                "pending",
                "running",
                "succeeded",
                "failed",
                "killed"
            ]
        );
        for s in RunStatus::iter() {
            assert_eq!(s.as_str(), s.to_value());
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunStatus::parse("active"), None);
    }

    #[test]
    fn terminal_statuses_never_move_except_a_resumed_launch() {
        use RunStatus::*;
        for from in RunStatus::iter() {
            for to in RunStatus::iter() {
                for launch in [false, true] {
                    let ok = allowed(from, to, launch);
                    if matches!(from, Pending | Succeeded | Killed) {
                        assert!(!ok, "{from} -> {to}");
                    }
                    if from == Failed && ok {
                        assert!(launch && matches!(to, Starting | Running | Pending | Failed));
                    }
                    if !launch && ok {
                        assert!(
                            matches!(
                                (from, to),
                                (Starting, Running | Succeeded | Failed | Killed)
                                    | (Running, Succeeded | Failed | Killed)
                            ),
                            "{from} -> {to}"
                        );
                    }
                }
            }
        }
        assert!(allowed(Starting, Starting, true), "a queued launch");
        assert!(allowed(Running, Killed, false), "a cancel");
    }

    /// Files under `src/` that write a run's status, with the offending snippet.
    fn status_writers(files: &[(String, String)]) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for (path, text) in files {
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .concat()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let mut hit = |what: &str| found.push((path.clone(), what.to_string()));
            for pattern in [
                "col_expr(pipeline_run::Column::Status,",
                "col_expr(Column::Status,",
                "set(pipeline_run::Column::Status,",
                "Set(RunStatus::",
                "Set(runs::RunStatus::",
                "Set(crate::runs::RunStatus::",
                "Expr::value(RunStatus::",
                "Expr::value(runs::RunStatus::",
            ] {
                if code.contains(pattern) {
                    hit(pattern);
                }
            }
            // A run's active model built field by field, with its status.
            for (at, _) in code.match_indices("pipeline_run::ActiveModel{") {
                let body = &code[at + "pipeline_run::ActiveModel{".len()..];
                let mut depth = 0usize;
                let mut fields = String::new();
                for c in body.chars() {
                    match c {
                        '{' | '(' | '[' => depth += 1,
                        '}' | ')' | ']' if depth == 0 => break,
                        '}' | ')' | ']' => depth -= 1,
                        _ => {}
                    }
                    fields.push(if depth == 0 { c } else { ' ' });
                }
                if fields.split(',').any(|f| f.trim().starts_with("status:")) {
                    hit("pipeline_run::ActiveModel { status: .. }");
                }
            }
            // An active model's status set by assignment: only the trigger modules may (their
            // rows have a status of their own, a string).
            let assigns = code.matches(".status=Set(").count()
                + code.matches(".status=ActiveValue::Set(").count();
            if assigns > 0 && code.contains("pipeline_run") && !path.ends_with("events/triggers.rs")
            {
                hit(".status = Set(..)");
            }
            let sql = code.to_ascii_lowercase();
            if sql.contains("updatebackend_pipelinerun") || sql.contains("intobackend_pipelinerun")
            {
                hit("SQL writing backend_pipelinerun");
            }
        }
        found
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// Nothing but this module writes `pipeline_run.status` (migrations only define it).
    #[test]
    fn only_the_state_machine_writes_a_run_s_status() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(files.len() > 50, "the scan reads the sources");
        let this = std::path::Path::new(file!())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let others: Vec<(String, String)> = files
            .into_iter()
            .filter(|(p, _)| !p.ends_with(&format!("runs/{this}")) && !p.contains("/migrations/"))
            .collect();
        let writers = status_writers(&others);
        assert!(
            writers.is_empty(),
            "only src/runs/transition.rs may write a run's status: {writers:#?}"
        );
    }

    /// The scan finds the writes the code had before the state machine.
    #[test]
    fn the_scan_finds_status_writes() {
        let cases = [
            "pipeline_run::Entity::update_many()\n    .col_expr(\n        pipeline_run::Column::Status,\n        Expr::value(RunStatus::Running.as_str()),\n    )",
            "let mut active = run.into_active_model();\nactive.status = Set(RunStatus::Killed);",
            "use db::entities::pipeline_run;\nlet mut a = run.into_active_model();\na.status = Set(to);",
            "pipeline_run::ActiveModel {\n    pipeline_id: Set(1),\n    usage_report: Set(json!({})),\n    status: Set(status),\n    ..Default::default()\n}",
            "db.execute_unprepared(\"UPDATE backend_pipelinerun SET status = 'killed'\")",
        ];
        for case in cases {
            let found = status_writers(&[("src/x.rs".into(), case.into())]);
            assert!(!found.is_empty(), "not caught: {case}");
        }
        let fine = [
            "pipeline_run::Entity::find().filter(pipeline_run::Column::Status.eq(RunStatus::Running))",
            "pipeline_run::ActiveModel { id: Set(1), status_message: Set(None), ..Default::default() }",
            "// active.status = Set(RunStatus::Killed);",
            "trigger::ActiveModel { status: Set(\"Enabled\".into()), ..Default::default() }",
        ];
        for case in fine {
            let found = status_writers(&[("src/x.rs".into(), case.into())]);
            assert!(found.is_empty(), "false alarm: {case}: {found:?}");
        }
    }
}
