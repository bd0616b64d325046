//! Runs on a REAL Kubernetes API server (kube-apiserver + kube-controller-manager, no kubelet):
//! `scripts/kube.sh` starts one and prints the `KUBECONFIG` export. Without `KUBECONFIG` the
//! cluster tests print a skip note, or fail when `CI` or `AQ_REQUIRE_KUBE=1` is set.
//!
//! Each test gets its own namespaces (service + runs), applies `knative/rbac.yaml` and the
//! RBAC of `knative/apiserversource.yaml` into them with an admin client, and runs the
//! launcher as the `application-quality-api` ServiceAccount with that account's own token.
//! Completion is simulated by setting the Calrissian pod's phase through the status
//! subresource: the real Job controller then marks the Job Complete / Failed.
//!
//! Also here: golden files of the CWL rendered for the demo pipelines (`tests/golden/`).

use crate::common::{Options, TestApp};
use application_quality_api::{
    config::Config,
    db::entities::{pipeline, pipeline_run},
    k8s::{self, KubeLauncher, REQUIRED_PERMISSIONS, objects},
    pipelines::{PipelineGraph, render},
    runs::{
        RunStatus,
        launcher::{LaunchError, LaunchOutcome, LaunchRequest, Launcher},
    },
};
use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    batch::v1::Job,
    core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, ServiceAccount},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
        PostParams,
    },
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

const API_NS: &str = "application-quality";
const RUNS_NS: &str = "application-quality-runs";
const API_SA: &str = "application-quality-api";
const CALRISSIAN_SA: &str = "application-quality-calrissian";

fn manifest(name: &str) -> String {
    std::fs::read_to_string(format!("{}/knative/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Whether the cluster tests can run; panics when they are required but cannot.
fn cluster_configured() -> bool {
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    let required =
        std::env::var_os("CI").is_some() || std::env::var("AQ_REQUIRE_KUBE").as_deref() == Ok("1");
    assert!(
        !required,
        "KUBECONFIG is not set, but CI / AQ_REQUIRE_KUBE=1 require the Kubernetes tests: run `scripts/kube.sh` and export what it prints"
    );
    eprintln!("skipped: KUBECONFIG is not set (start a local API server with scripts/kube.sh)");
    false
}

/// Polls `check` until it returns `Some`, failing after `secs` seconds.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Namespaces of one test, the manifests applied into them, and clients.
struct Cluster {
    admin: Client,
    admin_config: kube::Config,
    api_ns: String,
    runs_ns: String,
}

impl Cluster {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let admin_config = k8s::kube_config_from_env().await.unwrap().unwrap();
        let admin = Client::try_from(admin_config.clone()).unwrap();
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let c = Self {
            admin,
            admin_config,
            api_ns: format!("aqt-{tag}"),
            runs_ns: format!("aqt-{tag}-runs"),
        };
        let ns: Api<Namespace> = Api::all(c.admin.clone());
        let api_ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": c.api_ns}})).unwrap();
        ns.create(&PostParams::default(), &api_ns).await.unwrap();
        c.apply(&manifest("rbac.yaml")).await;
        c.apply(&manifest("networkpolicy.yaml")).await;
        c.apply(&manifest("apiserversource.yaml")).await;
        // v1.20 admits a pod only once its ServiceAccount has a token Secret.
        c.sa_token(&c.runs_ns, CALRISSIAN_SA).await;
        c
    }

    fn map_ns(&self, ns: &str) -> String {
        match ns {
            API_NS => self.api_ns.clone(),
            RUNS_NS => self.runs_ns.clone(),
            other => panic!("manifest uses an unexpected namespace {other:?}"),
        }
    }

    /// Creates the manifests' Kubernetes objects in this test's namespaces (Knative kinds are
    /// not installed on the test server and are skipped).
    async fn apply(&self, yaml: &str) {
        for mut doc in documents(yaml) {
            let api_version = doc["apiVersion"].as_str().unwrap().to_string();
            let kind = doc["kind"].as_str().unwrap().to_string();
            if api_version.contains("knative.dev") {
                continue;
            }
            if kind == "Namespace" {
                let name = self.map_ns(doc["metadata"]["name"].as_str().unwrap());
                doc["metadata"]["name"] = json!(name);
            }
            let ns = doc["metadata"]["namespace"]
                .as_str()
                .map(|n| self.map_ns(n));
            if let Some(ns) = &ns {
                doc["metadata"]["namespace"] = json!(ns);
            }
            if let Some(subjects) = doc["subjects"].as_array_mut() {
                for s in subjects {
                    let mapped = self.map_ns(s["namespace"].as_str().unwrap());
                    s["namespace"] = json!(mapped);
                }
            }
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
            let api: Api<DynamicObject> = match &ns {
                Some(ns) => Api::namespaced_with(self.admin.clone(), ns, &ar),
                None => Api::all_with(self.admin.clone(), &ar),
            };
            let obj: DynamicObject = serde_json::from_value(doc).unwrap();
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                // The namespace's `default` ServiceAccount exists already: apply = replace.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let name = obj.metadata.name.clone().unwrap();
                    let body = serde_json::to_value(&obj).unwrap();
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                        .await
                        .unwrap();
                }
                Err(e) => panic!("applying {kind}: {e}"),
            }
        }
    }

    /// The token of a ServiceAccount, from the Secret the token controller makes for it.
    async fn sa_token(&self, ns: &str, sa: &str) -> String {
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        let secret_name = eventually("the ServiceAccount's token Secret", 30, || async {
            let sa = sas.get_opt(sa).await.unwrap()?;
            sa.secrets?.first()?.name.clone()
        })
        .await;
        let secret = secrets.get(&secret_name).await.unwrap();
        String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap()
    }

    /// The service's settings for this test's runs namespace.
    fn env(&self) -> Vec<(String, String)> {
        vec![("AQBB_NAMESPACE".into(), self.runs_ns.clone())]
    }

    /// A launcher authenticated as the service's ServiceAccount (its own token, not admin).
    async fn service_launcher(&self) -> KubeLauncher {
        self.service_launcher_with(&[]).await
    }

    /// The same, with settings of its own beside the namespace.
    async fn service_launcher_with(&self, extra: &[(&str, &str)]) -> KubeLauncher {
        let token = self.sa_token(&self.api_ns, API_SA).await;
        let mut cfg = self.admin_config.clone();
        cfg.auth_info = Default::default();
        cfg.headers.push((
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        ));
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        k8s::launcher_with(cfg, &Config::from_iter(env).unwrap()).unwrap()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.admin.clone(), &self.runs_ns)
    }

    /// Waits for the Job controller to create the run's pod, then sets its phase.
    async fn finish_pod(&self, run_id: i64, phase: &str) {
        self.finish_pod_with(run_id, json!({"status": {"phase": phase}}))
            .await
    }

    /// Waits for the Job controller to create the run's pod, then writes its status (what a
    /// kubelet would).
    async fn finish_pod_with(&self, run_id: i64, status: serde_json::Value) {
        let pods: Api<Pod> = self.api();
        let selector = format!("job-name={}", objects::object_name(run_id));
        let pod = eventually("the Job's pod", 30, || async {
            pods.list(&ListParams::default().labels(&selector))
                .await
                .unwrap()
                .items
                .into_iter()
                .next()
        })
        .await;
        pods.patch_status(
            pod.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap();
    }

    /// Waits until the Job controller gave the Job a `cond` condition; returns the Job.
    async fn job_with_condition(&self, run_id: i64, cond: &str) -> Job {
        let jobs: Api<Job> = self.api();
        eventually(&format!("Job condition {cond}"), 30, || async {
            let job = jobs.get(&objects::object_name(run_id)).await.unwrap();
            let has = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == cond && c.status == "True"));
            has.then_some(job)
        })
        .await
    }

    async fn finish(self) {
        let ns: Api<Namespace> = Api::all(self.admin.clone());
        for n in [&self.runs_ns, &self.api_ns] {
            let _ = ns.delete(n, &DeleteParams::default()).await;
        }
    }
}

/// A seeded app using `launcher`, a user and the demo notebook pipeline's id.
async fn app_with(cluster: &Cluster, launcher: Arc<dyn Launcher>) -> (TestApp, String, i64) {
    let app = TestApp::spawn_with(Options {
        env: cluster.env(),
        launcher: Some(launcher),
        ..Default::default()
    })
    .await;
    app.seed().await;
    let (_, token) = app.user_with_token("runner", false).await;
    let p = notebook_pipeline(&app).await;
    (app, token, p)
}

async fn notebook_pipeline(app: &TestApp) -> i64 {
    pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq("Notebook static analysis"))
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("demo notebook pipeline")
        .id
}

fn parameters() -> Value {
    json!({"parameters": {"clone_subworkflow": {"clone": {
        "repo_url": "https://github.com/SpaceApplications/eoepca-aqbb-test-files",
        "repo_branch": "main"
    }}}})
}

/// Starts a run through the REST API; returns its JSON.
async fn start_run(app: &TestApp, token: &str, pipeline_id: i64) -> Value {
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{pipeline_id}/runs/"),
            Some(token),
            &parameters(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Starts a run through the REST API; returns its id.
async fn start_run_id(app: &TestApp, token: &str, pipeline_id: i64) -> i64 {
    start_run(app, token, pipeline_id).await["id"]
        .as_i64()
        .expect("the run's id")
}

async fn stored_run(app: &TestApp, id: i64) -> pipeline_run::Model {
    pipeline_run::Entity::find_by_id(id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
}

/// Every field of `expected` is in `actual` with the same value (the server may add defaults).
fn assert_kept(path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let Some(av) = a.get(k) else {
                    panic!("the API server dropped {path}.{k}");
                };
                assert_kept(&format!("{path}.{k}"), v, av);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: list length changed");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_kept(&format!("{path}[{i}]"), ev, av);
            }
        }
        _ => assert_eq!(expected, actual, "{path} changed"),
    }
}

fn permission_set(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for rule in rules.as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    set.insert((
                        g.as_str().unwrap().into(),
                        r.as_str().unwrap().into(),
                        v.as_str().unwrap().into(),
                    ));
                }
            }
        }
    }
    set
}

#[test]
fn rbac_manifest_grants_exactly_the_permissions_the_code_uses() {
    let role = documents(&manifest("rbac.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == API_SA)
        .expect("the service's Role");
    assert_eq!(role["metadata"]["namespace"], RUNS_NS);
    let granted = permission_set(&role["rules"]);
    let used: BTreeSet<_> = REQUIRED_PERMISSIONS
        .iter()
        .map(|p| {
            (
                p.group.to_string(),
                p.resource.to_string(),
                p.verb.to_string(),
            )
        })
        .collect();
    assert_eq!(
        granted, used,
        "knative/rbac.yaml and k8s::REQUIRED_PERMISSIONS differ"
    );
    // The ApiServerSource may read Jobs and nothing else.
    let source_role = documents(&manifest("apiserversource.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "Role")
        .unwrap();
    let expected: BTreeSet<_> = ["get", "list", "watch"]
        .iter()
        .map(|v| ("batch".to_string(), "jobs".to_string(), v.to_string()))
        .collect();
    assert_eq!(permission_set(&source_role["rules"]), expected);
}

/// Asks the API server whether `user` may `verb` `group/resource` in `ns`.
async fn allowed(
    c: &Cluster,
    user_ns: &str,
    sa: &str,
    ns: &str,
    g: &str,
    r: &str,
    v: &str,
) -> bool {
    let (resource, subresource) = match r.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (r, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{user_ns}:{sa}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{user_ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(g.into()),
                resource: Some(resource.into()),
                subresource,
                verb: Some(v.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(c.admin.clone());
    let answer = api.create(&PostParams::default(), &review).await.unwrap();
    answer.status.unwrap().allowed
}

#[tokio::test]
async fn applied_rbac_allows_every_required_verb_and_nothing_more() {
    if !cluster_configured() {
        return;
    }
    let c = Cluster::start().await;
    let (api_ns, runs_ns) = (c.api_ns.clone(), c.runs_ns.clone());
    for p in REQUIRED_PERMISSIONS {
        assert!(
            allowed(&c, &api_ns, API_SA, &runs_ns, p.group, p.resource, p.verb).await,
            "the service may not {p:?}"
        );
    }
    for (g, r, v) in [
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("", "pods", "create"),
        ("", "pods", "get"),
        ("", "pods", "delete"),
        ("", "pods/log", "get"),
        ("batch", "jobs", "list"),
        ("", "namespaces", "create"),
    ] {
        assert!(
            !allowed(&c, &api_ns, API_SA, &runs_ns, g, r, v).await,
            "the service should not {v} {r}"
        );
    }
    // Nothing outside the runs namespace.
    assert!(!allowed(&c, &api_ns, API_SA, "default", "batch", "jobs", "create").await);
    // Calrissian may run and follow its step pods; step pods get no API token.
    for (r, v) in [("pods", "create"), ("pods", "watch"), ("pods/log", "get")] {
        assert!(allowed(&c, &runs_ns, CALRISSIAN_SA, &runs_ns, "", r, v).await);
    }
    assert!(!allowed(&c, &runs_ns, CALRISSIAN_SA, &runs_ns, "", "secrets", "get").await);
    let sas: Api<ServiceAccount> = c.api();
    let default_sa = sas.get("default").await.unwrap();
    assert_eq!(default_sa.automount_service_account_token, Some(false));
    // The API server took the runs namespace's Pod Security labels and NetworkPolicies.
    let namespaces: Api<Namespace> = Api::all(c.admin.clone());
    let runs = namespaces.get(&runs_ns).await.unwrap();
    assert_eq!(
        runs.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    let policies: Api<NetworkPolicy> = c.api();
    let names: BTreeSet<String> = policies
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "application-quality-calrissian".to_string(),
            "application-quality-runs".to_string()
        ])
    );
    c.finish().await;
}

#[tokio::test]
async fn launch_as_the_service_account_creates_every_object_and_the_server_keeps_them() {
    if !cluster_configured() {
        return;
    }
    let c = Cluster::start().await;
    let launcher = c.service_launcher().await;
    launcher
        .check()
        .await
        .expect("the service account may create Jobs");
    let launcher = Arc::new(launcher);
    let (app, token, pipeline_id) = app_with(&c, launcher.clone()).await;
    let run = start_run(&app, &token, pipeline_id).await;
    let run_id = run["id"].as_i64().unwrap();
    assert_eq!(run["status"], "running", "{run}");
    let stored = stored_run(&app, run_id).await;
    assert_eq!(stored.k8s_namespace.as_deref(), Some(c.runs_ns.as_str()));
    assert_eq!(stored.k8s_job_name, Some(objects::object_name(run_id)));

    // What we sent, rebuilt from the stored run, against what the API server kept.
    let name = objects::object_name(run_id);
    let secret = c.api::<Secret>().get(&name).await.unwrap();
    let callback_token =
        String::from_utf8(secret.data.clone().unwrap()["token"].0.clone()).unwrap();
    let req = LaunchRequest {
        run_id,
        pipeline_id,
        user_id: stored.started_by_id,
        cwl: stored.executed_cwl.clone().unwrap(),
        params: serde_json::from_value(stored.inputs.clone().unwrap()).unwrap(),
        callback_token,
        callback_url: app.state.config.callback_base_url(),
        traceparent: None,
    };
    let settings = launcher.settings();
    let job = c.api::<Job>().get(&name).await.unwrap();
    let uid = job.metadata.uid.clone().unwrap();
    let owner = objects::owner_reference(&name, &uid);
    let sent = serde_json::to_value(objects::job(&req, settings)).unwrap();
    let kept = serde_json::to_value(&job).unwrap();
    assert_kept("job.metadata", &sent["metadata"], &kept["metadata"]);
    assert_kept("job.spec", &sent["spec"], &kept["spec"]);
    assert_eq!(kept["spec"]["ttlSecondsAfterFinished"], 3 * 24 * 3600);
    assert_eq!(kept["spec"]["backoffLimit"], 0);
    assert_eq!(
        kept["spec"]["template"]["spec"]["containers"][0]["name"],
        "calrissian"
    );
    // Non-root, no escalation, no capability, as the API server keeps it.
    let pod = &kept["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["securityContext"]["fsGroup"], 1000);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["initContainers"], Value::Null);
    let cal = &pod["containers"][0];
    assert_eq!(cal["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        cal["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    let cm = c.api::<ConfigMap>().get(&name).await.unwrap();
    let sent_cm = serde_json::to_value(objects::config_map(&req, settings, &owner)).unwrap();
    assert_kept("configmap", &sent_cm, &serde_json::to_value(&cm).unwrap());
    let data = cm.data.unwrap();
    assert_eq!(Some(&data["workflow.cwl"]), stored.executed_cwl.as_ref());
    assert!(data["params.yml"].contains("clone_subworkflow.clone.repo_branch: main"));
    assert!(data["params.yml"].contains(&format!("run_id: '{run_id}'")));
    let sent_secret = serde_json::to_value(objects::secret(&req, settings, &owner)).unwrap();
    assert_kept(
        "secret",
        &sent_secret,
        &serde_json::to_value(&secret).unwrap(),
    );
    let pvc = c.api::<PersistentVolumeClaim>().get(&name).await.unwrap();
    let sent_pvc = serde_json::to_value(objects::pvc(&req, settings, &owner)).unwrap();
    assert_kept("pvc", &sent_pvc, &serde_json::to_value(&pvc).unwrap());
    for labels in [
        &cm.metadata.labels,
        &secret.metadata.labels,
        &pvc.metadata.labels,
    ] {
        assert_eq!(
            labels.as_ref().unwrap()[objects::RUN_ID_LABEL],
            run_id.to_string()
        );
    }
    // The Secret's token is the one the run accepts.
    let (status, _) = app
        .post(
            &format!("/api/pipelines/{pipeline_id}/runs/{run_id}/results/"),
            Some(&req.callback_token),
            &json!({"usage_report": {"total_tasks": 1}}),
        )
        .await;
    assert_eq!(status, 200);
    c.finish().await;
}

/// A Job change as a Knative ApiServerSource delivers it (binary mode, data = the Job).
async fn post_job_event(app: &TestApp, job: &Job, kind: &str) -> (u16, Value) {
    let name = job.metadata.name.clone().unwrap();
    let ns = job.metadata.namespace.clone().unwrap();
    let req = app
        .client
        .post(app.url("/api/events/"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", uuid::Uuid::new_v4().to_string())
        .header("ce-source", "https://10.96.0.1:443")
        .header("ce-type", format!("dev.knative.apiserver.resource.{kind}"))
        .header(
            "ce-subject",
            format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
        )
        .body(serde_json::to_string(job).unwrap());
    app.send(req).await
}

#[tokio::test]
async fn runs_follow_their_jobs_through_events_and_reconcile_on_read() {
    if !cluster_configured() {
        return;
    }
    let c = Cluster::start().await;
    let launcher = Arc::new(c.service_launcher().await);
    let (app, token, pipeline_id) = app_with(&c, launcher).await;
    let ok = start_run_id(&app, &token, pipeline_id).await;
    let bad = start_run_id(&app, &token, pipeline_id).await;
    let bad_event = start_run_id(&app, &token, pipeline_id).await;

    // Success, seen through an ApiServerSource event.
    c.finish_pod(ok, "Succeeded").await;
    let job = c.job_with_condition(ok, "Complete").await;
    let (status, body) = post_job_event(&app, &job, "update").await;
    assert_eq!(status, 200, "{body}");
    let run = stored_run(&app, ok).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(run.completion_time.is_some());
    // ... which also shortened the Job's retention to the succeeded one.
    let jobs: Api<Job> = c.api();
    let ttl = jobs
        .get(&objects::object_name(ok))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(ttl.ttl_seconds_after_finished, Some(600));
    // A replayed event changes nothing.
    let (status, _) = post_job_event(&app, &job, "update").await;
    assert_eq!(status, 200);
    assert_eq!(stored_run(&app, ok).await.status, RunStatus::Succeeded);

    // Failure, seen by reading the run (no event). The kubelet keeps the tail of a failed
    // Calrissian's log as its termination message (FallbackToLogsOnError); the run's reason
    // carries it, read with the service's own ServiceAccount (pods: list).
    let failed_pod = |detail: &str| {
        json!({"status": {"phase": "Failed", "containerStatuses": [{
            "name": "calrissian", "ready": false, "restartCount": 0,
            "image": "calrissian", "imageID": "",
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": format!(
                "\u{1b}[1;30mINFO\u{1b}[0m [step clone] start\n\
                 \u{1b}[1;30mERROR\u{1b}[0m the command below failed in pod clone-container: {detail}\n")}}
        }]}})
    };
    c.finish_pod_with(bad, failed_pod("git clone missing.git"))
        .await;
    c.job_with_condition(bad, "Failed").await;
    let (status, body) = app
        .get(
            &format!("/api/pipelines/{pipeline_id}/runs/{bad}/"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "failed", "{body}");
    let message = stored_run(&app, bad).await.status_message.unwrap();
    assert!(message.contains("BackoffLimitExceeded"), "{message}");
    assert!(
        message.contains(
            "calrissian: exited 1 (Error): ERROR the command below failed in pod clone-container: git clone missing.git"
        ),
        "{message}"
    );
    // The same through the Job's failure event.
    c.finish_pod_with(bad_event, failed_pod("ruff check")).await;
    let failed_job = c.job_with_condition(bad_event, "Failed").await;
    let (status, body) = post_job_event(&app, &failed_job, "update").await;
    assert_eq!(status, 200, "{body}");
    let message = stored_run(&app, bad_event).await.status_message.unwrap();
    assert!(message.contains("BackoffLimitExceeded"), "{message}");
    assert!(
        message.ends_with("in pod clone-container: ruff check"),
        "{message}"
    );
    // The failed run keeps its objects for the failed retention.
    let spec = jobs
        .get(&objects::object_name(bad))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.ttl_seconds_after_finished, Some(3 * 24 * 3600));

    // Jobs that are not ours are ignored.
    let mut foreign = job.clone();
    foreign.metadata.labels = None;
    let (status, body) = post_job_event(&app, &foreign, "update").await;
    assert_eq!(status, 200, "{body}");
    c.finish().await;
}

/// A step pod that cannot pull its image (Calrissian waits for it for ever) fails its run at
/// the next read, naming the image, pod and reason, and the run's Job is deleted. The step pod
/// is made here as Calrissian makes it: with the labels of the run's `pod-labels.yml`.
#[tokio::test]
async fn a_step_pod_that_cannot_pull_its_image_fails_the_run_on_read_and_stops_it() {
    if !cluster_configured() {
        return;
    }
    let c = Cluster::start().await;
    // No grace: the first pull failure counts (the kubelet's back-off is not simulated).
    let launcher = Arc::new(
        c.service_launcher_with(&[("AQBB_IMAGE_PULL_GRACE_SECS", "0")])
            .await,
    );
    let (app, token, pipeline_id) = app_with(&c, launcher).await;
    let id = start_run_id(&app, &token, pipeline_id).await;
    let path = format!("/api/pipelines/{pipeline_id}/runs/{id}/");
    let cms: Api<ConfigMap> = c.api();
    let data = cms
        .get(&objects::object_name(id))
        .await
        .unwrap()
        .data
        .unwrap();
    let labels: std::collections::BTreeMap<String, String> =
        serde_yaml::from_str(&data[objects::POD_LABELS_KEY]).unwrap();
    let pods: Api<Pod> = c.api();
    let step: Pod = serde_json::from_value(json!({
        "metadata": {"name": "trivy-step-pod-x1", "labels": labels},
        "spec": {"containers": [{"name": "trivy-step-container", "image": "aquasec/trivy:latest"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &step).await.unwrap();
    // Being created: the run goes on.
    let (status, body) = app.get(&path, Some(&token)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("running")),
        "{body}"
    );
    pods.patch_status(
        "trivy-step-pod-x1",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Pending", "containerStatuses": [{
            "name": "trivy-step-container", "ready": false, "restartCount": 0,
            "image": "aquasec/trivy:latest", "imageID": "",
            "state": {"waiting": {"reason": "ErrImagePull",
                "message": "Error response from daemon: Get https://registry-1.docker.io/v2/: no such host"}}
        }]}})),
    )
    .await
    .unwrap();
    let (status, body) = app.get(&path, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "failed", "{body}");
    let message = body["status_message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "The image \"aquasec/trivy:latest\" of pod trivy-step-pod-x1 (container trivy-step-container) cannot be pulled (ErrImagePull: Error response from daemon"
        ),
        "{message}"
    );
    assert_ne!(body["digest_quality"], "pass", "{body}");
    // Stopped: its Job is deleted (and with it, by the garbage collector, its objects).
    let jobs: Api<Job> = c.api();
    eventually("the run's Job deleted", 30, || async {
        jobs.get_opt(&objects::object_name(id))
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // Terminal: a later read changes nothing.
    let (_, again) = app.get(&path, Some(&token)).await;
    assert_eq!(again["status_message"], body["status_message"]);
    c.finish().await;
}

/// A stand-in for Calrissian (Calrissian itself needs a node; `scripts/e2e.sh` runs the real
/// one with this launcher): prints "started", reports who it runs as, waits for SIGTERM when
/// asked to, writes the files Calrissian writes, and exits with `STANDIN_EXIT`.
const CALRISSIAN_STAND_IN: &str = r#"#!/bin/sh
set -eu
# A signal may come before the sleep exists: then there is nothing to stop.
trap 'echo terminated > "$AQ_WORKDIR/signal"; [ -z "${!:-}" ] || kill "$!" 2>/dev/null; exit 143' TERM
id -u > "$AQ_WORKDIR/uid"
printf '%s\n' "$@" > "$AQ_WORKDIR/args"
echo started
if [ "${STANDIN_WAIT:-}" = 1 ]; then
  sleep 300 >/dev/null 2>&1 &
  wait
fi
printf '%s' "${STANDIN_OUTPUT:-}" > "$AQ_WORKDIR/output.json"
printf '%s' "${STANDIN_USAGE:-}" > "$AQ_WORKDIR/report.json"
exit "${STANDIN_EXIT:-0}"
"#;

/// The Job pod's launcher (`objects::LAUNCH_SCRIPT`) as the kubelet starts it, with the
/// stand-in on its PATH and the pod's files under `dir`; returns its exit code and stderr.
/// Root (as on CI) starts it as the root-started container of `AQBB_WORKDIR_CHOWN`.
async fn launch(
    dir: &std::path::Path,
    results_url: &str,
    env: &[(&str, &str)],
    on_started: Option<i32>,
) -> (i32, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args([
        "-c",
        objects::LAUNCH_SCRIPT,
        "--outdir",
        "/calrissian/",
        "wf.cwl",
    ])
    .env_clear()
    .env("PATH", path)
    .env("AQ_WORKDIR", dir.join("work"))
    .env("AQ_POD_ENV_FILE", dir.join("pod_env_vars.json"))
    .env("AQ_RESULTS_URL", results_url)
    .envs(env.iter().copied())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("python3");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    if let Some(signal) = on_started {
        // Once the stand-in runs: what the kubelet does to a cancelled run's pod.
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
        let pid = child.id().unwrap() as i32;
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
    while lines.next_line().await.unwrap().is_some() {}
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_job_pods_launcher_posts_calrissians_results_or_passes_its_failure_on() {
    if !cluster_configured() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start().await;
    let launcher = Arc::new(c.service_launcher().await);
    let (app, token, pipeline_id) = app_with(&c, launcher).await;
    let run_id = start_run_id(&app, &token, pipeline_id).await;
    let other = start_run_id(&app, &token, pipeline_id).await;
    // The pod's files: the step pods' environment (with the token) from the run's real Secret.
    let pod_env = |run: i64| {
        let secrets = c.api::<Secret>();
        async move {
            let s = secrets.get(&objects::object_name(run)).await.unwrap();
            s.data.unwrap()[objects::POD_ENV_KEY].0.clone()
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.join("bin")).unwrap();
    std::fs::create_dir(dir.join("work")).unwrap();
    let stand_in = dir.join("bin/calrissian");
    std::fs::write(&stand_in, CALRISSIAN_STAND_IN).unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env_file = dir.join("pod_env_vars.json");
    std::fs::write(&env_file, pod_env(run_id).await).unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = app.url(&format!(
        "/api/pipelines/{pipeline_id}/runs/{run_id}/results/"
    ));
    let root = unsafe { libc::geteuid() } == 0;
    // As root, the container of AQBB_WORKDIR_CHOWN: it must become the run's user first.
    let run_as: &[(&str, &str)] = if root {
        &[("AQ_RUN_AS", "4242:4243")]
    } else {
        &[]
    };
    let with = |extra: &[(&'static str, &'static str)]| {
        run_as.iter().chain(extra).copied().collect::<Vec<_>>()
    };
    if root {
        let (code, err) = launch(dir, &url, &[], None).await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("Calrissian never runs as root"), "{err}");
        assert!(!dir.join("work/args").exists());
    }

    // Calrissian fails: its exit code is the container's, nothing is posted.
    let (code, err) = launch(dir, &url, &with(&[("STANDIN_EXIT", "3")]), None).await;
    assert_eq!(code, 3, "{err}");
    assert!(stored_run(&app, run_id).await.output.is_none());
    let args = std::fs::read_to_string(dir.join("work/args")).unwrap();
    assert_eq!(args, "--outdir\n/calrissian/\nwf.cwl\n");
    if root {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::read_to_string(dir.join("work/uid")).unwrap();
        assert_eq!(uid.trim(), "4242");
        let meta = std::fs::metadata(dir.join("work")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (4242, 4243, 0o770)
        );
    }

    // Cancelled: SIGTERM reaches Calrissian (which deletes its step pods), nothing is posted.
    let (code, err) = launch(
        dir,
        &url,
        &with(&[("STANDIN_WAIT", "1")]),
        Some(libc::SIGTERM),
    )
    .await;
    assert_eq!(code, 143, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("work/signal")).unwrap(),
        "terminated\n"
    );
    assert!(stored_run(&app, run_id).await.output.is_none());

    // Another run's token: refused, said, the container fails; nothing stored.
    std::fs::write(&env_file, pod_env(other).await).unwrap();
    let output = r#"{"report": {"class": "File", "location": "file:///calrissian/ruff.json"}}"#;
    let (code, err) = launch(dir, &url, &with(&[("STANDIN_OUTPUT", output)]), None).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the service refused the results (403)"),
        "{err}"
    );
    assert!(stored_run(&app, run_id).await.output.is_none());

    // Success: output and usage report stored.
    std::fs::write(&env_file, pod_env(run_id).await).unwrap();
    let usage = r#"{"total_tasks": 2, "children": []}"#;
    let (code, err) = launch(
        dir,
        &url,
        &with(&[("STANDIN_OUTPUT", output), ("STANDIN_USAGE", usage)]),
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let run = stored_run(&app, run_id).await;
    assert_eq!(run.output, Some(serde_json::from_str(output).unwrap()));
    assert_eq!(
        run.usage_report,
        serde_json::from_str::<Value>(usage).unwrap()
    );
    // Not JSON: said, not posted.
    let (code, err) = launch(
        dir,
        &app.url(&format!(
            "/api/pipelines/{pipeline_id}/runs/{other}/results/"
        )),
        &with(&[("STANDIN_OUTPUT", "{oops")]),
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("output.json is not JSON"), "{err}");
    c.finish().await;
}

#[tokio::test]
async fn results_callback_stores_output_and_usage_once_with_the_run_token_only() {
    if !cluster_configured() {
        return;
    }
    let c = Cluster::start().await;
    let launcher = Arc::new(c.service_launcher().await);
    let (app, token, pipeline_id) = app_with(&c, launcher).await;
    let run_id = start_run_id(&app, &token, pipeline_id).await;
    let other = start_run_id(&app, &token, pipeline_id).await;
    let secret = c
        .api::<Secret>()
        .get(&objects::object_name(run_id))
        .await
        .unwrap();
    let run_token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    let other_secret = c
        .api::<Secret>()
        .get(&objects::object_name(other))
        .await
        .unwrap();
    let other_token = String::from_utf8(other_secret.data.unwrap()["token"].0.clone()).unwrap();
    let path = format!("/api/pipelines/{pipeline_id}/runs/{run_id}/results/");
    let results = json!({
        "output": {"report": {"class": "File", "location": "file:///calrissian/r.json"}},
        "usage_report": {"total_tasks": 3, "total_cpu_hours": 0.01, "children": []}
    });
    // Another run's token, no token, a user's token: refused, nothing stored.
    let (status, _) = app.post(&path, Some(&other_token), &results).await;
    assert_eq!(status, 403);
    let (status, _) = app.post(&path, None, &results).await;
    assert_eq!(status, 401);
    let (status, _) = app.post(&path, Some(&token), &results).await;
    assert_eq!(status, 401);
    assert!(stored_run(&app, run_id).await.output.is_none());

    let (status, body) = app.post(&path, Some(&run_token), &results).await;
    assert_eq!((status, &body["stored"]), (200, &json!(true)), "{body}");
    let (status, body) = app
        .get(
            &format!("/api/pipelines/{pipeline_id}/runs/{run_id}/"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["output"], results["output"]);
    assert_eq!(body["usage_report"], results["usage_report"]);
    // A second delivery is acknowledged and ignored.
    let (status, body) = app
        .post(&path, Some(&run_token), &json!({"output": {"other": 1}}))
        .await;
    assert_eq!((status, &body["stored"]), (200, &json!(false)));
    assert_eq!(
        stored_run(&app, run_id).await.output,
        Some(results["output"].clone())
    );
    // Wrong pipeline in the path: 404.
    let (status, _) = app
        .post(
            &format!(
                "/api/pipelines/{}/runs/{run_id}/results/",
                pipeline_id + 1000
            ),
            Some(&run_token),
            &results,
        )
        .await;
    assert_eq!(status, 404);
    c.finish().await;
}

#[tokio::test]
async fn launching_twice_makes_one_job_and_cancel_removes_everything() {
    if !cluster_configured() {
        return;
    }
    let c = Cluster::start().await;
    let launcher = Arc::new(c.service_launcher().await);
    let (app, token, pipeline_id) = app_with(&c, launcher.clone()).await;
    let run_id = start_run_id(&app, &token, pipeline_id).await;
    let stored = stored_run(&app, run_id).await;
    let name = objects::object_name(run_id);
    let first_uid = c.api::<Job>().get(&name).await.unwrap().metadata.uid;

    // A resumed launch (new token): same Job, the Secret carries the new token.
    let req = LaunchRequest {
        run_id,
        pipeline_id,
        user_id: stored.started_by_id,
        cwl: stored.executed_cwl.clone().unwrap(),
        params: serde_json::from_value(stored.inputs.clone().unwrap()).unwrap(),
        callback_token: "aqrun_resumed-token".into(),
        callback_url: app.state.config.callback_base_url(),
        traceparent: None,
    };
    let outcome = launcher.launch(&req).await.unwrap();
    assert_eq!(
        outcome,
        LaunchOutcome::Launched {
            namespace: c.runs_ns.clone(),
            job_name: name.clone()
        }
    );
    let selector = format!("{}={run_id}", objects::RUN_ID_LABEL);
    let jobs = c
        .api::<Job>()
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
    assert_eq!(jobs.items[0].metadata.uid, first_uid);
    let secret = c.api::<Secret>().get(&name).await.unwrap();
    assert_eq!(secret.data.unwrap()["token"].0, b"aqrun_resumed-token");
    // The Job controller made the pod: cancelling must take it too.
    let pods: Api<Pod> = c.api();
    let job_selector = format!("job-name={name}");
    eventually("the Job's pod", 30, || async {
        let l = pods
            .list(&ListParams::default().labels(&job_selector))
            .await
            .unwrap();
        (!l.items.is_empty()).then_some(())
    })
    .await;

    let (status, body) = app
        .post(
            &format!("/api/pipelines/{pipeline_id}/runs/{run_id}/cancel/"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_run(&app, run_id).await.status, RunStatus::Killed);
    assert!(c.api::<Job>().get_opt(&name).await.unwrap().is_none());
    // The garbage collector removes everything the Job owned.
    eventually("garbage collection of the run's objects", 60, || async {
        let gone = c.api::<ConfigMap>().get_opt(&name).await.unwrap().is_none()
            && c.api::<Secret>().get_opt(&name).await.unwrap().is_none()
            && c.api::<PersistentVolumeClaim>()
                .get_opt(&name)
                .await
                .unwrap()
                .is_none()
            && pods
                .list(&ListParams::default().labels(&job_selector))
                .await
                .unwrap()
                .items
                .is_empty();
        gone.then_some(())
    })
    .await;
    // Cancelling again is harmless.
    launcher.cancel(run_id).await.unwrap();
    c.finish().await;
}

/// A launcher whose API server is a closed port.
async fn unreachable_launcher() -> (Arc<KubeLauncher>, Config) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let kube_config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
    let config = Config::from_iter([("KUBE_TIMEOUT_MS".to_string(), "2000".to_string())]).unwrap();
    (
        Arc::new(k8s::launcher_with(kube_config, &config).unwrap()),
        config,
    )
}

#[tokio::test]
async fn unreachable_api_server_fails_the_run_clearly_and_answers_503() {
    let (launcher, _) = unreachable_launcher().await;
    let started = Instant::now();
    let err = launcher.check().await.unwrap_err();
    assert!(matches!(err, LaunchError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        ..Default::default()
    })
    .await;
    app.seed().await;
    let (_, token) = app.user_with_token("runner", false).await;
    let pipeline_id = notebook_pipeline(&app).await;
    let r = app
        .client
        .post(app.url(&format!("/api/pipelines/{pipeline_id}/runs/")))
        .bearer_auth(&token)
        .json(&parameters())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Kubernetes API is unavailable"),
        "{body}"
    );
    let run = pipeline_run::Entity::find()
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.status_message.unwrap();
    assert!(message.contains("Kubernetes API unavailable"), "{message}");
    // Reading or cancelling does not hang either.
    let started = Instant::now();
    assert!(launcher.observe(run.id).await.is_err());
    assert!(launcher.cancel(run.id).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn kubernetes_on_without_a_reachable_cluster_is_one_clear_error() {
    let (launcher, _) = unreachable_launcher().await;
    let err = launcher.check().await.unwrap_err().to_string();
    assert!(err.starts_with("Kubernetes API unavailable"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The CWL of each demo pipeline equals its golden file (`UPDATE_GOLDEN=1` rewrites them),
/// and is a CWL v1.2 `$graph` with a `main` Workflow whose steps are the subworkflows.
#[tokio::test]
async fn demo_pipelines_render_their_golden_cwl() {
    let app = TestApp::spawn().await;
    app.seed().await;
    let mut seen = 0;
    for (name, file) in [
        ("Notebook static analysis", "notebook-static-analysis.cwl"),
        ("Python lint", "python-lint.cwl"),
        ("Python pipeline", "python-pipeline.cwl"),
        ("Notebook execution", "notebook-execution.cwl"),
        ("Notebook pipeline", "notebook-pipeline.cwl"),
        (
            "Application Package validation",
            "application-package-validation.cwl",
        ),
    ] {
        let p = pipeline::Entity::find()
            .filter(pipeline::Column::Name.eq(name))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("demo pipeline {name:?}"));
        let graph = PipelineGraph::load(&app.state.db, p).await.unwrap();
        let cwl = render::render(&graph).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&cwl).unwrap();
        assert_eq!(doc["cwlVersion"].as_str(), Some("v1.2"), "{name}");
        let graph_items = doc["$graph"].as_sequence().unwrap();
        let main = graph_items
            .iter()
            .find(|i| i["id"].as_str() == Some("main"))
            .expect("a main Workflow");
        assert_eq!(main["class"].as_str(), Some("Workflow"));
        let path = golden_path(file);
        if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &cwl).unwrap();
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(cwl, golden, "{name}: rendered CWL differs from {file}");
        seen += 1;
    }
    assert_eq!(seen, 6);
}

/// A template error is a clear failed run, not a panic or a 500.
#[tokio::test]
async fn a_template_error_fails_the_run_with_its_message() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
    let app = TestApp::spawn().await;
    app.seed().await;
    let (_, token) = app.user_with_token("runner", false).await;
    let pipeline_id = notebook_pipeline(&app).await;
    let p = pipeline::Entity::find_by_id(pipeline_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut broken = p.into_active_model();
    broken.template = Set("steps: {% for s in subworkflows %}{{ s.slug ".into());
    broken.update(&app.state.db).await.unwrap();
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{pipeline_id}/runs/"),
            Some(&token),
            &parameters(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "failed");
    let run = stored_run(&app, body["id"].as_i64().unwrap()).await;
    let message = run.status_message.unwrap();
    assert!(
        message.starts_with("CWL template error in pipeline"),
        "{message}"
    );
    assert!(app.recorder.as_ref().unwrap().launched().is_empty());
}

/// A `pipeline.execute` event in binary mode, as the demo's curl sends it.
async fn post_execute(app: &TestApp, id: &str, pipeline_id: i64) -> (u16, Value) {
    let req = app
        .client
        .post(app.url("/api/events/"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "curl")
        .header(
            "ce-type",
            "org.eoepca.application-quality.events.pipeline.execute",
        )
        .header("ce-user", "runner")
        .header("ce-subject", format!("pipelines/{pipeline_id}"))
        .body(parameters().to_string());
    app.send(req).await
}

#[tokio::test]
async fn a_pipeline_execute_event_creates_the_objects_once_and_a_deleted_job_fails_the_run() {
    if !cluster_configured() {
        return;
    }
    let c = Cluster::start().await;
    let launcher = Arc::new(c.service_launcher().await);
    let (app, _token, pipeline_id) = app_with(&c, launcher).await;
    let (status, body) = post_execute(&app, "exec-1", pipeline_id).await;
    assert!((200..300).contains(&status), "{status} {body}");
    // The duplicate delivery starts nothing more.
    let (status, body) = post_execute(&app, "exec-1", pipeline_id).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let runs = pipeline_run::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Running);
    let name = objects::object_name(runs[0].id);
    let selector = format!("{}={}", objects::MANAGED_BY_LABEL, objects::MANAGED_BY);
    let jobs = c
        .api::<Job>()
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
    assert!(c.api::<ConfigMap>().get_opt(&name).await.unwrap().is_some());
    assert!(c.api::<Secret>().get_opt(&name).await.unwrap().is_some());
    assert!(
        c.api::<PersistentVolumeClaim>()
            .get_opt(&name)
            .await
            .unwrap()
            .is_some()
    );

    // Someone deletes the Job before it finishes: the delete event fails the run.
    let job = jobs.items[0].clone();
    c.api::<Job>()
        .delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    let (status, body) = post_job_event(&app, &job, "delete").await;
    assert_eq!(status, 200, "{body}");
    let run = stored_run(&app, runs[0].id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.status_message
            .unwrap()
            .contains("deleted before it finished")
    );
    c.finish().await;
}
