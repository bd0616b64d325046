//! Launch latency against a real API server: creates a scratch runs namespace, launches N runs
//! (Job + ConfigMap + Secret + PVC each) one after the other with the Kubernetes launcher, and
//! prints p50 / p95 / max of `Launcher::launch`. Then deletes the namespace.
//!
//! ```text
//! eval "$(scripts/kube.sh)"
//! cargo run --release --example launch_bench -- 200
//! ```

use application_quality_api::{
    config::Config,
    k8s,
    runs::launcher::{LaunchRequest, Launcher},
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use std::{collections::BTreeMap, time::Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100);
    let kube_config = k8s::kube_config_from_env()
        .await?
        .ok_or_else(|| anyhow::anyhow!("set KUBECONFIG (scripts/kube.sh prints it)"))?;
    let ns_name = format!(
        "aq-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let config = Config::from_iter([("AQBB_NAMESPACE".to_string(), ns_name.clone())])?;
    let launcher = k8s::launcher_with(kube_config, &config)?;
    let namespaces: Api<Namespace> = Api::all(launcher.client().clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns_name}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;

    let cwl = "cwlVersion: v1.2\n$graph:\n- class: Workflow\n  id: main\n  inputs: {}\n  outputs: []\n  steps: []\n".repeat(20);
    let mut params = BTreeMap::new();
    params.insert("server_url".to_string(), serde_json::json!("http://svc:80"));
    // One warm-up launch (TLS handshake, connection pool), not counted.
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let req = LaunchRequest {
            run_id: i as i64 + 1,
            pipeline_id: 1,
            user_id: None,
            cwl: cwl.clone(),
            params: params.clone(),
            callback_token: format!("aqrun_bench{i}"),
            callback_url: "http://svc:80".into(),
            traceparent: None,
        };
        let t = Instant::now();
        launcher.launch(&req).await?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "launch latency over {n} runs (4 objects each): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        pct(0.50),
        pct(0.95),
        times.last().copied().unwrap_or_default()
    );
    namespaces
        .delete(&ns_name, &DeleteParams::default())
        .await?;
    Ok(())
}
