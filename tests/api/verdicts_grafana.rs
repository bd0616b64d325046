//! The Grafana views on PostgreSQL: the dashboards' queries (the contract's section 4, written
//! here with Grafana's `$__timeFilter` macro expanded) run against `executions[_admin]` and
//! `reports[_admin]` after real runs and return the expected rows. The non-admin views show
//! the database user's own rows (the reference's were always empty). Always on PostgreSQL,
//! whatever `TEST_BACKEND` is (SQLite has no views). Also: a database of the previous release
//! upgrades in place (on the suite's backend).

use super::digests::{seeded, start};
use super::support::{finish_job, post_report_multipart, spawn};
use crate::common::fresh_postgres_database;
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};
use serde_json::{Value, json};

async fn query(
    db: &sea_orm::DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Vec<QueryResult> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn col<T: sea_orm::TryGetable>(row: &QueryResult, name: &str) -> T {
    row.try_get("", name)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// Grafana's `$__timeFilter(start_time)` for "the last day".
const TIME_FILTER: &str =
    "start_time BETWEEN now() - interval '1 day' AND now() + interval '1 minute'";

#[tokio::test]
async fn dashboards_queries_return_the_runs() {
    let url = fresh_postgres_database().await;
    let (app, k) = spawn(Vec::new(), Some(url)).await;
    let db = &app.state.db;
    app.seed().await;
    // The non-admin views filter on the database session user: give it an application user.
    let session: String = col(
        &query(db, "SELECT SESSION_USER::text AS u", vec![]).await[0],
        "u",
    );
    let (_, mine) = app.user_with_token(&session, false).await;
    let (_, other) = app.user_with_token("alice-grafana", false).await;
    let p = seeded(&app, "Python lint").await;

    let run = start(&app, &mine, p).await;
    let ruff = json!([{"filename": "/calrissian/src/app/main.py", "message": "Missing docstring", "code": "D100",
        "cell": null, "location": {"row": 1, "column": 1}, "end_location": {"row": 1, "column": 5},
        "fix": {"message": "Add docstring", "applicability": "safe"}}]);
    let (s, report) = post_report_multipart(
        &app,
        &format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=ruff&instance=src"),
        &k.token(run),
        &[
            ("report", &ruff.to_string()),
            (
                "digest",
                &super::support::digest("ruff", json!({"convention": 1, "warning": 2})),
            ),
        ],
    )
    .await;
    assert_eq!(s, 201);
    let usage = json!({"total_tasks": 3, "total_cpu_hours": 0.5, "elapsed_hours": 0.25,
    "total_disk_megabytes": 120.0, "total_ram_megabyte_hours": 64.0,
    "children": [
        {"name": "clone_step", "cpu_hours": 0.1, "elapsed_seconds": 10, "ram_megabyte_hours": 1.0},
        {"name": "ruff_step", "cpu_hours": 0.3, "elapsed_seconds": 40, "ram_megabyte_hours": 2.0},
        {"name": "save_step", "cpu_hours": 0.1, "elapsed_seconds": 5, "ram_megabyte_hours": 1.0}
    ]});
    let (s, body) = app
        .post(
            &format!("/api/pipelines/{p}/runs/{run}/results/"),
            Some(&k.token(run)),
            &json!({"usage_report": usage, "output": {"ok": true}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    finish_job(&app, run, "Complete").await;
    let theirs = start(&app, &other, p).await;
    finish_job(&app, theirs, "Failed").await;

    // pipeline-executions-daily-statistics
    let rows = query(
        db,
        &format!(
            "SELECT start_time::date::text AS day, COUNT(*) AS total,
                    COUNT(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                    COUNT(*) FILTER (WHERE status = 'failed') AS failed,
                    COUNT(*) FILTER (WHERE status IN ('starting', 'running', 'active')) AS active,
                    SUM(total_tasks)::bigint AS tasks, SUM(total_cpu_hours) AS cpu,
                    SUM(elapsed_hours) AS elapsed, SUM(total_disk_megabytes) AS disk,
                    SUM(total_ram_megabyte_hours) AS ram
             FROM executions_admin WHERE {TIME_FILTER} GROUP BY 1 ORDER BY 1"
        ),
        vec![],
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(col::<i64>(&rows[0], "total"), 2);
    assert_eq!(col::<i64>(&rows[0], "succeeded"), 1);
    assert_eq!(col::<i64>(&rows[0], "failed"), 1);
    assert_eq!(col::<i64>(&rows[0], "active"), 0);
    assert_eq!(col::<i64>(&rows[0], "tasks"), 3);
    assert_eq!(col::<f64>(&rows[0], "cpu"), 0.5);
    assert_eq!(col::<f64>(&rows[0], "ram"), 64.0);

    // pipeline-executions-list
    let rows = query(
        db,
        &format!("SELECT pipeline_name, start_time, completion_time, status, id FROM executions_admin WHERE {TIME_FILTER} ORDER BY start_time"),
        vec![],
    )
    .await;
    let list: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (col(r, "pipeline_name"), col(r, "status"), col(r, "id")))
        .collect();
    assert_eq!(
        list,
        [
            ("Python lint".into(), "succeeded".into(), run),
            ("Python lint".into(), "failed".into(), theirs)
        ]
    );

    // pipeline-execution: its variable, inputs, usage report, per-tool usage.
    let ids: Vec<i64> = query(
        db,
        "SELECT id FROM executions_admin WHERE id IS NOT NULL ORDER BY id",
        vec![],
    )
    .await
    .iter()
    .map(|r| col(r, "id"))
    .collect();
    assert_eq!(ids, [run, theirs]);
    let rows = query(
        db,
        "SELECT inputs::jsonb AS inputs FROM executions_admin WHERE id = $1",
        vec![run.into()],
    )
    .await;
    let inputs: Value = col(&rows[0], "inputs");
    assert_eq!(inputs["clone_subworkflow.clone.repo_branch"], "main");
    let rows = query(
        db,
        "SELECT status, usage_report FROM executions_admin WHERE id = $1",
        vec![run.into()],
    )
    .await;
    assert_eq!(col::<Value>(&rows[0], "usage_report")["total_tasks"], 3);
    let rows = query(
        db,
        "SELECT c->>'name' AS name, (c->>'cpu_hours')::float * 3600 AS cpu_seconds,
                (c->>'elapsed_seconds')::float AS elapsed_seconds, (c->>'ram_megabyte_hours')::float AS ram
         FROM executions_admin, jsonb_array_elements(usage_report->'children') c
         WHERE id = $1 AND c->>'name' NOT LIKE 'clone_%' AND c->>'name' NOT LIKE 'filter_%'
               AND c->>'name' NOT LIKE 'save_%'
         LIMIT 50",
        vec![run.into()],
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(col::<String>(&rows[0], "name"), "ruff_step");
    assert!((col::<f64>(&rows[0], "cpu_seconds") - 1080.0).abs() < 1e-6);

    // pipeline-executions-report-list (uses `instance`, which the reference's view lacked).
    let rows = query(
        db,
        "SELECT name, instance, created_at, id FROM reports_admin WHERE run_id = $1",
        vec![run.into()],
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(col::<String>(&rows[0], "instance"), "src");
    let report_id = report["id"].as_i64().unwrap();
    assert_eq!(col::<i64>(&rows[0], "id"), report_id);

    // A report dashboard's variables, then the ruff-report panel.
    let rid: i64 = col(
        &query(
            db,
            "SELECT id FROM reports_admin WHERE name = 'ruff'",
            vec![],
        )
        .await[0],
        "id",
    );
    assert_eq!(rid, report_id);
    let eid: i64 = col(
        &query(
            db,
            "SELECT run_id FROM reports_admin WHERE id = $1",
            vec![rid.into()],
        )
        .await[0],
        "run_id",
    );
    assert_eq!(eid, run);
    let rows = query(
        db,
        "SELECT pipeline_id, pipeline_name FROM executions_admin WHERE id = $1",
        vec![eid.into()],
    )
    .await;
    assert_eq!(col::<i64>(&rows[0], "pipeline_id"), p);
    let rows = query(
        db,
        "SELECT regexp_replace(e->>'filename', '^.*/', '') AS file, e->>'message' AS message,
                e->>'code' AS code, e->'location'->>'row' AS row_, e->'fix'->>'message' AS fix,
                e->'fix'->>'applicability' = 'safe' AS safe
         FROM reports_admin, jsonb_array_elements(output) e WHERE id = $1",
        vec![rid.into()],
    )
    .await;
    assert_eq!(col::<String>(&rows[0], "file"), "main.py");
    assert_eq!(col::<String>(&rows[0], "code"), "D100");
    assert!(col::<bool>(&rows[0], "safe"));

    // The verdict columns the reference's views lacked.
    let rows = query(
        db,
        "SELECT digest_quality, (digest->'issues'->>'warning')::int AS warnings FROM executions_admin WHERE id = $1",
        vec![run.into()],
    )
    .await;
    assert_eq!(
        col::<String>(&rows[0], "digest_quality"),
        "pass_with_comments"
    );
    assert_eq!(col::<i32>(&rows[0], "warnings"), 2);
    let rows = query(
        db,
        "SELECT digest->'counts'->>'warning' AS w FROM reports_admin WHERE id = $1",
        vec![rid.into()],
    )
    .await;
    assert_eq!(col::<String>(&rows[0], "w"), "2");

    // The non-admin views: the session user's own runs and reports only.
    let own: Vec<i64> = query(db, "SELECT id FROM executions", vec![])
        .await
        .iter()
        .map(|r| col(r, "id"))
        .collect();
    assert_eq!(own, [run]);
    let own: Vec<i64> = query(db, "SELECT run_id FROM reports", vec![])
        .await
        .iter()
        .map(|r| col(r, "run_id"))
        .collect();
    assert_eq!(own, [run]);
}

/// A database of the previous release (first migration only) with a pipeline, a finished run
/// and a report upgrades in place: the new columns get their defaults (`""` for a run's digest,
/// `{}` for a report's, no rules), the old rows read through the API, and on PostgreSQL the
/// views show them. (Ids above the sequences' start, as PostgreSQL's sequences do not see rows
/// inserted with explicit ids.)
#[tokio::test]
async fn an_existing_database_upgrades_in_place() {
    use application_quality_api::db::Migrator;
    use sea_orm::Database;
    use sea_orm_migration::MigratorTrait;
    let dir = tempfile::tempdir().unwrap();
    let url = crate::common::fresh_database_url(&dir).await;
    let postgres = url.starts_with("postgres");
    {
        let db = Database::connect(&url).await.unwrap();
        Migrator::up(&db, Some(1)).await.unwrap();
        let backend = db.get_database_backend();
        for sql in [
            "INSERT INTO auth_user (id, username, password, email, is_staff, is_active, date_joined) VALUES (1001, 'old', 'x', '', false, true, '2026-11-01T00:00:00Z')",
            "INSERT INTO backend_pipeline (id, name, template, owner_id) VALUES (1001, 'old pipeline', 'x', NULL)",
            "INSERT INTO backend_pipelinerun (id, pipeline_id, usage_report, start_time, status, started_by_id, updated_at) VALUES (1001, 1001, '\"\"', '2026-11-01T00:00:00Z', 'succeeded', 1001, '2026-11-01T00:00:00Z')",
            "INSERT INTO backend_jobreport (id, run_id, name, instance, output) VALUES (1001, 1001, 'ruff', '', '[]')",
        ] {
            db.execute_raw(Statement::from_string(backend, sql))
                .await
                .unwrap();
        }
        db.close().await.unwrap();
    }
    let (app, _) = spawn(Vec::new(), Some(url)).await;
    let (_, admin) = app.user_with_token("admin", true).await;
    let (s, run) = app.get("/api/pipelines/_/runs/1001/", Some(&admin)).await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["digest"], "");
    assert_eq!(run["digest_quality"], "undefined");
    let (_, reports) = app
        .get("/api/pipelines/1001/runs/1001/jobreports/", Some(&admin))
        .await;
    assert_eq!(reports[0]["digest"], json!({}));
    let (_, p) = app.get("/api/pipelines/1001/", Some(&admin)).await;
    assert_eq!(p["quality_rules"], Value::Null);
    if postgres {
        let rows = query(
            &app.state.db,
            "SELECT id, digest_quality FROM executions_admin",
            vec![],
        )
        .await;
        assert_eq!(col::<String>(&rows[0], "digest_quality"), "undefined");
    }
}
