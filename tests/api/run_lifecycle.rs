//! One run state machine (issue 21): everything that moves a run, interleaved at random against
//! one run started by a GitHub push, on two replicas (two servers on one database): Job events
//! (running, Complete, Failed, deleted), reconcile on read, the local runner's end, cancels
//! (with the executor's deletion held open while other things happen), and job reports that
//! come late. Whatever the order:
//!
//! - a run that was seen terminal never changes again (status, message, completion time);
//! - its end is concluded once: exactly one "ended" commit status is queued (and one
//!   `pending`), whoever ended it;
//! - its digest counts every report that was accepted.
//!
//! The schedules are seeded (`AQ_LIFECYCLE_SEED`, `AQ_LIFECYCLE_CASES` explore more); the first
//! ones are the races found by hand (a Job event, the local runner's end or a reconcile while a
//! cancel waits for the API server).

use crate::{
    common::{TestApp, fresh_database_url},
    fake_launcher::{FakeLauncher, RUNS_NAMESPACE},
    verdicts::support::{ForgeStandIn, digest, post_report_multipart, spawn},
};
use application_quality_api::{
    db::entities::{commit_status, pipeline, pipeline_run},
    k8s::objects,
    runs::{self, RunResults, RunStatus, launcher::JobObservation},
};
use chrono::Utc;
use futures::FutureExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use tokio::task::JoinHandle;

/// What a Job event says.
#[derive(Debug, Clone, Copy)]
enum JobKind {
    Running,
    Complete,
    Failed,
    /// The Job was deleted before it finished (by a cancel, by hand, or its retention).
    Deleted,
}

/// What the API server answers a reconcile.
#[derive(Debug, Clone, Copy)]
enum Seen {
    Running,
    Succeeded,
    Failed,
    /// The Job no longer exists.
    Gone,
}

/// One thing that happens to the run, on replica 0 or 1.
#[derive(Debug, Clone, Copy)]
enum Action {
    Job(usize, JobKind),
    Reconcile(usize, Seen),
    LocalFinish(usize, bool),
    Cancel(usize),
    /// From now on the executor's deletion of a Job waits (the API server is slow).
    Hold,
    /// Deletions complete; every cancel still waiting answers.
    Release,
    LateReport(usize),
}

type Schedule = Vec<Vec<Action>>;

/// splitmix64: enough randomness for schedules, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_action(rng: &mut Rng) -> Action {
    let r = rng.below(2) as usize;
    match rng.below(8) {
        0 => Action::Job(
            r,
            [
                JobKind::Running,
                JobKind::Complete,
                JobKind::Failed,
                JobKind::Deleted,
            ][rng.below(4) as usize],
        ),
        1 => Action::Job(r, JobKind::Complete),
        2 => Action::Reconcile(
            r,
            [Seen::Running, Seen::Succeeded, Seen::Failed, Seen::Gone][rng.below(4) as usize],
        ),
        3 => Action::LocalFinish(r, rng.below(2) == 0),
        4 | 5 => Action::Cancel(r),
        _ => Action::LateReport(r),
    }
}

/// A random schedule: waves of one to three concurrent actions, a hold of the executor's
/// deletions opened before some wave and released after a later one, and a Job `Complete` at
/// the end so that every run ends.
fn random_schedule(rng: &mut Rng) -> Schedule {
    let waves = 3 + rng.below(5) as usize;
    let mut schedule: Schedule = (0..waves)
        .map(|_| (0..1 + rng.below(3)).map(|_| random_action(rng)).collect())
        .collect();
    if rng.below(3) != 0 {
        let hold = rng.below(waves as u64) as usize;
        let release = hold + 1 + rng.below((waves - hold) as u64) as usize;
        schedule.insert(release.min(schedule.len()), vec![Action::Release]);
        schedule.insert(hold, vec![Action::Hold]);
    }
    schedule.push(vec![Action::Job(rng.below(2) as usize, JobKind::Complete)]);
    schedule
}

/// The races found by hand: something ends the run while a cancel waits for the executor.
fn known_races() -> Vec<Schedule> {
    use Action::*;
    vec![
        vec![
            vec![Hold],
            vec![Cancel(0)],
            vec![Job(1, JobKind::Complete)],
            vec![Release],
        ],
        vec![
            vec![Hold],
            vec![Cancel(0)],
            vec![Job(0, JobKind::Deleted)],
            vec![Release],
        ],
        vec![
            vec![Hold],
            vec![Cancel(1)],
            vec![LocalFinish(0, true)],
            vec![Release],
        ],
        vec![
            vec![Hold],
            vec![Cancel(0)],
            vec![Reconcile(1, Seen::Succeeded), LateReport(1)],
            vec![Release, Job(1, JobKind::Failed)],
        ],
        vec![
            vec![
                Cancel(0),
                Cancel(1),
                Job(0, JobKind::Complete),
                Job(1, JobKind::Complete),
            ],
            vec![LocalFinish(0, false), LateReport(0), LateReport(1)],
        ],
    ]
}

/// Two replicas on one database, a GitHub push trigger, commit statuses on (to a stand-in).
struct World {
    replicas: [TestApp; 2],
    fakes: [Arc<FakeLauncher>; 2],
    token: String,
    pipeline: i64,
    _forge: ForgeStandIn,
    _dir: tempfile::TempDir,
}

/// One run's story: what was seen of it along the way.
#[derive(Default)]
struct Story {
    /// The stored (status, message, completion time) after each wave.
    stored: Vec<(String, Value, Value)>,
    /// Statuses the API answered with (reads, cancels).
    answered: Vec<String>,
    /// Reports the callback endpoint accepted.
    reports: usize,
    /// Cancels sent and not yet answered.
    cancels: Vec<JoinHandle<(u16, Value)>>,
}

impl Story {
    /// Waits for the answers of the cancels in flight (their executor lets them through).
    async fn settle_cancels(&mut self) {
        for h in std::mem::take(&mut self.cancels) {
            let (s, body) = h.await.unwrap();
            assert_eq!(s, 200, "{body}");
            self.answered
                .push(body["status"].as_str().unwrap().to_string());
        }
    }
}

impl World {
    async fn new() -> Self {
        let forge = ForgeStandIn::start().await;
        let env: Vec<(String, String)> = [
            ("GITHUB_STATUS_ENABLED", "true"),
            ("GITHUB_API_URL", forge.url().as_str()),
            ("GITHUB_API_TOKEN", "ghp-test-token"),
            ("COMMIT_STATUS_RETRY_BASE_MS", "50"),
            ("COMMIT_STATUS_RETRY_MAX_SECS", "1"),
            ("PUBLIC_URL", "https://aq.example.org"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_database_url(&dir).await;
        let (a, fake_a) = spawn(env.clone(), Some(db.clone())).await;
        let (b, fake_b) = spawn(env, Some(db)).await;
        a.seed().await;
        let (_, token) = a.user_with_token("alice", false).await;
        let pipeline = pipeline::Entity::find()
            .filter(pipeline::Column::Name.eq("Python lint"))
            .one(&a.state.db)
            .await
            .unwrap()
            .expect("the demo catalogue has Python lint")
            .id;
        let (s, body) = a
            .post(
                "/api/triggers/",
                Some(&token),
                &json!({"slug": "gh", "trigger_type": "github_webhook_push", "pipeline": pipeline,
                    "params_default": {"parameters": {"clone_subworkflow": {"clone": {"repo_branch": "main"}}}},
                    "params_mapping": {"clone_subworkflow.clone.repo_url": "repository.clone_url"}}),
            )
            .await;
        assert_eq!(s, 201, "{body}");
        Self {
            replicas: [a, b],
            fakes: [fake_a, fake_b],
            token,
            pipeline,
            _forge: forge,
            _dir: dir,
        }
    }

    /// A push to a new commit: its run, launched and `running`.
    async fn push(&self, case: usize) -> i64 {
        let app = &self.replicas[case % 2];
        // Never all zeros (GitHub's "the branch was deleted").
        let sha = format!("{:08x}", case + 1).repeat(5);
        let data = json!({
            "ref": "refs/heads/main", "after": sha,
            "head_commit": {"id": sha, "message": "Fix"},
            "repository": {"name": "application-quality", "full_name": "EOEPCA/application-quality",
                "owner": {"login": "EOEPCA", "name": "EOEPCA"},
                "clone_url": "https://github.com/EOEPCA/application-quality.git"},
            "pusher": {"name": "alice"}, "sender": {"login": "alice"}
        });
        let (s, body) = app
            .send(
                app.client
                    .post(app.url("/api/events/"))
                    .header("content-type", "application/json")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("push-{case}"))
                    .header("ce-source", "https://github.com/EOEPCA/application-quality")
                    .header("ce-type", "org.eoepca.webhook.github.push")
                    .body(data.to_string()),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["status"], "accepted", "{body}");
        let run = body["run_ids"][0].as_i64().unwrap();
        let stored = self.stored(run).await;
        assert_eq!(stored.0, "running", "{stored:?}");
        run
    }

    /// The run's (status, message, completion time) as stored.
    async fn stored(&self, run: i64) -> (String, Value, Value) {
        let row = pipeline_run::Entity::find_by_id(run)
            .into_json()
            .one(&self.replicas[0].state.db)
            .await
            .unwrap()
            .unwrap();
        (
            row["status"].as_str().unwrap().to_string(),
            row["status_message"].clone(),
            row["completion_time"].clone(),
        )
    }

    /// Delivers a Job event as the ApiServerSource does.
    async fn job_event(&self, replica: usize, run: i64, kind: JobKind) {
        let app = &self.replicas[replica];
        let (ty, status) = match kind {
            JobKind::Running => ("update", json!({"active": 1})),
            JobKind::Complete => (
                "update",
                json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}),
            ),
            JobKind::Failed => (
                "update",
                json!({"conditions": [{"type": "Failed", "status": "True",
                    "reason": "BackoffLimitExceeded", "message": "from the test"}]}),
            ),
            JobKind::Deleted => ("delete", json!({"active": 1})),
        };
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": objects::object_name(run),
                "namespace": RUNS_NAMESPACE,
                "labels": {objects::MANAGED_BY_LABEL: objects::MANAGED_BY,
                    objects::RUN_ID_LABEL: run.to_string()},
            },
            "spec": {"template": {"spec": {"containers": []}}},
            "status": status,
        });
        let (s, body) = app
            .send(
                app.client
                    .post(app.url("/api/events/"))
                    .header("content-type", "application/json")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", uuid::Uuid::new_v4().to_string())
                    .header("ce-source", "https://10.96.0.1:443")
                    .header("ce-type", format!("dev.knative.apiserver.resource.{ty}"))
                    .body(job.to_string()),
            )
            .await;
        assert_eq!(s, 200, "{kind:?} on replica {replica}: {body}");
    }

    /// Reads the run through the API while the API server reports `seen` for its Job.
    async fn reconcile(&self, replica: usize, run: i64, seen: Seen) -> String {
        let obs = |status, message: Option<&str>| JobObservation {
            status,
            message: message.map(String::from),
            completion_time: None,
        };
        self.fakes[replica].set_observation(match seen {
            Seen::Running => Some(obs(RunStatus::Running, None)),
            Seen::Succeeded => Some(obs(RunStatus::Succeeded, None)),
            Seen::Failed => Some(obs(
                RunStatus::Failed,
                Some("Job failed (BackoffLimitExceeded)."),
            )),
            // What the Kubernetes launcher reports for a Job that is gone.
            Seen::Gone => Some(obs(
                RunStatus::Failed,
                Some("The run's Job no longer exists."),
            )),
        });
        let app = &self.replicas[replica];
        let (s, body) = app
            .get(&format!("/api/pipelines/_/runs/{run}/"), Some(&self.token))
            .await;
        assert_eq!(s, 200, "{body}");
        body["status"].as_str().unwrap().to_string()
    }

    /// The local runner's end of the run, as its supervising task records it.
    async fn local_finish(&self, replica: usize, run: i64, ok: bool) {
        let obs = JobObservation {
            status: if ok {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            },
            message: (!ok).then(|| "cwltool exited with status 1.".to_string()),
            completion_time: Some(Utc::now()),
        };
        let results = RunResults {
            output: ok.then(|| json!({"report": {"class": "File"}})),
            usage_report: Some(json!({"executor": "local", "exit_code": if ok { 0 } else { 1 }})),
        };
        runs::finish(&self.replicas[replica].state.runs, run, &obs, results)
            .await
            .expect("the local runner records the end");
    }

    /// Sends a cancel; returns once the executor was asked to delete the Job or the cancel
    /// answered (a run that ended first is not deleted again).
    async fn cancel(&self, replica: usize, run: i64, story: &mut Story) {
        let app = &self.replicas[replica];
        let fake = &self.fakes[replica];
        let asked = fake.cancels().len();
        let req = app
            .client
            .post(app.url(&format!("/api/pipelines/_/runs/{run}/cancel/")))
            .bearer_auth(&self.token);
        let mut handle = tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        });
        tokio::select! {
            answered = &mut handle => {
                let (s, body) = answered.unwrap();
                assert_eq!(s, 200, "{body}");
                story.answered.push(body["status"].as_str().unwrap().to_string());
            }
            () = fake.cancels_entered(asked + 1) => story.cancels.push(handle),
        }
    }

    /// A job report with nothing to say (the verdict stays), sent as a retried upload may be.
    async fn late_report(&self, replica: usize, run: i64, n: usize) {
        let app = &self.replicas[replica];
        let token = self
            .fakes
            .iter()
            .find(|f| f.of(run) > 0)
            .expect("one replica launched the run")
            .token(run);
        let (s, body) = post_report_multipart(
            app,
            &format!(
                "/api/pipelines/{}/runs/{run}/jobreports/?name=late&instance={n}",
                self.pipeline
            ),
            &token,
            &[
                ("report", "[]"),
                ("digest", &digest("ruff", json!({"info": 0, "error": 0}))),
            ],
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }

    /// Plays one schedule against a new run; what broke the invariants.
    async fn play(&self, case: usize, schedule: &Schedule) -> Vec<String> {
        let run = self.push(case).await;
        let mut story = Story::default();
        let mut reports = 0usize;
        for wave in schedule {
            // A cancel is sent first, so what the wave does happens while it is in flight.
            for action in wave {
                match *action {
                    Action::Hold => self.fakes.iter().for_each(|f| f.hold_cancels()),
                    Action::Release => {
                        self.fakes.iter().for_each(|f| f.release_cancels());
                        story.settle_cancels().await;
                    }
                    Action::Cancel(r) => self.cancel(r, run, &mut story).await,
                    _ => {}
                }
            }
            let concurrent = wave.iter().filter_map(|action| {
                let n = reports;
                match *action {
                    Action::Job(r, kind) => Some(
                        async move {
                            self.job_event(r, run, kind).await;
                            (None, false)
                        }
                        .boxed_local(),
                    ),
                    Action::Reconcile(r, seen) => Some(
                        async move { (Some(self.reconcile(r, run, seen).await), false) }
                            .boxed_local(),
                    ),
                    Action::LocalFinish(r, ok) => Some(
                        async move {
                            self.local_finish(r, run, ok).await;
                            (None, false)
                        }
                        .boxed_local(),
                    ),
                    Action::LateReport(r) => {
                        reports += 1;
                        Some(
                            async move {
                                self.late_report(r, run, n).await;
                                (None, true)
                            }
                            .boxed_local(),
                        )
                    }
                    _ => None,
                }
            });
            let concurrent: Vec<_> = concurrent.collect();
            for (answered, reported) in futures::future::join_all(concurrent).await {
                story.answered.extend(answered);
                story.reports += usize::from(reported);
            }
            if !self.fakes[0].holding() {
                story.settle_cancels().await;
            }
            story.stored.push(self.stored(run).await);
        }
        self.fakes.iter().for_each(|f| f.release_cancels());
        story.settle_cancels().await;
        self.check(run, &story)
            .await
            .into_iter()
            .map(|w| format!("case {case} (run {run}, {schedule:?}): {w}"))
            .collect()
    }

    /// What went wrong with the run of one schedule (nothing, when the invariants hold).
    async fn check(&self, run: i64, story: &Story) -> Vec<String> {
        let mut wrong = Vec::new();
        let last = self.stored(run).await;
        let terminal = |s: &str| matches!(s, "succeeded" | "failed" | "killed");
        if !terminal(&last.0) {
            wrong.push(format!("the run did not end: {last:?}"));
        }
        if let Some(seen) = story.stored.iter().find(|s| terminal(&s.0) && **s != last) {
            wrong.push(format!(
                "a terminal run changed: {seen:?} then {last:?} (after each wave: {:?})",
                story.stored
            ));
        }
        if let Some(status) = story.answered.iter().find(|s| terminal(s) && **s != last.0) {
            wrong.push(format!(
                "the API answered {status}, the run ended {} (answers: {:?})",
                last.0, story.answered
            ));
        }
        let rows = commit_status::Entity::find()
            .filter(commit_status::Column::RunId.eq(run))
            .all(&self.replicas[0].state.db)
            .await
            .unwrap();
        let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
        let ended: Vec<&str> = states.iter().copied().filter(|s| *s != "pending").collect();
        let pending = states.len() - ended.len();
        let expected = if last.0 == "succeeded" {
            "success"
        } else {
            "failure"
        };
        if (pending, ended.as_slice()) != (1, [expected].as_slice()) {
            wrong.push(format!(
                "expected one pending and one {expected} commit status (the run ended {}), got {states:?}",
                last.0
            ));
        }
        let digest = pipeline_run::Entity::find_by_id(run)
            .one(&self.replicas[0].state.db)
            .await
            .unwrap()
            .unwrap()
            .digest;
        if digest["reports"].as_u64() != Some(story.reports as u64) {
            wrong.push(format!(
                "the digest counts {} of the {} reports accepted: {digest}",
                digest["reports"], story.reports
            ));
        }
        wrong
    }
}

#[tokio::test]
async fn a_terminal_run_never_changes_and_is_concluded_once_whatever_the_interleaving() {
    let seed: u64 = std::env::var("AQ_LIFECYCLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let cases: usize = std::env::var("AQ_LIFECYCLE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let world = World::new().await;
    let mut schedules = known_races();
    let mut rng = Rng(seed);
    schedules.extend((0..cases).map(|_| random_schedule(&mut rng)));
    let started = std::time::Instant::now();
    let mut broken = Vec::new();
    for (case, schedule) in schedules.iter().enumerate() {
        let wrong = tokio::time::timeout(Duration::from_secs(60), world.play(case, schedule))
            .await
            .unwrap_or_else(|_| panic!("case {case} hung: {schedule:?}"));
        broken.extend(wrong);
    }
    eprintln!(
        "{} schedules (seed {seed}, {}) in {:?}",
        schedules.len(),
        crate::common::backend(),
        started.elapsed()
    );
    assert!(
        broken.is_empty(),
        "{} violation(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// A cancel that comes while the run is being launched (its Job being created) wins: the
/// launch finds the run `killed`, leaves it so, and has the executor delete what it created.
#[tokio::test]
async fn a_run_cancelled_while_it_launches_stays_killed_and_its_job_is_deleted() {
    let (app, fake) = spawn(Vec::new(), None).await;
    app.seed().await;
    let (_, token) = app.user_with_token("alice", false).await;
    let pipeline = pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq("Python lint"))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
        .id;
    fake.hold_launches();
    let create = app
        .client
        .post(app.url(&format!("/api/pipelines/{pipeline}/runs/")))
        .bearer_auth(&token)
        .json(&json!({"parameters": {"clone_subworkflow": {"clone": {
            "repo_url": "https://github.com/EOEPCA/application-quality", "repo_branch": "main"}}}}));
    let create = tokio::spawn(async move {
        let r = create.send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    fake.launches_entered(1).await;
    let run = pipeline_run::Entity::find()
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("the run is stored before its launch")
        .id;
    let (s, cancelled) = app
        .send(
            app.client
                .post(app.url(&format!("/api/pipelines/_/runs/{run}/cancel/")))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(
        (s, &cancelled["status"]),
        (200, &json!("killed")),
        "{cancelled}"
    );
    assert!(fake.cancels().is_empty(), "nothing was created yet");
    fake.release_launches();
    let (s, created) = create.await.unwrap();
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["status"], "killed", "{created}");
    assert_eq!(created["status_message"], "Cancelled by a user.");
    assert_eq!(
        fake.cancels(),
        [run],
        "the Job the launch created is deleted"
    );
    let (_, read) = app
        .get(&format!("/api/pipelines/_/runs/{run}/"), Some(&token))
        .await;
    assert_eq!(read["status"], "killed", "{read}");
    assert_eq!(read["completion_time"], cancelled["completion_time"]);
}
