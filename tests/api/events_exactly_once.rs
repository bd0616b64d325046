//! Exactly once: concurrent duplicates, redeliveries, and a redelivery resuming a launch that
//! failed because the Kubernetes API was unavailable.

use super::support::{
    deliver, execute, execute_payload, execute_with, run_count, spawn, stored_event,
};
use futures::{StreamExt, stream};
use std::{collections::BTreeSet, sync::atomic::Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_deliveries_make_one_run_and_one_launch() {
    let t = spawn().await;
    let app = std::sync::Arc::new(t.app);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        let pid = t.pipeline_id;
        tasks.push(tokio::spawn(async move {
            deliver(execute(
                &app,
                "/api/events/",
                "same-event",
                "event",
                pid,
                &execute_payload(),
            ))
            .await
        }));
    }
    let mut run_ids = BTreeSet::new();
    let mut kinds = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        run_ids.insert(
            r.body["run_id"]
                .as_i64()
                .expect("every reply names the run"),
        );
        kinds.push(r.body["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(run_ids.len(), 1, "all replies carry the same run id");
    assert_eq!(kinds.iter().filter(|k| *k == "accepted").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "duplicate").count(), 49);
    assert_eq!(run_count(&app).await, 1);
    let run_id = *run_ids.iter().next().unwrap();
    assert_eq!(t.launcher.of(run_id), 1, "launched exactly once");
}

#[tokio::test]
async fn hundred_events_delivered_twice_make_hundred_runs() {
    let t = spawn().await;
    let app = &t.app;
    let ids: Vec<String> = (0..100).map(|i| format!("evt-{i}")).collect();
    // every event twice, interleaved, ten requests in flight at a time
    let deliveries: Vec<&String> = ids.iter().chain(ids.iter()).collect();
    let replies: Vec<_> = stream::iter(deliveries)
        .map(|id| async move {
            let r = deliver(execute(
                app,
                "/api/events/",
                id,
                "event",
                t.pipeline_id,
                &execute_payload(),
            ))
            .await;
            (id.clone(), r)
        })
        .buffer_unordered(10)
        .collect()
        .await;
    let mut per_event: std::collections::HashMap<String, BTreeSet<i64>> = Default::default();
    for (id, r) in &replies {
        assert_eq!(r.status, 200, "{id}: {:?}", r.body);
        per_event
            .entry(id.clone())
            .or_default()
            .insert(r.body["run_id"].as_i64().unwrap());
    }
    assert_eq!(per_event.len(), 100);
    assert!(
        per_event.values().all(|runs| runs.len() == 1),
        "both deliveries name one run"
    );
    let distinct: BTreeSet<i64> = per_event.values().flatten().copied().collect();
    assert_eq!(distinct.len(), 100);
    assert_eq!(run_count(app).await, 100);
    assert_eq!(t.launcher.total(), 100);
}

#[tokio::test]
async fn redelivery_resumes_a_launch_that_hit_an_unavailable_cluster() {
    let t = spawn().await;
    let app = &t.app;
    t.launcher.down.store(true, Ordering::SeqCst);
    let r = deliver(execute(
        app,
        "/api/events/",
        "k8s-down",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(!r.header("retry-after").is_empty());
    assert!(r.header("ce-type").is_empty());
    let stored = stored_event(app, "curl", "k8s-down")
        .await
        .expect("event kept");
    let run_id = stored.run_ids[0].as_i64().expect("run kept");
    assert_eq!(run_count(app).await, 1);
    assert_eq!(t.launcher.of(run_id), 0);

    // still down: the redelivery tries again, and still creates nothing new
    let r = deliver(execute(
        app,
        "/api/events/",
        "k8s-down",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(run_count(app).await, 1);

    // back up: the redelivery launches the stored run, once
    t.launcher.down.store(false, Ordering::SeqCst);
    let r = deliver(execute(
        app,
        "/api/events/",
        "k8s-down",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "duplicate");
    assert_eq!(r.body["run_id"], run_id);
    assert_eq!(t.launcher.of(run_id), 1);
    let r = deliver(execute(
        app,
        "/api/events/",
        "k8s-down",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        t.launcher.of(run_id),
        1,
        "a launched run is never launched again"
    );
    assert_eq!(run_count(app).await, 1);
}

#[tokio::test]
async fn same_id_from_another_source_is_another_event() {
    let t = spawn().await;
    let app = &t.app;
    let r1 = deliver(execute(
        app,
        "/api/events/",
        "shared-id",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    let r2 = deliver(execute_with(
        app,
        "/api/events/",
        "shared-id",
        "event",
        t.pipeline_id,
        &[("ce-source", "another-sender")],
        &execute_payload(),
    ))
    .await;
    assert_eq!(r1.body["status"], "accepted");
    assert_eq!(r2.body["status"], "accepted");
    assert_ne!(r1.body["run_id"], r2.body["run_id"]);
}

/// Two servers on one database (two replicas): the unique key, not the in-process lock,
/// decides. Every delivery either names the one run (200) or asks for a retry while the other
/// replica is still launching it (503 + Retry-After); there is one run and one launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_database_make_one_run() {
    let t = spawn().await;
    let other = crate::common::TestApp::spawn_with(crate::common::Options {
        database_url: Some(t.app.database_url.clone()),
        launcher: Some(t.launcher.clone()),
        ..Default::default()
    })
    .await;
    let replicas = std::sync::Arc::new([t.app, other]);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let replicas = replicas.clone();
        let pid = t.pipeline_id;
        tasks.push(tokio::spawn(async move {
            let app = &replicas[i % 2];
            deliver(execute(
                app,
                "/api/events/",
                "replicated",
                "event",
                pid,
                &execute_payload(),
            ))
            .await
        }));
    }
    let mut run_ids = BTreeSet::new();
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            200 => {
                run_ids.insert(r.body["run_id"].as_i64().unwrap());
            }
            503 => assert!(!r.header("retry-after").is_empty(), "{:?}", r.body),
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert_eq!(run_ids.len(), 1);
    let run_id = *run_ids.iter().next().unwrap();
    // a later redelivery to either replica names the same run
    for app in replicas.iter() {
        let r = deliver(execute(
            app,
            "/api/events/",
            "replicated",
            "event",
            t.pipeline_id,
            &execute_payload(),
        ))
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["run_id"], run_id);
    }
    assert_eq!(run_count(&replicas[0]).await, 1);
    assert_eq!(t.launcher.of(run_id), 1);
}
