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

/// A fake executor: records what it is asked (launches, callback tokens, trace contexts,
/// cancels), answers `observe` with what the test sets, can play an unreachable API server
/// (`down`), and can hold cancels open to let other things happen meanwhile.
pub struct FakeLauncher {
    /// While set, launches fail as if the API server were gone.
    pub down: AtomicBool,
    launches: Mutex<HashMap<i64, usize>>,
    tokens: Mutex<HashMap<i64, Vec<String>>>,
    traceparents: Mutex<HashMap<i64, Option<String>>>,
    observation: Mutex<Option<JobObservation>>,
    cancels: Mutex<Vec<i64>>,
    /// Whether cancels may complete (`false` holds them at the gate).
    gate: watch::Sender<bool>,
    /// How many cancels reached the gate.
    entered: watch::Sender<usize>,
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
            gate: watch::Sender::new(true),
            entered: watch::Sender::new(0),
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

    /// From now on cancels wait at a gate until [`Self::release_cancels`]: the time the API
    /// server takes to delete a Job, made as long as the test needs.
    pub fn hold_cancels(&self) {
        self.gate.send_replace(false);
    }

    /// Whether cancels are being held.
    pub fn holding(&self) -> bool {
        !*self.gate.borrow()
    }

    /// Lets held cancels (and later ones) complete.
    pub fn release_cancels(&self) {
        self.gate.send_replace(true);
    }

    /// Waits (bounded) until `n` cancels in total reached the gate.
    pub async fn cancels_entered(&self, n: usize) {
        let mut rx = self.entered.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|e| *e >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} cancel(s) did not reach the executor"))
            .unwrap();
    }
}

#[async_trait]
impl Launcher for FakeLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
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
        self.entered.send_modify(|e| *e += 1);
        let mut open = self.gate.subscribe();
        // Bounded: a test that forgets to release must fail, not hang.
        tokio::time::timeout(Duration::from_secs(30), open.wait_for(|o| *o))
            .await
            .map_err(|_| LaunchError::Unavailable("the fake held this cancel too long".into()))?
            .map_err(|_| LaunchError::Unavailable("the fake is gone".into()))?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}
