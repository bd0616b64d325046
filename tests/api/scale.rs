//! Cost that grows gently with the data (issue 15): a 40,000-run list streamed in full, pages
//! that stay consistent while runs are added, retention in batches while events keep arriving,
//! and the query plans of the lists and look-ups. Rows are bulk-inserted with one SQL statement
//! (a recursive CTE), not through the API, to keep these tests quick on both stores.

use crate::common::{TestApp, backend};
use crate::events::support::{self, deliver, execute, execute_payload, run_count};
use application_quality_api::{
    db::entities::{pipeline, pipeline_run, received_event, revoked_session, trigger_event, user},
    http::{
        paging::{ListQuery, Listing},
        runs::{list_select, serialise_runs},
        serialize::{PipelineScope, with_run_extras},
    },
    maintenance,
};
use chrono::{Duration, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement, TransactionTrait,
};
use serde_json::Value;
use std::collections::BTreeSet;

fn sqlite() -> bool {
    backend() != "postgres"
}

/// Unix time of the first bulk run (`start_time` of run `i` is `BASE + i` seconds).
const BASE: i64 = 1_764_000_000;

/// Inserts `n` runs of `pipeline` in one statement: run `i` (1-based) is started by
/// `users[i % 2]`, has status `succeeded` / `failed` / `pending` for `i % 3` = 0 / 1 / 2, and
/// was started by the trigger `push-trigger` when `i % 10 == 0`.
async fn bulk_runs(db: &DatabaseConnection, n: u64, pipeline: i64, users: [i64; 2]) {
    let [u0, u1] = users;
    let common = format!(
        "CASE i % 3 WHEN 0 THEN 'succeeded' WHEN 1 THEN 'failed' ELSE 'pending' END, 'bulk', \
         CASE i % 2 WHEN 0 THEN {u0} ELSE {u1} END, \
         CASE WHEN i % 10 = 0 THEN 'push-trigger' ELSE NULL END"
    );
    let cols = "pipeline_id, status, status_message, started_by_id, triggered_by, usage_report, \
                inputs, parameters, executed_cwl, start_time, updated_at";
    let sql = if sqlite() {
        format!(
            "INSERT INTO backend_pipelinerun ({cols}) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             SELECT {pipeline}, {common}, '\"\"', '{{}}', '{{}}', 'cwlVersion: v1.2 # run ' || i, \
             strftime('%Y-%m-%dT%H:%M:%S+00:00', {BASE} + i, 'unixepoch'), \
             strftime('%Y-%m-%dT%H:%M:%S+00:00', {BASE} + i, 'unixepoch') FROM n"
        )
    } else {
        format!(
            "INSERT INTO backend_pipelinerun ({cols}) \
             SELECT {pipeline}, {common}, '\"\"'::jsonb, '{{}}'::jsonb, '{{}}'::jsonb, \
             'cwlVersion: v1.2 # run ' || i, to_timestamp({BASE} + i), to_timestamp({BASE} + i) \
             FROM generate_series(1, {n}) AS i"
        )
    };
    db.execute_unprepared(&sql).await.expect("bulk runs");
}

/// Inserts `n` received events from `source`, received `age` ago (ids `<source>-<i>`).
async fn bulk_events(db: &DatabaseConnection, n: u64, source: &str, age: Duration) {
    let at = (Utc::now() - age).timestamp();
    let cols = "source, event_id, event_type, headers, outcome, run_ids, received_at";
    let sql = if sqlite() {
        format!(
            "INSERT INTO aq_received_event ({cols}) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             SELECT '{source}', '{source}-' || i, 'org.example.bulk', '{{}}', 'ignored', '[]', \
             strftime('%Y-%m-%dT%H:%M:%S+00:00', {at}, 'unixepoch') FROM n"
        )
    } else {
        format!(
            "INSERT INTO aq_received_event ({cols}) \
             SELECT '{source}', '{source}-' || i, 'org.example.bulk', '{{}}'::jsonb, 'ignored', \
             '[]'::jsonb, to_timestamp({at}) FROM generate_series(1, {n}) AS i"
        )
    };
    db.execute_unprepared(&sql).await.expect("bulk events");
}

async fn first_pipeline(app: &TestApp) -> i64 {
    pipeline::Entity::find()
        .order_by_asc(pipeline::Column::Id)
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("seeded pipeline")
        .id
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

fn strictly_ascending(v: &[i64]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_thousand_runs_are_listed_in_full_and_paged() {
    let app = TestApp::spawn().await;
    app.seed().await;
    let (staff, staff_token) = app.user_with_token("boss", true).await;
    let (alice, alice_token) = app.user_with_token("alice", false).await;
    let pid = first_pipeline(&app).await;
    bulk_runs(&app.state.db, 40_000, pid, [staff.id, alice.id]).await;

    // The whole list (the reference's shape), streamed: this was a 500 ("too many SQL
    // variables") at 100,000 runs and 68 MB held in memory at 20,000.
    let r = app
        .client
        .get(app.url("/api/pipelines/_/runs/"))
        .bearer_auth(&staff_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let all: Vec<Value> = r.json().await.unwrap();
    assert_eq!(all.len(), 40_000);
    let all_ids = ids(&all);
    assert!(strictly_ascending(&all_ids), "oldest first, no repeats");
    // Each item is exactly what the run's own route returns.
    for i in [0, 499, 500, 19_999, 39_999] {
        let (status, one) = app
            .get(
                &format!("/api/pipelines/_/runs/{}/", all_ids[i]),
                Some(&staff_token),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(one, all[i], "list item {i} == detail");
    }
    assert_eq!(all[0]["started_by"], "alice");
    assert_eq!(all[1]["started_by"], "boss");
    assert_eq!(all[0]["job_reports_count"], 0);

    // A user's own runs: half of them, in full.
    let (status, mine) = app.get("/api/pipelines/_/runs/", Some(&alice_token)).await;
    assert_eq!(status, 200);
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 20_000);
    assert!(mine.iter().all(|r| r["started_by"] == "alice"));

    // LimitOffsetPagination.
    let (status, page) = app
        .get(
            "/api/pipelines/_/runs/?limit=50&offset=100",
            Some(&staff_token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 40_000);
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    assert_eq!(results[0], all[100]);
    let next = page["next"].as_str().unwrap();
    assert!(next.starts_with(&app.base), "{next}");
    assert!(
        next.ends_with("/api/pipelines/_/runs/?limit=50&offset=150"),
        "{next}"
    );
    assert!(
        page["previous"]
            .as_str()
            .unwrap()
            .ends_with("?limit=50&offset=50")
    );
    let (_, first) = app
        .get("/api/pipelines/_/runs/?limit=50", Some(&staff_token))
        .await;
    assert_eq!(first["previous"], Value::Null);
    let (_, last) = app
        .get(
            "/api/pipelines/_/runs/?limit=50&offset=39990",
            Some(&staff_token),
        )
        .await;
    assert_eq!(last["results"].as_array().unwrap().len(), 10);
    assert_eq!(last["next"], Value::Null);

    // Filters, alone and with paging.
    let enc = |t: i64| {
        let at = chrono::DateTime::from_timestamp(BASE + t, 0)
            .unwrap()
            .to_rfc3339();
        url::form_urlencoded::byte_serialize(at.as_bytes()).collect::<String>()
    };
    for (q, expected) in [
        ("status=failed".to_string(), 13_334),
        ("status=failed,pending".to_string(), 26_667),
        ("trigger=push-trigger".to_string(), 4_000),
        (format!("pipeline={pid}"), 40_000),
        (format!("started_before={}", enc(1001)), 1_000),
        (
            format!("started_after={}&status=succeeded", enc(39_001)),
            333,
        ),
    ] {
        let (status, body) = app
            .get(
                &format!("/api/pipelines/_/runs/?limit=1&{q}"),
                Some(&staff_token),
            )
            .await;
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(body["count"], expected, "{q}");
    }
    let (status, body) = app
        .get(
            "/api/pipelines/_/runs/?status=failed&trigger=push-trigger",
            Some(&staff_token),
        )
        .await;
    assert_eq!(status, 200);
    let filtered = body.as_array().unwrap();
    assert_eq!(filtered.len(), 1_334);
    assert!(
        filtered
            .iter()
            .all(|r| r["status"] == "failed" && r["triggered_by"] == "push-trigger")
    );
    for bad in [
        "status=a,b,c,d,e,f,g,h,i,j,k",
        "started_after=yesterday",
        "pipeline=x",
        "limit=0",
        "cursor=bogus",
    ] {
        let (status, body) = app
            .get(&format!("/api/pipelines/_/runs/?{bad}"), Some(&staff_token))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["detail"].is_string(), "{bad}: {body}");
    }
}

/// Follows `next` links from `first` to the end, collecting the ids of every page.
async fn walk(app: &TestApp, token: &str, first: String) -> (Vec<i64>, usize) {
    let mut url = Some(first);
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(u) = url {
        let r = app.client.get(&u).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{u}");
        let page: Value = r.json().await.unwrap();
        seen.extend(ids(page["results"].as_array().unwrap()));
        pages += 1;
        url = page["next"].as_str().map(str::to_owned);
    }
    (seen, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_stay_consistent_while_runs_are_added() {
    let app = TestApp::spawn().await;
    app.seed().await;
    let (staff, token) = app.user_with_token("boss", true).await;
    let pid = first_pipeline(&app).await;
    bulk_runs(&app.state.db, 3_000, pid, [staff.id, staff.id]).await;
    let initial: BTreeSet<i64> = pipeline_run::Entity::find()
        .select_only()
        .column(pipeline_run::Column::Id)
        .into_tuple::<i64>()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .collect();

    let writer = async {
        let mut created = Vec::new();
        for _ in 0..60 {
            let (status, run) = app
                .post(
                    &format!("/api/pipelines/{pid}/runs/"),
                    Some(&token),
                    &execute_payload(),
                )
                .await;
            assert_eq!(status, 201, "{run}");
            created.push(run["id"].as_i64().unwrap());
        }
        created
    };
    let base = app.url("/api/pipelines/_/runs/");
    let ((by_cursor, cursor_pages), (by_offset, offset_pages), created) = tokio::join!(
        walk(&app, &token, format!("{base}?cursor=&limit=97")),
        walk(&app, &token, format!("{base}?limit=97")),
        writer,
    );
    for (name, seen, pages) in [
        ("cursor", &by_cursor, cursor_pages),
        ("offset", &by_offset, offset_pages),
    ] {
        assert!(pages >= 31, "{name}: {pages} pages");
        assert!(
            strictly_ascending(seen),
            "{name}: no row twice, none out of order"
        );
        let seen: BTreeSet<i64> = seen.iter().copied().collect();
        assert!(
            initial.is_subset(&seen),
            "{name}: every run that existed was seen"
        );
        // Whatever was added during the walk is either seen or after the last page.
        let last = *seen.iter().next_back().unwrap();
        assert!(
            created.iter().all(|id| seen.contains(id) || *id > last),
            "{name}: added runs are not skipped in the middle"
        );
    }
    // A cursor walk started afterwards sees everything exactly once.
    let (after, _) = walk(&app, &token, format!("{base}?cursor=&limit=1000")).await;
    assert_eq!(after.len(), 3_060);
    assert!(strictly_ascending(&after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_deletes_in_batches_while_events_keep_arriving() {
    let t = support::spawn_with_env(vec![
        ("MAINTENANCE_BATCH_SIZE".into(), "100".into()),
        ("MAINTENANCE_INTERVAL_SECS".into(), "0".into()),
    ])
    .await;
    let app = &t.app;
    let db = &app.state.db;
    bulk_events(db, 2_500, "expired", Duration::days(40)).await;
    bulk_events(db, 50, "kept", Duration::days(29)).await;
    let mut first = std::collections::HashMap::new();
    for i in 0..20 {
        let id = format!("before-{i}");
        let r = deliver(execute(
            app,
            "/api/events/",
            &id,
            "event",
            t.pipeline_id,
            &execute_payload(),
        ))
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        first.insert(id, r.body["run_id"].as_i64().unwrap());
    }

    // The pass and new deliveries (and redeliveries) at the same time.
    let config = app.state.config.clone();
    let pass = maintenance::run(db, &config, Utc::now());
    let traffic = async {
        let mut replies = Vec::new();
        for i in 0..40 {
            let id = format!("during-{i}");
            let r = deliver(execute(
                app,
                "/api/events/",
                &id,
                "event",
                t.pipeline_id,
                &execute_payload(),
            ))
            .await;
            replies.push((id, r));
            let again = format!("before-{}", i % 20);
            let r = deliver(execute(
                app,
                "/api/events/",
                &again,
                "event",
                t.pipeline_id,
                &execute_payload(),
            ))
            .await;
            replies.push((again, r));
        }
        replies
    };
    let (report, replies) = tokio::join!(pass, traffic);
    let report = report.expect("maintenance pass");
    assert_eq!(report.events, 2_500, "{report:?}");
    assert!(report.batches >= 25, "bounded batches: {report:?}");
    assert_eq!(
        (report.runs, report.job_reports),
        (0, 0),
        "runs and reports are kept by default"
    );
    for (id, r) in &replies {
        assert_eq!(r.status, 200, "{id}: {:?}", r.body);
        if let Some(run) = first.get(id) {
            assert_eq!(r.body["status"], "duplicate", "{id}");
            assert_eq!(r.body["run_id"].as_i64(), Some(*run), "{id}");
        } else {
            assert_eq!(r.body["status"], "accepted", "{id}");
            first.insert(id.clone(), r.body["run_id"].as_i64().unwrap());
        }
    }
    let by_source = |source: &'static str| {
        received_event::Entity::find()
            .filter(received_event::Column::Source.eq(source))
            .count(db)
    };
    assert_eq!(by_source("expired").await.unwrap(), 0);
    assert_eq!(by_source("kept").await.unwrap(), 50, "inside the window");
    // Exactly once still holds for everything inside the window.
    for (id, run) in &first {
        let r = deliver(execute(
            app,
            "/api/events/",
            id,
            "event",
            t.pipeline_id,
            &execute_payload(),
        ))
        .await;
        assert_eq!(r.body["status"], "duplicate", "{id}");
        assert_eq!(r.body["run_id"].as_i64(), Some(*run), "{id}");
    }
    assert_eq!(run_count(app).await, 60);
    // A second pass has nothing left to do.
    let again = maintenance::run(db, &config, Utc::now()).await.unwrap();
    assert_eq!(again.events, 0);
}

#[tokio::test]
async fn run_retention_deletes_finished_runs_only() {
    let app = TestApp::spawn_with(crate::common::Options {
        env: vec![
            ("RUN_RETENTION_DAYS".into(), "7".into()),
            ("EVENT_RETENTION_DAYS".into(), "0".into()),
            ("MAINTENANCE_BATCH_SIZE".into(), "7".into()),
        ],
        ..Default::default()
    })
    .await;
    app.seed().await;
    let (staff, _) = app.user_with_token("boss", true).await;
    let pid = first_pipeline(&app).await;
    // 100 runs started in 2025 (BASE); half finished then, half still without a completion.
    bulk_runs(&app.state.db, 100, pid, [staff.id, staff.id]).await;
    app.state
        .db
        .execute_unprepared(
            "UPDATE backend_pipelinerun SET completion_time = start_time WHERE id % 2 = 0",
        )
        .await
        .unwrap();
    let report = maintenance::run(&app.state.db, &app.state.config, Utc::now())
        .await
        .unwrap();
    assert_eq!(report.runs, 50);
    assert_eq!(report.events, 0);
    assert_eq!(
        pipeline_run::Entity::find()
            .count(&app.state.db)
            .await
            .unwrap(),
        50,
        "unfinished runs are kept"
    );
}

/// The query plan of `sql` as text: SQLite's `EXPLAIN QUERY PLAN` lines, or PostgreSQL's JSON
/// plan with sequential scans disabled (so a sequential scan in it means no index can serve).
async fn plan(db: &DatabaseConnection, sql: &str) -> String {
    if sqlite() {
        let rows = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {sql}"),
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(3).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .unwrap();
        let row = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("EXPLAIN (FORMAT JSON) {sql}"),
            ))
            .await
            .unwrap()
            .unwrap();
        let plan: Value = row.try_get_by_index(0).unwrap();
        txn.rollback().await.unwrap();
        plan.to_string()
    }
}

/// Fails when the plan scans a table, or does not use one of `indexes`.
fn assert_indexed(name: &str, plan: &str, indexes: &[&str]) {
    let scans = if sqlite() {
        plan.lines().any(|l| l.starts_with("SCAN "))
    } else {
        plan.contains("Seq Scan")
    };
    assert!(!scans, "{name} scans a table:\n{plan}");
    assert!(
        indexes.iter().any(|i| plan.contains(i)),
        "{name} does not use {indexes:?}:\n{plan}"
    );
}

#[tokio::test]
async fn lists_filters_and_lookups_use_indexes() {
    let app = TestApp::spawn().await;
    app.seed().await;
    let (staff, _) = app.user_with_token("boss", true).await;
    let (alice, _) = app.user_with_token("alice", false).await;
    let pid = first_pipeline(&app).await;
    bulk_runs(&app.state.db, 2_000, pid, [staff.id, alice.id]).await;
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let runs = |who: &user::Model, scope: PipelineScope, q: &str| {
        let query = ListQuery::parse(Some(q)).unwrap();
        Listing {
            select: with_run_extras(list_select(who, scope, &query).unwrap()),
            id: pipeline_run::Column::Id,
            descending: false,
            serialise: serialise_runs,
        }
        .page_select(Some(100), None, 500)
        .build(backend)
        .to_string()
    };
    let t = "2026-01-01T00:00:00Z";
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "a user's runs",
            runs(&alice, PipelineScope::All, ""),
            &["ix_pipelinerun_started_by_id"],
        ),
        (
            "a user's runs of one pipeline",
            runs(&alice, PipelineScope::One(pid), ""),
            &["ix_pipelinerun_started_by_id", "ix_pipelinerun_pipeline_id"],
        ),
        (
            "runs of one pipeline",
            runs(&staff, PipelineScope::One(pid), ""),
            &["ix_pipelinerun_pipeline_id"],
        ),
        (
            "runs by status",
            runs(&staff, PipelineScope::All, "status=failed"),
            &["ix_pipelinerun_status_id"],
        ),
        (
            "runs by trigger",
            runs(&staff, PipelineScope::All, "trigger=push-trigger"),
            &["ix_pipelinerun_triggered_by_id"],
        ),
        (
            "runs by start time",
            runs(
                &staff,
                PipelineScope::All,
                &format!("started_after={t}&started_before={t}"),
            ),
            // Either the time index, or the list's own keyset order on the primary key with
            // the range as a filter (SQLite prefers that: it needs no sort for `ORDER BY id`).
            &[
                "ix_pipelinerun_start_time",
                "USING INTEGER PRIMARY KEY (rowid>?)",
                "backend_pipelinerun_pkey",
            ],
        ),
        (
            "event lookup (dedup)",
            received_event::Entity::find()
                .filter(received_event::Column::Source.eq("github"))
                .filter(received_event::Column::EventId.eq("delivery-1"))
                .build(backend)
                .to_string(),
            &["uq_received_event_source_id"],
        ),
        (
            "expired events",
            received_event::Entity::find()
                .select_only()
                .column(received_event::Column::Id)
                .filter(received_event::Column::ReceivedAt.lt(Utc::now()))
                .order_by_asc(received_event::Column::ReceivedAt)
                .limit(100)
                .build(backend)
                .to_string(),
            &["ix_received_event_received_at"],
        ),
        (
            "a trigger's events",
            trigger_event::Entity::find()
                .filter(trigger_event::Column::TriggerId.eq("push-trigger"))
                .filter(trigger_event::Column::Id.lt(1000))
                .order_by_desc(trigger_event::Column::Id)
                .limit(500)
                .build(backend)
                .to_string(),
            &["ix_triggerevent_trigger_id"],
        ),
        (
            "trigger events of a deleted event (cascade)",
            trigger_event::Entity::find()
                .filter(trigger_event::Column::ReceivedEventId.eq(5))
                .build(backend)
                .to_string(),
            &["ix_triggerevent_received_event"],
        ),
        (
            "a user's unfinished runs (the per-user limits)",
            application_quality_api::runs::quota::unfinished_select(alice.id, Utc::now())
                .build(backend)
                .to_string(),
            &["ix_pipelinerun_started_by_status"],
        ),
        (
            "expired sign-out records",
            revoked_session::Entity::find()
                .select_only()
                .column(revoked_session::Column::SessionId)
                .filter(revoked_session::Column::ExpiresAt.lt(Utc::now()))
                .order_by_asc(revoked_session::Column::ExpiresAt)
                .limit(100)
                .build(backend)
                .to_string(),
            &["ix_revoked_session_expires_at"],
        ),
        (
            "a run's job reports",
            "SELECT id FROM backend_jobreport WHERE run_id = 5 ORDER BY id".to_string(),
            &["uq_jobreport_run_name_instance"],
        ),
    ];
    for (name, sql, indexes) in cases {
        let p = plan(db, &sql).await;
        assert_indexed(name, &p, indexes);
    }
    // The starter's name and the report count of each listed run are index look-ups too.
    let p = plan(db, &runs(&alice, PipelineScope::All, "")).await;
    assert!(
        p.contains("uq_jobreport_run_name_instance"),
        "report counts:\n{p}"
    );
}

/// The PingSource's wake-up also runs retention: with no traffic, opportunistic passes never
/// come, and a scaled-to-zero service would keep expired events forever.
#[tokio::test]
async fn the_wakeup_event_runs_retention() {
    let t = support::spawn_with_env(Vec::new()).await;
    let app = &t.app;
    bulk_events(&app.state.db, 30, "expired", Duration::days(40)).await;
    bulk_events(&app.state.db, 5, "kept", Duration::days(1)).await;
    let r = deliver(support::binary(
        app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "wake-1"),
            (
                "ce-source",
                "/apis/v1/namespaces/aq/pingsources/application-quality-wakeup",
            ),
            ("ce-type", "dev.knative.sources.ping"),
        ],
        "{}",
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let detail = r.body.to_string();
    assert!(detail.contains("Retention: 30 events"), "{detail}");
    let left: Vec<String> = received_event::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.source)
        .collect();
    assert!(left.iter().all(|s| s != "expired"), "{left:?}");
    assert_eq!(left.iter().filter(|s| *s == "kept").count(), 5);
}
