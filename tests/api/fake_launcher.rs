//! The one fake executor of the tests: [`FakeLauncher`] stands in for Kubernetes where no
//! cluster can take part (the Kubernetes tests in `k8s_runs.rs` use a real API server, the
//! local-runner tests real cwltool). Every launch "creates" the run's Job under the name and
//! namespace the real launcher uses, so Job events for it are accepted as ours.

use application_quality_api::{
    k8s::objects,
    runs::launcher::{JobObservation, LaunchError, LaunchOutcome, LaunchRequest, Launcher},
};
use async_trait::async_trait;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::watch;

/// The runs namespace of the default configuration (where the fake "creates" Jobs).
pub const RUNS_NAMESPACE: &str = "application-quality-runs";

/// Where a call can be held until the test lets it through (an API server as slow as the
/// test needs), counting the calls that reached it.
struct Gate {
    open: watch::Sender<bool>,
    entered: watch::Sender<usize>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            open: watch::Sender::new(true),
            entered: watch::Sender::new(0),
        }
    }
}

impl Gate {
    /// Waits until the gate is open; bounded, so a test that forgets to open it fails.
    async fn pass(&self, what: &str) -> Result<(), LaunchError> {
        self.entered.send_modify(|e| *e += 1);
        let mut open = self.open.subscribe();
        tokio::time::timeout(Duration::from_secs(30), open.wait_for(|o| *o))
            .await
            .map_err(|_| LaunchError::Unavailable(format!("the fake held this {what} too long")))?
            .map_err(|_| LaunchError::Unavailable("the fake is gone".into()))?;
        Ok(())
    }

    /// Waits (bounded) until `n` calls in total reached the gate.
    async fn entered(&self, n: usize, what: &str) {
        let mut rx = self.entered.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|e| *e >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} {what}(s) did not reach the executor"))
            .unwrap();
    }
}

/// A fake executor: records what it is asked (launches, callback tokens, trace contexts,
/// cancels), answers `observe` with what the test sets, can play an unreachable API server
/// (`down`), and can hold launches or cancels open to let other things happen meanwhile.
pub struct FakeLauncher {
    /// While set, launches fail as if the API server were gone.
    pub down: AtomicBool,
    launches: Mutex<HashMap<i64, usize>>,
    tokens: Mutex<HashMap<i64, Vec<String>>>,
    traceparents: Mutex<HashMap<i64, Option<String>>>,
    observation: Mutex<Option<JobObservation>>,
    cancels: Mutex<Vec<i64>>,
    launch_gate: Gate,
    cancel_gate: Gate,
}

impl Default for FakeLauncher {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
            launches: Mutex::default(),
            tokens: Mutex::default(),
            traceparents: Mutex::default(),
            observation: Mutex::default(),
            cancels: Mutex::default(),
            launch_gate: Gate::default(),
            cancel_gate: Gate::default(),
        }
    }
}

impl FakeLauncher {
    /// Successful launches in total.
    pub fn total(&self) -> usize {
        self.launches.lock().unwrap().values().sum()
    }

    /// Successful launches of one run.
    pub fn of(&self, run_id: i64) -> usize {
        self.launches
            .lock()
            .unwrap()
            .get(&run_id)
            .copied()
            .unwrap_or(0)
    }

    /// The callback token of the run's last launch (the one its pods would hold).
    pub fn token(&self, run_id: i64) -> String {
        self.tokens.lock().unwrap()[&run_id]
            .last()
            .cloned()
            .expect("the run was launched")
    }

    /// How many distinct callback tokens the launches of one run carried.
    pub fn tokens_of(&self, run_id: i64) -> usize {
        self.tokens
            .lock()
            .unwrap()
            .get(&run_id)
            .map_or(0, |t| t.iter().collect::<HashSet<_>>().len())
    }

    /// The trace context the run's launch carried; panics when the run was not launched.
    pub fn traceparent_of(&self, run_id: i64) -> Option<String> {
        let seen = self.traceparents.lock().unwrap();
        seen.get(&run_id)
            .unwrap_or_else(|| panic!("run {run_id} was not launched: {seen:?}"))
            .clone()
    }

    /// What `observe` reports from now on (`None`: the Job does not exist).
    pub fn set_observation(&self, obs: Option<JobObservation>) {
        *self.observation.lock().unwrap() = obs;
    }

    /// The runs whose cancel was asked for, in order.
    pub fn cancels(&self) -> Vec<i64> {
        self.cancels.lock().unwrap().clone()
    }

    /// From now on launches wait until [`Self::release_launches`] (creating the Job takes
    /// that long).
    pub fn hold_launches(&self) {
        self.launch_gate.open.send_replace(false);
    }

    /// Lets held launches (and later ones) complete.
    pub fn release_launches(&self) {
        self.launch_gate.open.send_replace(true);
    }

    /// Waits (bounded) until `n` launches in total reached the executor.
    pub async fn launches_entered(&self, n: usize) {
        self.launch_gate.entered(n, "launch").await;
    }

    /// From now on cancels wait until [`Self::release_cancels`] (deleting the Job takes
    /// that long).
    pub fn hold_cancels(&self) {
        self.cancel_gate.open.send_replace(false);
    }

    /// Whether cancels are being held.
    pub fn holding(&self) -> bool {
        !*self.cancel_gate.open.borrow()
    }

    /// Lets held cancels (and later ones) complete.
    pub fn release_cancels(&self) {
        self.cancel_gate.open.send_replace(true);
    }

    /// Waits (bounded) until `n` cancels in total reached the executor.
    pub async fn cancels_entered(&self, n: usize) {
        self.cancel_gate.entered(n, "cancel").await;
    }
}

#[async_trait]
impl Launcher for FakeLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        self.launch_gate.pass("launch").await?;
        if self.down.load(Ordering::SeqCst) {
            return Err(LaunchError::Unavailable("connection refused".into()));
        }
        *self.launches.lock().unwrap().entry(req.run_id).or_default() += 1;
        self.tokens
            .lock()
            .unwrap()
            .entry(req.run_id)
            .or_default()
            .push(req.callback_token.clone());
        self.traceparents
            .lock()
            .unwrap()
            .insert(req.run_id, req.traceparent.clone());
        Ok(LaunchOutcome::Launched {
            namespace: RUNS_NAMESPACE.into(),
            job_name: objects::object_name(req.run_id),
        })
    }

    async fn observe(&self, _run_id: i64) -> Result<Option<JobObservation>, LaunchError> {
        Ok(self.observation.lock().unwrap().clone())
    }

    async fn cancel(&self, run_id: i64) -> Result<(), LaunchError> {
        self.cancels.lock().unwrap().push(run_id);
        self.cancel_gate.pass("cancel").await
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}
