//! Service configuration: read once from the environment (through `envy`), validated at start-up.
//!
//! Every field maps to an upper-case environment variable of the same name (`public_url` is
//! `PUBLIC_URL`). Names shared with the reference backend keep their meaning there. The table of
//! docs/configuration.md lists them all with their defaults; keep the two in step.

pub mod auth;
pub mod statuses;

use serde::Deserialize;
use std::time::Duration;

/// Schemes `REPO_URL_SCHEMES` may list.
pub const REPO_SCHEMES: [&str; 5] = ["https", "http", "ssh", "git", "file"];

/// How the service decides whether to talk to Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesMode {
    /// Use the in-cluster service account or `KUBECONFIG` when present; otherwise record runs only.
    Auto,
    /// A cluster is required: start-up fails when none is reachable.
    On,
    /// Never talk to Kubernetes: runs are recorded with a status saying so.
    Off,
}

/// Which executor runs pipelines (`EXECUTOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorMode {
    /// A cluster when one is configured, else the local runner when cwltool is found, else
    /// record-only (each choice and its reason is logged at start-up).
    Auto,
    /// Calrissian Jobs on Kubernetes; start-up fails without a usable cluster.
    Kubernetes,
    /// cwltool child processes on this machine; start-up fails without cwltool.
    Local,
    /// Record runs without executing them.
    Off,
}

/// Whether the local runner runs tools in containers (`LOCAL_CONTAINERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerMode {
    /// docker when its daemon socket is there, else podman when installed, else host tools.
    Auto,
    Docker,
    Podman,
    /// Host tools only (`cwltool --no-container`).
    Off,
}

/// How the local runner contains a run (`LOCAL_SANDBOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Every run inside bubblewrap: private mount, PID, network, IPC and UTS namespaces, an
    /// unprivileged user, limits (the default; the runner refuses to start without `bwrap`).
    Bwrap,
    /// No sandbox: cwltool and the tools run as the service's user with its view of the host.
    /// Only for a single trusted user; loud at every start.
    Off,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

/// Whether CloudEvent senders must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsAuth {
    /// Anyone who can reach the ingress may send events (the embedded default).
    Off,
    /// Every event needs `Authorization: Bearer <OIDC token>` of an allowed sender, as Knative's
    /// `authentication-oidc` feature attaches (see `auth::oidc`).
    Oidc,
}

/// The whole configuration of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// TCP port to listen on (Knative injects `PORT`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Address to bind: loopback by default, so a fresh start is reachable from this machine
    /// only; `0.0.0.0` in a container (set by the image and the manifests). A non-loopback
    /// address needs authenticated events (`EVENTS_AUTH=oidc`) or `EVENTS_TRUST_NETWORK`
    /// ([`Config::check_listener`]).
    #[serde(default = "default_bind_address")]
    pub bind_address: String,
    /// `sqlite://...` (embedded default) or `postgres://...`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Run migrations at start-up. Default: on for SQLite, off for PostgreSQL (use `migrate`).
    #[serde(default)]
    pub database_auto_migrate: Option<bool>,
    /// Connection pool size (PostgreSQL; SQLite uses one writer connection).
    #[serde(default = "default_db_max_connections")]
    pub database_max_connections: u32,
    /// HS256 signing key for JWTs (at least 32 bytes). When unset, a random key is generated
    /// once and kept in the database, so tokens survive restarts and work across replicas.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// `iss` claim put in and required of our tokens.
    #[serde(default = "default_jwt_issuer")]
    pub jwt_issuer: String,
    /// Access token lifetime in seconds.
    #[serde(default = "default_access_lifetime")]
    pub jwt_access_lifetime_secs: u64,
    /// Refresh token lifetime in seconds.
    #[serde(default = "default_refresh_lifetime")]
    pub jwt_refresh_lifetime_secs: u64,
    /// The public origin of the service (`scheme://host[:port]`): allowed host, CORS origin,
    /// and callback base when `BACKEND_SERVICE_HOST` is unset.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// Extra allowed `Host` values, comma-separated; `.example.org` matches subdomains, `*` any host.
    #[serde(default)]
    pub additional_allowed_hosts: String,
    /// Extra CORS origins, comma-separated (the `PUBLIC_URL` origin is always allowed).
    #[serde(default)]
    pub cors_allowed_origins: String,
    /// In-cluster host name of this service: an allowed host and the callback host pipeline pods use.
    #[serde(default)]
    pub backend_service_host: Option<String>,
    /// Port for `BACKEND_SERVICE_HOST` callbacks.
    #[serde(default = "default_backend_port")]
    pub backend_service_port: u16,
    /// `source` of reply CloudEvents.
    #[serde(default = "default_notif_source")]
    pub notif_response_source: String,
    /// Prefix of reply CloudEvent types (`.ok`, `.accepted`, `.duplicate`, `.ignored` appended).
    #[serde(default = "default_notif_prefix")]
    pub notif_response_type_prefix: String,
    /// Largest accepted request body in bytes; larger bodies get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Whole-request timeout in seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// `json` (default) or `pretty`.
    #[serde(default = "default_log_format")]
    pub log_format: LogFormat,
    /// YAML file served (as JSON) by `/api/settings/`; `{}` when absent.
    #[serde(default = "default_settings_file")]
    pub settings_file: String,
    /// `auto`, `on` or `off`.
    #[serde(default = "default_kubernetes")]
    pub kubernetes: KubernetesMode,
    /// `auto`, `kubernetes`, `local` or `off`. Unset: follows `KUBERNETES` (`on` ->
    /// `kubernetes`, `off` -> `off`, `auto` -> `auto`), so existing deployments keep their
    /// behaviour.
    #[serde(default)]
    pub executor: Option<ExecutorMode>,
    /// The cwltool executable of the local runner: a path, or a name looked up in `PATH`.
    #[serde(default = "default_cwltool")]
    pub cwltool: String,
    /// Directory holding the local runner's per-run working directories (`runs/<id>/`).
    #[serde(default = "default_local_data_dir")]
    pub local_data_dir: String,
    /// Runs the local runner executes at once; more wait in a queue that serves users in
    /// turn. 0: the number of cores.
    #[serde(default)]
    pub local_concurrency: usize,
    /// `auto`, `docker`, `podman` or `off` (host tools).
    #[serde(default = "default_local_containers")]
    pub local_containers: ContainerMode,
    /// Base URL the local runner's tools call back to; default: this process's own listening
    /// address on loopback.
    #[serde(default)]
    pub local_callback_url: Option<String>,
    /// `bwrap` (default) or `off`: see [`SandboxMode`].
    #[serde(default = "default_local_sandbox")]
    pub local_sandbox: SandboxMode,
    /// Memory a sandboxed run's processes may each allocate (`RLIMIT_DATA`), MiB.
    #[serde(default = "default_local_sandbox_memory_mib")]
    pub local_sandbox_memory_mib: u64,
    /// Processes and threads a sandboxed run may have at once (`RLIMIT_NPROC` of its user).
    #[serde(default = "default_local_sandbox_processes")]
    pub local_sandbox_processes: u64,
    /// CPU seconds each process of a sandboxed run may use (`RLIMIT_CPU`).
    #[serde(default = "default_local_sandbox_cpu_secs")]
    pub local_sandbox_cpu_secs: u64,
    /// Size of a sandboxed run's scratch space (the clone and intermediate files, a tmpfs) and
    /// the largest file it may write, MiB.
    #[serde(default = "default_local_sandbox_disk_mib")]
    pub local_sandbox_disk_mib: u64,
    /// Allows the local runner inside a Knative Service (`K_SERVICE` set), where a scaled-down
    /// pod would kill its runs.
    #[serde(default)]
    pub local_runner_force: bool,
    /// Set by Knative Serving in every revision's pod.
    #[serde(default)]
    pub k_service: Option<String>,
    /// Namespace where run objects are created.
    #[serde(default = "default_runs_namespace")]
    pub aqbb_namespace: String,
    /// Storage class of each run's ReadWriteMany working volume.
    #[serde(default = "default_storageclass")]
    pub aqbb_storageclass: String,
    /// Size of each run's working volume.
    #[serde(default = "default_volumesize")]
    pub aqbb_volumesize: String,
    /// Calrissian container image.
    #[serde(default = "default_calrissian_image")]
    pub aqbb_calrissianimage: String,
    /// Image of the final container that posts results back (needs `sh` and `curl`).
    #[serde(default = "default_reporter_image")]
    pub aqbb_reporterimage: String,
    /// `--max-cores` given to Calrissian.
    #[serde(default = "default_maxcores")]
    pub aqbb_maxcores: String,
    /// `--max-ram` given to Calrissian.
    #[serde(default = "default_maxram")]
    pub aqbb_maxram: String,
    /// Name of an existing image pull Secret (in the runs namespace) for run pods.
    #[serde(default)]
    pub aqbb_secret: Option<String>,
    /// Seconds a finished, succeeded run's objects are kept.
    #[serde(default = "default_succeeded_retention")]
    pub aqbb_succeeded_retention_secs: i32,
    /// Seconds a failed run's objects are kept for debugging.
    #[serde(default = "default_failed_retention")]
    pub aqbb_failed_retention_secs: i32,
    /// Upper bound on a Kubernetes API call made on the request path.
    #[serde(default = "default_kube_timeout_ms")]
    pub kube_timeout_ms: u64,
    /// ServiceAccount (in the runs namespace, from `knative/rbac.yaml`) the Calrissian pod runs as.
    #[serde(default = "default_run_service_account")]
    pub aqbb_serviceaccount: String,
    /// CPU request and limit of the Calrissian container itself (its step pods get
    /// `AQBB_MAXCORES`).
    #[serde(default = "default_calrissian_cpu")]
    pub aqbb_calrissian_cpu: String,
    /// Memory request and limit of the Calrissian container itself (step pods: `AQBB_MAXRAM`).
    #[serde(default = "default_calrissian_memory")]
    pub aqbb_calrissian_memory: String,
    /// Wall-time limit of a run's Job in seconds (`activeDeadlineSeconds`), or of its local
    /// process; 0 = none. An hour by default: a run that hangs (a repository server that never
    /// answers) holds its slot no longer than that.
    #[serde(default = "default_active_deadline")]
    pub aqbb_active_deadline_secs: i64,
    /// User id of every run's pods (the Calrissian pod, and the step pods, which Calrissian
    /// runs as its own user). Never 0: runs do not run as root.
    #[serde(default = "default_run_as")]
    pub aqbb_run_as_user: i64,
    /// Group id of every run's pods, also the `fsGroup` of the run's volume.
    #[serde(default = "default_run_as")]
    pub aqbb_run_as_group: i64,
    /// Give the run's volume to `AQBB_RUN_AS_USER` with a short init container (root with only
    /// `CHOWN` and `FOWNER`, on the still empty volume) before Calrissian starts: for storage
    /// that ignores `fsGroup` (hostPath, many NFS provisioners). Off by default.
    #[serde(default)]
    pub aqbb_workdir_chown: bool,
    /// Schemes a repository URL may use, comma-separated, among `https` (the default), `ssh`,
    /// `http`, `git` and `file` (see `pipelines::repos`).
    #[serde(default = "default_repo_url_schemes")]
    pub repo_url_schemes: Vec<String>,
    /// Absolute directories below which `file://` repository URLs are allowed, comma-separated;
    /// canonicalised at start-up (each must exist). Empty by default: no local repository.
    #[serde(default)]
    pub repo_file_roots: Vec<std::path::PathBuf>,
    /// git gives up a transfer slower than this many bytes per second ...
    #[serde(default = "default_repo_low_speed_limit")]
    pub repo_low_speed_limit: u32,
    /// ... for this many seconds (`GIT_HTTP_LOW_SPEED_LIMIT` / `GIT_HTTP_LOW_SPEED_TIME`).
    #[serde(default = "default_repo_low_speed_time")]
    pub repo_low_speed_time_secs: u32,
    /// ssh's `ConnectTimeout` for ssh repository URLs, in seconds.
    #[serde(default = "default_repo_connect_timeout")]
    pub repo_connect_timeout_secs: u32,
    /// How long after its run ended a callback token is still accepted (a late upload), in
    /// seconds.
    #[serde(default = "default_callback_grace")]
    pub callback_grace_secs: u64,
    /// Most job reports one run may post; more get 429.
    #[serde(default = "default_callback_max_reports")]
    pub callback_max_reports_per_run: u32,
    /// Most bytes of job reports (report and digest as stored JSON) one run may post; more get
    /// 413.
    #[serde(default = "default_callback_max_report_bytes")]
    pub callback_max_report_bytes_per_run: u64,
    /// Runs of one user executing at once (Kubernetes Jobs, local processes); 0 = no limit.
    /// Without a queue (Kubernetes) a run beyond it is refused (REST 429, events retryable);
    /// the local runner keeps it waiting instead.
    #[serde(default = "default_runs_max_active")]
    pub runs_max_active_per_user: u32,
    /// Runs of one user waiting for the local runner at once; beyond, new runs are refused
    /// (REST 429, events retryable). 0 = no limit.
    #[serde(default = "default_runs_max_queued")]
    pub runs_max_queued_per_user: u32,
    /// Failed `POST /api/token/` attempts allowed per username in one window; further attempts
    /// get 429 with `Retry-After` until the window ends. 0 turns this limit off. Counted per
    /// instance (see `auth::login_limit`).
    #[serde(default = "default_login_failures_per_user")]
    pub login_max_failures_per_user: u32,
    /// Failed `POST /api/token/` attempts allowed per client address (IPv6: per /64) in one
    /// window, whatever the usernames. 0 turns this limit off.
    #[serde(default = "default_login_failures_per_address")]
    pub login_max_failures_per_address: u32,
    /// Length of the login failure window in seconds, starting at a key's first failure.
    #[serde(default = "default_login_failure_window")]
    pub login_failure_window_secs: u64,
    /// How long the user behind an access token, and whether a session was signed out, are
    /// remembered (seconds; 0 = read them on every request). A user deactivated directly in
    /// the database, or a session signed out on another replica, loses access within this time.
    #[serde(default = "default_auth_user_cache")]
    pub auth_user_cache_secs: u64,
    /// How long the pipeline list is served from memory (milliseconds; 0 = query every time).
    /// This instance's own writes show at once; other writers' within this time.
    #[serde(default = "default_pipeline_list_cache")]
    pub pipeline_list_cache_ms: u64,
    /// Received events older than this many days are deleted by the periodic maintenance
    /// (0 = keep forever). Redeliveries of an event are recognised only while it is kept, so
    /// this must exceed every sender's redelivery horizon (brokers retry for minutes to hours,
    /// GitHub redeliveries are manual and limited to recent deliveries).
    #[serde(default = "default_event_retention_days")]
    pub event_retention_days: u32,
    /// Finished runs (and, with them, their job reports) whose completion is older than this many
    /// days are deleted by the maintenance (0 = keep forever, the default).
    #[serde(default)]
    pub run_retention_days: u32,
    /// Job reports older than this many days are deleted by the maintenance (0 = keep forever,
    /// the default).
    #[serde(default)]
    pub job_report_retention_days: u32,
    /// Shortest time between two maintenance passes, which requests start opportunistically in
    /// the background (0 = never from requests; an external wake-up may still call it).
    #[serde(default = "default_maintenance_interval")]
    pub maintenance_interval_secs: u64,
    /// Rows deleted per statement by the maintenance; each batch is its own short statement,
    /// so requests interleave with a long clean-up.
    #[serde(default = "default_maintenance_batch")]
    pub maintenance_batch_size: u32,
    /// Whether the client address is taken from the first `X-Forwarded-For` hop (instead of the
    /// TCP peer) for per-address limits. Enable it only behind a proxy that sets this header
    /// itself, as Knative's ingress and queue-proxy do, and whose outermost hop overwrites rather
    /// than appends to what clients send; otherwise a client could name any address it likes.
    /// Off by default.
    #[serde(default)]
    pub trusted_proxy_headers: bool,
    /// Authentication of CloudEvent senders: `off` (default: events only from loopback peers,
    /// unless `EVENTS_TRUST_NETWORK`) or `oidc` (a verified OIDC token of an allowed sender).
    #[serde(default = "default_events_auth")]
    pub events_auth: EventsAuth,
    /// With `EVENTS_AUTH=off`: accept unauthenticated events from any peer (and allow binding a
    /// non-loopback address), so whoever reaches the port may start runs as any user. Only for
    /// a network where every sender is trusted; a warning is logged at every start.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub events_trust_network: bool,
    /// Required `iss` of sender tokens, e.g. `https://kubernetes.default.svc.cluster.local`
    /// (the cluster's service account issuer). Required with `EVENTS_AUTH=oidc`.
    #[serde(default)]
    pub events_oidc_issuer: Option<String>,
    /// Required `aud` of sender tokens: the audience Knative requests tokens for when it
    /// delivers to this service. Required with `EVENTS_AUTH=oidc`.
    #[serde(default)]
    pub events_oidc_audience: Option<String>,
    /// Where the issuer's signing keys (JWKS) are fetched. Default: the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub events_oidc_jwks_url: Option<String>,
    /// PEM file of the CA certificates trusted for the discovery and JWKS requests (only these
    /// then). Default: the in-cluster service account's `ca.crt` for URLs of the cluster's API
    /// server, the system roots otherwise.
    #[serde(default)]
    pub events_oidc_ca_file: Option<String>,
    /// File holding a bearer token sent with the discovery and JWKS requests (re-read on each
    /// fetch, since projected tokens rotate). Default: the in-cluster service account token, and
    /// only to the cluster's API server.
    #[serde(default)]
    pub events_oidc_bearer_token_file: Option<String>,
    /// Shortest time in seconds between two JWKS fetches: a token with an unknown key id
    /// triggers a refetch at most this often.
    #[serde(default = "default_events_oidc_refresh")]
    pub events_oidc_refresh_interval_secs: u64,
    /// Token subjects (`sub`, e.g. `system:serviceaccount:<namespace>:<name>`) allowed to send
    /// events at all, comma-separated; empty or `*`: any valid token.
    #[serde(default)]
    pub events_allowed_senders: String,
    /// Token subjects allowed to name a `user` in `pipeline.execute` events (to start runs as
    /// that user), comma-separated; `*`: every allowed sender. Empty: none (such events get 403).
    #[serde(default)]
    pub events_user_senders: String,
    /// Browser sign-in through the IAM (`true`/`false`, the reference's variable): adds the
    /// `/oidc/` routes and session cookies, and accepts the IAM's access tokens as Bearer.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub oidc_enabled: bool,
    /// The IAM's discovery document (`.../.well-known/openid-configuration`).
    #[serde(default)]
    pub oidc_connect_config_url: Option<String>,
    /// The IAM's exact `iss`. Default: `OIDC_CONNECT_CONFIG_URL` without the well-known suffix.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// This service's client id at the IAM.
    #[serde(default)]
    pub oidc_rp_client_id: Option<String>,
    /// Its client secret (from a Secret).
    #[serde(default)]
    pub oidc_rp_client_secret: Option<String>,
    /// Scopes requested at sign-in, space-separated.
    #[serde(default = "default_oidc_scopes")]
    pub oidc_rp_scopes: String,
    /// Pins the ID token's signature algorithm (e.g. `RS256`); default: any asymmetric one.
    #[serde(default)]
    pub oidc_rp_sign_algo: Option<String>,
    /// Overrides of the discovered endpoints.
    #[serde(default)]
    pub oidc_op_authorization_endpoint: Option<String>,
    /// Token endpoint override.
    #[serde(default)]
    pub oidc_op_token_endpoint: Option<String>,
    /// JWKS override.
    #[serde(default)]
    pub oidc_op_jwks_endpoint: Option<String>,
    /// Read for compatibility with the reference's settings; not needed (claims come from the
    /// ID token).
    #[serde(default)]
    pub oidc_op_user_endpoint: Option<String>,
    /// RP-initiated logout endpoint override (default: the discovered `end_session_endpoint`).
    #[serde(default)]
    pub oidc_op_logout_endpoint: Option<String>,
    /// Where the IAM sends the browser after logging out. Default: `PUBLIC_URL/`.
    #[serde(default)]
    pub oidc_post_logout_redirect_url: Option<String>,
    /// Name of the logout endpoint's redirect parameter.
    #[serde(default = "default_logout_parameter")]
    pub oidc_logout_redirect_uri_parameter_name: String,
    /// The `redirect_uri` registered at the IAM. Default: `PUBLIC_URL/oidc/callback/`.
    #[serde(default)]
    pub oidc_rp_redirect_uri: Option<String>,
    /// Claim holding the username.
    #[serde(default = "default_username_claim")]
    pub oidc_preferred_username_claim_field: String,
    /// A first sign-in whose username names an existing account not yet linked to any identity
    /// is linked to that account (instead of getting an account of its own). Never a staff
    /// account unless the IAM's staff rule makes the identity staff. Off by default.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub oidc_link_by_username: bool,
    /// Claim (a dotted path such as `realm_access.roles` reaches nested objects) whose values
    /// decide staff status, with `OIDC_STAFF_VALUES`.
    #[serde(default = "default_staff_claim")]
    pub oidc_staff_claim: String,
    /// Values of `OIDC_STAFF_CLAIM` that make a user staff, comma-separated. Empty: the IAM
    /// never changes staff status.
    #[serde(default)]
    pub oidc_staff_values: String,
    /// Accepted audiences of IAM access tokens on the REST API (`aud`, or `azp`),
    /// comma-separated. Default: the client id.
    #[serde(default)]
    pub oidc_api_audiences: String,
    /// Where the browser goes after signing in.
    #[serde(default = "default_login_redirect")]
    pub login_redirect_url: String,
    /// Where the browser goes after logging out when the IAM has no end-session endpoint.
    #[serde(default = "default_login_redirect")]
    pub logout_redirect_url: String,
    /// Lifetime of a browser session in seconds.
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime_secs: u64,
    /// CI workload identities: a JSON list of policies mapping token claims to local users,
    /// e.g. `[{"issuer": "github", "claims": {"repository": "org/repo"}, "user": "ci"}]`.
    #[serde(default)]
    pub ci_oidc_policies: Option<String>,
    /// Required `aud` of CI tokens. Default: `PUBLIC_URL`.
    #[serde(default)]
    pub ci_oidc_audience: Option<String>,
    /// Issuer of GitHub Actions tokens.
    #[serde(default = "default_github_issuer")]
    pub ci_github_issuer: String,
    /// Issuer of GitLab CI ID tokens (the GitLab instance's URL).
    #[serde(default = "default_gitlab_issuer")]
    pub ci_gitlab_issuer: String,
    /// Post commit statuses to GitHub for runs started by GitHub push and pull-request events
    /// (`yes`, `y`, `true`, `1`, `t`, any case, as the reference). Off by default.
    #[serde(default)]
    pub github_status_enabled: Option<String>,
    /// The status `context`: the name a branch-protection rule requires.
    #[serde(default = "default_status_context")]
    pub github_status_context: String,
    /// The status `target_url`; `{run_id}` and `{pipeline_id}` are replaced. Default: the run's
    /// API URL under `PUBLIC_URL`.
    #[serde(default)]
    pub github_status_target_url: Option<String>,
    /// GitHub's REST API (GitHub Enterprise: `https://<host>/api/v3`).
    #[serde(default = "default_github_api_url")]
    pub github_api_url: String,
    /// Post commit statuses to GitLab for runs started by GitLab push and merge-request events.
    #[serde(default)]
    pub gitlab_status_enabled: Option<String>,
    /// GitLab's REST API (`https://<host>/api/v4`). Default: derived from the event's
    /// `project.web_url` (https only).
    #[serde(default)]
    pub gitlab_api_url: Option<String>,
    /// The GitLab status `name`. Default: `GITHUB_STATUS_CONTEXT`.
    #[serde(default)]
    pub gitlab_status_context: Option<String>,
    /// Upper bound on one status post, in milliseconds.
    #[serde(default = "default_commit_status_timeout")]
    pub commit_status_timeout_ms: u64,
    /// First retry delay of a failed post, in milliseconds (doubled at each failure).
    #[serde(default = "default_commit_status_retry_base")]
    pub commit_status_retry_base_ms: u64,
    /// Longest retry delay, in seconds.
    #[serde(default = "default_commit_status_retry_max")]
    pub commit_status_retry_max_secs: u64,
    /// Attempts before a status is given up.
    #[serde(default = "default_commit_status_attempts")]
    pub commit_status_max_attempts: u32,
    /// `GITHUB_API_TOKEN[__<owner>]` and `GITLAB_API_TOKEN[__<namespace>]` (not through envy:
    /// the names are open-ended).
    #[serde(skip)]
    forge_tokens: ForgeTokens,
}

/// `true`/`false` as Django settings read them (`True`, `1`, `yes`, `on` count as true).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" | "t" => Ok(true),
        "false" | "0" | "no" | "n" | "off" | "f" | "" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}
fn default_oidc_scopes() -> String {
    "openid profile email".into()
}
fn default_logout_parameter() -> String {
    "post_logout_redirect_uri".into()
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_staff_claim() -> String {
    "groups".into()
}
fn default_login_redirect() -> String {
    "/".into()
}
fn default_session_lifetime() -> u64 {
    12 * 3600
}
fn default_github_issuer() -> String {
    "https://token.actions.githubusercontent.com".into()
}
fn default_gitlab_issuer() -> String {
    "https://gitlab.com".into()
}

/// Forge API tokens from the environment, by forge and scope (`""` = the fallback token).
/// Never printed: `Debug` shows the scopes only.
#[derive(Clone, Default)]
pub struct ForgeTokens(std::collections::HashMap<(statuses::Forge, String), String>);

impl std::fmt::Debug for ForgeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|(forge, scope)| (forge.as_str(), scope)))
            .finish()
    }
}

impl ForgeTokens {
    /// Collects the token variables.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        use statuses::Forge;
        let mut m = std::collections::HashMap::new();
        for (name, value) in vars {
            for (forge, prefix) in [
                (Forge::GitHub, "GITHUB_API_TOKEN"),
                (Forge::GitLab, "GITLAB_API_TOKEN"),
            ] {
                let Some(rest) = name.strip_prefix(prefix) else {
                    continue;
                };
                let scope = match rest {
                    "" => "",
                    r => match r.strip_prefix("__") {
                        Some(s) if !s.is_empty() => s,
                        _ => continue,
                    },
                };
                m.insert((forge, scope.to_string()), value.trim().to_string());
            }
        }
        Self(m)
    }

    /// The token for `scope` (an owner or namespace, case-sensitive), else the fallback.
    pub fn get(&self, forge: statuses::Forge, scope: &str) -> Option<&str> {
        self.0
            .get(&(forge, scope.to_string()))
            .or_else(|| self.0.get(&(forge, String::new())))
            .map(String::as_str)
    }
}

fn default_port() -> u16 {
    8080
}
fn default_bind_address() -> String {
    "127.0.0.1".into()
}
fn default_database_url() -> String {
    "sqlite://application-quality.db?mode=rwc".into()
}
fn default_db_max_connections() -> u32 {
    10
}
fn default_jwt_issuer() -> String {
    "application-quality-api".into()
}
fn default_access_lifetime() -> u64 {
    15 * 60
}
fn default_refresh_lifetime() -> u64 {
    24 * 3600
}
fn default_public_url() -> String {
    "http://localhost:8080".into()
}
fn default_backend_port() -> u16 {
    80
}
fn default_notif_source() -> String {
    "/eoepca/application-quality".into()
}
fn default_notif_prefix() -> String {
    "org.eoepca.application-quality.response".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_request_timeout() -> u64 {
    30
}
fn default_log_format() -> LogFormat {
    LogFormat::Json
}
fn default_settings_file() -> String {
    "settings.yaml".into()
}
fn default_kubernetes() -> KubernetesMode {
    KubernetesMode::Auto
}
fn default_cwltool() -> String {
    "cwltool".into()
}
fn default_local_data_dir() -> String {
    "application-quality-data".into()
}
fn default_local_containers() -> ContainerMode {
    ContainerMode::Auto
}
fn default_local_sandbox() -> SandboxMode {
    SandboxMode::Bwrap
}
fn default_local_sandbox_memory_mib() -> u64 {
    2048
}
fn default_local_sandbox_processes() -> u64 {
    256
}
fn default_local_sandbox_cpu_secs() -> u64 {
    900
}
fn default_local_sandbox_disk_mib() -> u64 {
    1024
}
fn default_runs_namespace() -> String {
    "application-quality-runs".into()
}
fn default_storageclass() -> String {
    "standard".into()
}
fn default_volumesize() -> String {
    "5Gi".into()
}
fn default_calrissian_image() -> String {
    "terradue/calrissian:0.14.0".into()
}
fn default_reporter_image() -> String {
    "curlimages/curl:8.11.1".into()
}
fn default_maxcores() -> String {
    "2".into()
}
fn default_maxram() -> String {
    "2Gi".into()
}
fn default_succeeded_retention() -> i32 {
    600
}
fn default_failed_retention() -> i32 {
    3 * 24 * 3600
}
fn default_kube_timeout_ms() -> u64 {
    5000
}
fn default_run_service_account() -> String {
    "application-quality-calrissian".into()
}
fn default_calrissian_cpu() -> String {
    "250m".into()
}
fn default_calrissian_memory() -> String {
    "256Mi".into()
}
fn default_active_deadline() -> i64 {
    3600
}
fn default_runs_max_active() -> u32 {
    4
}
fn default_runs_max_queued() -> u32 {
    20
}
fn default_run_as() -> i64 {
    1000
}
fn default_repo_url_schemes() -> Vec<String> {
    vec!["https".into()]
}
fn default_repo_low_speed_limit() -> u32 {
    1000
}
fn default_repo_low_speed_time() -> u32 {
    30
}
fn default_repo_connect_timeout() -> u32 {
    30
}
fn default_callback_grace() -> u64 {
    300
}
fn default_callback_max_reports() -> u32 {
    1000
}
fn default_callback_max_report_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_login_failures_per_user() -> u32 {
    5
}
fn default_login_failures_per_address() -> u32 {
    20
}
fn default_pipeline_list_cache() -> u64 {
    1000
}
fn default_event_retention_days() -> u32 {
    30
}
fn default_maintenance_interval() -> u64 {
    3600
}
fn default_maintenance_batch() -> u32 {
    500
}
fn default_auth_user_cache() -> u64 {
    5
}
fn default_login_failure_window() -> u64 {
    5 * 60
}
fn default_events_auth() -> EventsAuth {
    EventsAuth::Off
}
fn default_events_oidc_refresh() -> u64 {
    30
}
fn default_status_context() -> String {
    "EOEPCA Application Quality / Quality Check".into()
}
fn default_github_api_url() -> String {
    "https://api.github.com".into()
}
fn default_commit_status_timeout() -> u64 {
    10_000
}
fn default_commit_status_retry_base() -> u64 {
    2_000
}
fn default_commit_status_retry_max() -> u64 {
    300
}
fn default_commit_status_attempts() -> u32 {
    12
}

/// The reference's reading of a boolean variable.
fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "yes" | "y" | "true" | "1" | "t"
        )
    })
}

/// A configuration problem, reported as one line at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads and validates the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_iter(std::env::vars())
    }

    /// Reads and validates the configuration from the given variables (tests use this).
    // Not `FromIterator`: building a config can fail, and the name mirrors `envy::from_iter`.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Self, ConfigError> {
        // envy fails on empty strings for typed fields; an empty variable means "unset" here.
        let vars: Vec<(String, String)> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let tokens = ForgeTokens::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut config: Config = envy::from_iter(vars).map_err(|e| match e {
            envy::Error::MissingValue(name) => {
                ConfigError(format!("{} is required", name.to_uppercase()))
            }
            envy::Error::Custom(msg) => ConfigError(format!("invalid configuration: {msg}")),
        })?;
        config.forge_tokens = tokens;
        config.validate()?;
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        self.public_url = normalize_origin(&self.public_url).ok_or_else(|| {
            ConfigError(format!(
                "PUBLIC_URL must look like scheme://host[:port], got {:?}",
                self.public_url
            ))
        })?;
        for origin in split_list(&self.cors_allowed_origins) {
            if normalize_origin(origin).is_none() {
                return Err(ConfigError(format!(
                    "CORS_ALLOWED_ORIGINS entries must look like scheme://host[:port], got {origin:?}"
                )));
            }
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "DATABASE_URL must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 32
        {
            return Err(ConfigError(
                "JWT_SECRET must be at least 32 bytes long (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        if self.jwt_access_lifetime_secs == 0 || self.jwt_refresh_lifetime_secs == 0 {
            return Err(ConfigError(
                "JWT_ACCESS_LIFETIME_SECS and JWT_REFRESH_LIFETIME_SECS must be positive".into(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError("MAX_BODY_BYTES must be at least 1024".into()));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError("REQUEST_TIMEOUT_SECS must be positive".into()));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError(
                "DATABASE_MAX_CONNECTIONS must be positive".into(),
            ));
        }
        if self.aqbb_succeeded_retention_secs < 0 || self.aqbb_failed_retention_secs < 0 {
            return Err(ConfigError(
                "AQBB_*_RETENTION_SECS must not be negative".into(),
            ));
        }
        if self.aqbb_active_deadline_secs < 0 {
            return Err(ConfigError(
                "AQBB_ACTIVE_DEADLINE_SECS must not be negative".into(),
            ));
        }
        if self.login_failure_window_secs == 0 {
            return Err(ConfigError(
                "LOGIN_FAILURE_WINDOW_SECS must be positive".into(),
            ));
        }
        if !(1..=10_000).contains(&self.maintenance_batch_size) {
            return Err(ConfigError(
                "MAINTENANCE_BATCH_SIZE must be between 1 and 10000".into(),
            ));
        }
        for (name, days) in [
            ("EVENT_RETENTION_DAYS", self.event_retention_days),
            ("RUN_RETENTION_DAYS", self.run_retention_days),
            ("JOB_REPORT_RETENTION_DAYS", self.job_report_retention_days),
        ] {
            if days > 36_500 {
                return Err(ConfigError(format!(
                    "{name} must be at most 36500 days (0 keeps forever)"
                )));
            }
        }
        if self.kube_timeout_ms == 0 {
            return Err(ConfigError("KUBE_TIMEOUT_MS must be positive".into()));
        }
        self.validate_events_auth()?;
        self.validate_oidc()?;
        if let Some(url) = &self.local_callback_url
            && normalize_origin(url).is_none()
        {
            return Err(ConfigError(format!(
                "LOCAL_CALLBACK_URL must look like scheme://host[:port], got {url:?}"
            )));
        }
        for (name, value, min) in [
            (
                "LOCAL_SANDBOX_MEMORY_MIB",
                self.local_sandbox_memory_mib,
                64,
            ),
            ("LOCAL_SANDBOX_PROCESSES", self.local_sandbox_processes, 16),
            ("LOCAL_SANDBOX_CPU_SECS", self.local_sandbox_cpu_secs, 1),
            ("LOCAL_SANDBOX_DISK_MIB", self.local_sandbox_disk_mib, 16),
        ] {
            if value < min || value > (1 << 40) {
                return Err(ConfigError(format!(
                    "{name} must be between {min} and {}, got {value}",
                    1u64 << 40
                )));
            }
        }
        if self.local_data_dir.trim().is_empty() {
            return Err(ConfigError("LOCAL_DATA_DIR must not be empty".into()));
        }
        self.validate_statuses()?;
        self.validate_runs()?;
        if !is_dns_label(&self.aqbb_namespace) {
            return Err(ConfigError(format!(
                "AQBB_NAMESPACE must be a DNS label (lower-case letters, digits, '-'), got {:?}",
                self.aqbb_namespace
            )));
        }
        Ok(())
    }

    /// Run isolation settings: repository URL schemes known, `file` roots absolute existing
    /// directories (kept canonical, so `..` and symbolic links cannot lead out of them), the
    /// pods' user not root, git's timeouts and the callback quotas positive.
    fn validate_runs(&mut self) -> Result<(), ConfigError> {
        let mut schemes = Vec::new();
        for scheme in &self.repo_url_schemes {
            let scheme = scheme.trim().to_ascii_lowercase();
            if scheme.is_empty() || schemes.contains(&scheme) {
                continue;
            }
            if !REPO_SCHEMES.contains(&scheme.as_str()) {
                return Err(ConfigError(format!(
                    "REPO_URL_SCHEMES: unknown scheme {scheme:?} (known: {})",
                    REPO_SCHEMES.join(", ")
                )));
            }
            schemes.push(scheme);
        }
        self.repo_url_schemes = schemes;
        let mut roots = Vec::new();
        for root in &self.repo_file_roots {
            let text = root.to_string_lossy();
            let trimmed = std::path::PathBuf::from(text.trim());
            if trimmed.as_os_str().is_empty() {
                continue;
            }
            if !trimmed.is_absolute() {
                return Err(ConfigError(format!(
                    "REPO_FILE_ROOTS entries must be absolute directories, got {trimmed:?}"
                )));
            }
            let canonical = trimmed
                .canonicalize()
                .ok()
                .filter(|p| p.is_dir())
                .ok_or_else(|| {
                    ConfigError(format!(
                        "REPO_FILE_ROOTS: {trimmed:?} is not an existing directory"
                    ))
                })?;
            if !roots.contains(&canonical) {
                roots.push(canonical);
            }
        }
        self.repo_file_roots = roots;
        if !self.repo_file_roots.is_empty() && !self.repo_url_schemes.iter().any(|s| s == "file") {
            return Err(ConfigError(
                "REPO_FILE_ROOTS is set but REPO_URL_SCHEMES does not allow file".into(),
            ));
        }
        if self.aqbb_run_as_user <= 0 || self.aqbb_run_as_group < 0 {
            return Err(ConfigError(
                "AQBB_RUN_AS_USER must be a positive user id (runs never run as root) and AQBB_RUN_AS_GROUP not negative".into(),
            ));
        }
        if self.repo_low_speed_limit == 0
            || self.repo_low_speed_time_secs == 0
            || self.repo_connect_timeout_secs == 0
        {
            return Err(ConfigError(
                "REPO_LOW_SPEED_LIMIT, REPO_LOW_SPEED_TIME_SECS and REPO_CONNECT_TIMEOUT_SECS must be positive".into(),
            ));
        }
        if self.callback_max_reports_per_run == 0 || self.callback_max_report_bytes_per_run == 0 {
            return Err(ConfigError(
                "CALLBACK_MAX_REPORTS_PER_RUN and CALLBACK_MAX_REPORT_BYTES_PER_RUN must be positive".into(),
            ));
        }
        Ok(())
    }

    /// `EVENTS_AUTH=oidc` needs an issuer and an audience; the issuer and JWKS URLs must be
    /// https (plain http only to a loopback address, for tests and port-forwards).
    fn validate_events_auth(&self) -> Result<(), ConfigError> {
        if self.events_auth == EventsAuth::Off {
            return Ok(());
        }
        let Some(issuer) = &self.events_oidc_issuer else {
            return Err(ConfigError(
                "EVENTS_OIDC_ISSUER is required with EVENTS_AUTH=oidc".into(),
            ));
        };
        if self.events_oidc_audience.is_none() {
            return Err(ConfigError(
                "EVENTS_OIDC_AUDIENCE is required with EVENTS_AUTH=oidc".into(),
            ));
        }
        for (name, value) in [
            ("EVENTS_OIDC_ISSUER", Some(issuer)),
            ("EVENTS_OIDC_JWKS_URL", self.events_oidc_jwks_url.as_ref()),
        ] {
            if let Some(value) = value
                && !url::Url::parse(value).is_ok_and(|u| is_secure_or_loopback(&u))
            {
                return Err(ConfigError(format!(
                    "{name} must be an https:// URL (http:// only to a loopback address), got {value:?}"
                )));
            }
        }
        Ok(())
    }

    /// Sign-in settings: with `OIDC_ENABLED`, a client id and secret and either a discovery URL
    /// or an issuer; every IAM and CI URL https (http only to loopback).
    fn validate_oidc(&self) -> Result<(), ConfigError> {
        if self.session_lifetime_secs == 0 {
            return Err(ConfigError("SESSION_LIFETIME_SECS must be positive".into()));
        }
        let urls = [
            (
                "OIDC_CONNECT_CONFIG_URL",
                self.oidc_connect_config_url.as_ref(),
            ),
            ("OIDC_ISSUER", self.oidc_issuer.as_ref()),
            (
                "OIDC_OP_AUTHORIZATION_ENDPOINT",
                self.oidc_op_authorization_endpoint.as_ref(),
            ),
            (
                "OIDC_OP_TOKEN_ENDPOINT",
                self.oidc_op_token_endpoint.as_ref(),
            ),
            ("OIDC_OP_JWKS_ENDPOINT", self.oidc_op_jwks_endpoint.as_ref()),
            (
                "OIDC_OP_LOGOUT_ENDPOINT",
                self.oidc_op_logout_endpoint.as_ref(),
            ),
            ("CI_GITHUB_ISSUER", Some(&self.ci_github_issuer)),
            ("CI_GITLAB_ISSUER", Some(&self.ci_gitlab_issuer)),
        ];
        for (name, value) in urls {
            if let Some(value) = value
                && !url::Url::parse(value).is_ok_and(|u| is_secure_or_loopback(&u))
            {
                return Err(ConfigError(format!(
                    "{name} must be an https:// URL (http:// only to a loopback address), got {value:?}"
                )));
            }
        }
        if self.oidc_rp_sign_algo.as_deref().is_some_and(|a| {
            a.parse::<jsonwebtoken::Algorithm>().ok().is_none_or(|a| {
                matches!(
                    a,
                    jsonwebtoken::Algorithm::HS256
                        | jsonwebtoken::Algorithm::HS384
                        | jsonwebtoken::Algorithm::HS512
                )
            })
        }) {
            return Err(ConfigError(
                "OIDC_RP_SIGN_ALGO must name an asymmetric JWS algorithm such as RS256".into(),
            ));
        }
        if self.oidc_enabled {
            if self.oidc_rp_client_id.is_none() || self.oidc_rp_client_secret.is_none() {
                return Err(ConfigError(
                    "OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET are required with OIDC_ENABLED=true"
                        .into(),
                ));
            }
            if self.oidc_issuer().is_none() {
                return Err(ConfigError(
                    "OIDC_CONNECT_CONFIG_URL (or OIDC_ISSUER) is required with OIDC_ENABLED=true"
                        .into(),
                ));
            }
            if !self
                .oidc_rp_scopes
                .split_whitespace()
                .any(|s| s == "openid")
            {
                return Err(ConfigError("OIDC_RP_SCOPES must include openid".into()));
            }
        }
        if let Some(policies) = &self.ci_oidc_policies {
            auth::CiPolicy::parse_list(policies)
                .map_err(|e| ConfigError(format!("CI_OIDC_POLICIES: {e}")))?;
        }
        Ok(())
    }

    /// Whether unauthenticated events are accepted from any peer: `EVENTS_AUTH=off` with
    /// `EVENTS_TRUST_NETWORK=true`. Otherwise, with `EVENTS_AUTH=off`, only from loopback.
    pub fn events_from_any_peer(&self) -> bool {
        self.events_auth == EventsAuth::Off && self.events_trust_network
    }

    /// The serving address check of `serve`: with unauthenticated events (`EVENTS_AUTH=off`),
    /// a listener on a non-loopback address would let anyone who reaches the port start runs
    /// as any user, so it is refused unless `EVENTS_TRUST_NETWORK=true` says that network is
    /// trusted. Checked on the address actually bound, so host names resolve as they bind.
    pub fn check_listener(&self, bound: std::net::SocketAddr) -> Result<(), ConfigError> {
        if self.events_auth == EventsAuth::Oidc
            || self.events_trust_network
            || is_loopback_ip(bound.ip())
        {
            return Ok(());
        }
        Err(ConfigError(format!(
            "BIND_ADDRESS={} listens on {bound}, beyond this machine, while CloudEvents are unauthenticated (EVENTS_AUTH=off): anyone reaching it could start runs as any user; set EVENTS_AUTH=oidc (docs/events.md), bind 127.0.0.1, or set EVENTS_TRUST_NETWORK=true if every sender on that network is trusted",
            self.bind_address
        )))
    }

    /// The IAM's issuer: `OIDC_ISSUER`, else the discovery URL without its well-known suffix.
    pub fn oidc_issuer(&self) -> Option<String> {
        self.oidc_issuer.clone().or_else(|| {
            self.oidc_connect_config_url.as_deref().map(|u| {
                u.trim_end_matches('/')
                    .trim_end_matches("/.well-known/openid-configuration")
                    .to_string()
            })
        })
    }

    /// The `redirect_uri` of the sign-in.
    pub fn oidc_redirect_uri(&self) -> String {
        self.oidc_rp_redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{}/oidc/callback/", self.public_url))
    }

    /// Whether cookies get the `Secure` attribute.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The executor choice, with an unset `EXECUTOR` following `KUBERNETES`.
    pub fn executor_mode(&self) -> ExecutorMode {
        self.executor.unwrap_or(match self.kubernetes {
            KubernetesMode::On => ExecutorMode::Kubernetes,
            KubernetesMode::Off => ExecutorMode::Off,
            KubernetesMode::Auto => ExecutorMode::Auto,
        })
    }

    /// Runs the local runner executes at once.
    pub fn local_concurrency(&self) -> usize {
        match self.local_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Commit-status settings: API URLs are https (http only to loopback), bounds positive.
    fn validate_statuses(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("GITHUB_API_URL", Some(&self.github_api_url)),
            ("GITLAB_API_URL", self.gitlab_api_url.as_ref()),
        ] {
            if let Some(value) = value
                && !url::Url::parse(value).is_ok_and(|u| is_secure_or_loopback(&u))
            {
                return Err(ConfigError(format!(
                    "{name} must be an https:// URL (http:// only to a loopback address), got {value:?}"
                )));
            }
        }
        if self.commit_status_timeout_ms == 0
            || self.commit_status_retry_base_ms == 0
            || self.commit_status_max_attempts == 0
        {
            return Err(ConfigError(
                "COMMIT_STATUS_TIMEOUT_MS, COMMIT_STATUS_RETRY_BASE_MS and COMMIT_STATUS_MAX_ATTEMPTS must be positive".into(),
            ));
        }
        if self.github_status_context.chars().count() > 255 {
            return Err(ConfigError(
                "GITHUB_STATUS_CONTEXT is longer than 255 characters".into(),
            ));
        }
        Ok(())
    }

    /// The forge API tokens (`GITHUB_API_TOKEN[__<owner>]`, `GITLAB_API_TOKEN[__<namespace>]`).
    pub fn forge_tokens(&self) -> &ForgeTokens {
        &self.forge_tokens
    }

    /// Whether GitHub statuses are on (`GITHUB_STATUS_ENABLED`).
    pub fn github_status_enabled(&self) -> bool {
        truthy(self.github_status_enabled.as_deref())
    }

    /// Whether GitLab statuses are on (`GITLAB_STATUS_ENABLED`).
    pub fn gitlab_status_enabled(&self) -> bool {
        truthy(self.gitlab_status_enabled.as_deref())
    }

    /// The status context (GitHub) or name (GitLab).
    pub fn status_context(&self, forge: statuses::Forge) -> &str {
        match (forge, &self.gitlab_status_context) {
            (statuses::Forge::GitLab, Some(c)) => c,
            _ => &self.github_status_context,
        }
    }

    /// Whether the configured store is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Whether migrations run at start-up.
    pub fn auto_migrate(&self) -> bool {
        self.database_auto_migrate.unwrap_or(self.is_sqlite())
    }

    /// Base URL pipeline pods use to call back (`server_url` in the CWL parameters).
    pub fn callback_base_url(&self) -> String {
        match &self.backend_service_host {
            Some(host) => format!("http://{host}:{}", self.backend_service_port),
            None => self.public_url.clone(),
        }
    }

    /// Hosts accepted in the `Host` header (lower case, ports stripped).
    pub fn allowed_hosts(&self) -> Vec<String> {
        let mut hosts = Vec::new();
        if let Ok(url) = url::Url::parse(&self.public_url)
            && let Some(host) = url.host_str()
        {
            hosts.push(host.to_ascii_lowercase());
        }
        if let Some(host) = &self.backend_service_host {
            hosts.push(host.to_ascii_lowercase());
        }
        hosts.extend(split_list(&self.additional_allowed_hosts).map(|h| h.to_ascii_lowercase()));
        hosts
    }

    /// Origins allowed by CORS: `PUBLIC_URL` plus `CORS_ALLOWED_ORIGINS`.
    pub fn cors_origins(&self) -> Vec<String> {
        let mut origins = vec![self.public_url.clone()];
        origins.extend(split_list(&self.cors_allowed_origins).filter_map(normalize_origin));
        origins
    }

    /// Login failure window as a duration.
    pub fn login_failure_window(&self) -> Duration {
        Duration::from_secs(self.login_failure_window_secs)
    }

    /// Request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// Splits a comma-separated list, trimming blanks.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// `scheme://host[:port]` with an optional trailing slash, returned without it; anything with a
/// path, query, credentials or a non-http scheme is refused.
fn normalize_origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !s.trim_end_matches('/').ends_with('?');
    plain.then(|| url.origin().ascii_serialization())
}

/// A loopback address, IPv4-mapped IPv6 included (`::ffff:127.0.0.1`, what a dual-stack
/// listener reports for an IPv4 loopback peer).
pub fn is_loopback_ip(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// An https URL, or an http one to a loopback address (nothing on the wire to tamper with).
pub fn is_secure_or_loopback(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_are_valid() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert!(c.is_sqlite() && c.auto_migrate());
        assert_eq!(c.public_url, "http://localhost:8080");
        assert_eq!(c.kubernetes, KubernetesMode::Auto);
    }

    #[test]
    fn run_isolation_defaults_are_the_safe_ones() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.repo_url_schemes, ["https"]);
        assert!(c.repo_file_roots.is_empty());
        assert_eq!((c.aqbb_run_as_user, c.aqbb_run_as_group), (1000, 1000));
        assert!(!c.aqbb_workdir_chown);
        assert_eq!(
            (
                c.repo_low_speed_limit,
                c.repo_low_speed_time_secs,
                c.repo_connect_timeout_secs
            ),
            (1000, 30, 30)
        );
        assert_eq!(c.callback_grace_secs, 300);
        assert_eq!(c.callback_max_reports_per_run, 1000);
        assert_eq!(c.callback_max_report_bytes_per_run, 64 * 1024 * 1024);
        for (name, bad) in [
            ("AQBB_RUN_AS_USER", "0"),
            ("AQBB_RUN_AS_GROUP", "-1"),
            ("REPO_URL_SCHEMES", "https,gopher"),
            ("REPO_LOW_SPEED_TIME_SECS", "0"),
            ("CALLBACK_MAX_REPORTS_PER_RUN", "0"),
        ] {
            let err = cfg(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn executor_follows_kubernetes_unless_set() {
        let mode = |vars: &[(&str, &str)]| cfg(vars).unwrap().executor_mode();
        assert_eq!(mode(&[]), ExecutorMode::Auto);
        assert_eq!(mode(&[("KUBERNETES", "on")]), ExecutorMode::Kubernetes);
        assert_eq!(mode(&[("KUBERNETES", "off")]), ExecutorMode::Off);
        assert_eq!(
            mode(&[("KUBERNETES", "off"), ("EXECUTOR", "local")]),
            ExecutorMode::Local
        );
        let c = cfg(&[("LOCAL_CONCURRENCY", "3")]).unwrap();
        assert_eq!(c.local_concurrency(), 3);
        assert!(cfg(&[]).unwrap().local_concurrency() >= 1);
        assert_eq!(cfg(&[]).unwrap().local_containers, ContainerMode::Auto);
        assert!(cfg(&[("LOCAL_CALLBACK_URL", "not a url")]).is_err());
        assert!(cfg(&[("EXECUTOR", "maybe")]).is_err());
    }

    #[test]
    fn login_limits() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            (
                c.login_max_failures_per_user,
                c.login_max_failures_per_address,
                c.login_failure_window_secs,
                c.trusted_proxy_headers,
            ),
            (5, 20, 300, false)
        );
        let c = cfg(&[
            ("TRUSTED_PROXY_HEADERS", "true"),
            ("LOGIN_MAX_FAILURES_PER_USER", "0"),
        ])
        .unwrap();
        assert!(c.trusted_proxy_headers);
        assert_eq!(c.login_max_failures_per_user, 0);
        let err = cfg(&[("LOGIN_FAILURE_WINDOW_SECS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOGIN_FAILURE_WINDOW_SECS"), "{err}");
    }

    #[test]
    fn events_auth() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.events_auth, EventsAuth::Off);
        assert_eq!(c.events_oidc_refresh_interval_secs, 30);
        let err = cfg(&[("EVENTS_AUTH", "oidc")]).unwrap_err().to_string();
        assert!(err.contains("EVENTS_OIDC_ISSUER"), "{err}");
        let issuer = (
            "EVENTS_OIDC_ISSUER",
            "https://kubernetes.default.svc.cluster.local",
        );
        let err = cfg(&[("EVENTS_AUTH", "oidc"), issuer])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EVENTS_OIDC_AUDIENCE"), "{err}");
        let audience = ("EVENTS_OIDC_AUDIENCE", "aq");
        let c = cfg(&[("EVENTS_AUTH", "oidc"), issuer, audience]).unwrap();
        assert_eq!(c.events_auth, EventsAuth::Oidc);
        for (name, bad) in [
            ("EVENTS_OIDC_ISSUER", "http://issuer.example.org"),
            ("EVENTS_OIDC_ISSUER", "not a url"),
            ("EVENTS_OIDC_JWKS_URL", "ftp://127.0.0.1/keys"),
            ("EVENTS_OIDC_JWKS_URL", "http://10.0.0.1/keys"),
        ] {
            let mut vars = vec![("EVENTS_AUTH", "oidc"), issuer, audience];
            vars.retain(|(k, _)| *k != name);
            vars.push((name, bad));
            let err = cfg(&vars).unwrap_err().to_string();
            assert!(err.starts_with(name), "{bad}: {err}");
        }
        let c = cfg(&[
            ("EVENTS_AUTH", "oidc"),
            ("EVENTS_OIDC_ISSUER", "http://127.0.0.1:8443"),
            ("EVENTS_OIDC_JWKS_URL", "http://[::1]:8443/keys"),
            audience,
        ]);
        assert!(c.is_ok());
        let err = cfg(&[("EVENTS_AUTH", "basic")]).unwrap_err().to_string();
        assert!(err.contains("basic"), "{err}");
    }

    #[test]
    fn unauthenticated_events_stay_on_loopback_unless_trusted() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.bind_address, "127.0.0.1");
        assert!(!c.events_trust_network && !c.events_from_any_peer());
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
            "127.0.0.2:1",
        ] {
            assert!(c.check_listener(addr(ok)).is_ok(), "{ok}");
        }
        for bad in ["0.0.0.0:8080", "[::]:8080", "192.0.2.2:8080"] {
            let err = c.check_listener(addr(bad)).unwrap_err().to_string();
            assert!(
                err.contains("EVENTS_AUTH=oidc") && err.contains("EVENTS_TRUST_NETWORK=true"),
                "{err}"
            );
        }
        let trusted = cfg(&[("EVENTS_TRUST_NETWORK", "true")]).unwrap();
        assert!(trusted.events_from_any_peer());
        assert!(trusted.check_listener(addr("0.0.0.0:8080")).is_ok());
        let oidc = cfg(&[
            ("EVENTS_AUTH", "oidc"),
            (
                "EVENTS_OIDC_ISSUER",
                "https://kubernetes.default.svc.cluster.local",
            ),
            ("EVENTS_OIDC_AUDIENCE", "aq"),
            ("EVENTS_TRUST_NETWORK", "true"),
        ])
        .unwrap();
        assert!(!oidc.events_from_any_peer(), "authentication still applies");
        assert!(oidc.check_listener(addr("0.0.0.0:8080")).is_ok());
        assert!(cfg(&[("EVENTS_TRUST_NETWORK", "sometimes")]).is_err());
    }

    #[test]
    fn fair_share_defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            (
                c.runs_max_active_per_user,
                c.runs_max_queued_per_user,
                c.aqbb_active_deadline_secs
            ),
            (4, 20, 3600)
        );
        assert!(!c.oidc_link_by_username);
    }

    #[test]
    fn oidc_settings() {
        let c = cfg(&[]).unwrap();
        assert!(!c.oidc_enabled);
        assert_eq!(c.oidc_rp_scopes, "openid profile email");
        assert_eq!(
            c.oidc_redirect_uri(),
            "http://localhost:8080/oidc/callback/"
        );
        let discovery = (
            "OIDC_CONNECT_CONFIG_URL",
            "https://iam.example.org/realms/eoepca/.well-known/openid-configuration",
        );
        let err = cfg(&[("OIDC_ENABLED", "true"), discovery])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OIDC_RP_CLIENT_ID"), "{err}");
        let client = [("OIDC_RP_CLIENT_ID", "aq"), ("OIDC_RP_CLIENT_SECRET", "s")];
        let err = cfg(&[("OIDC_ENABLED", "True"), client[0], client[1]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OIDC_CONNECT_CONFIG_URL"), "{err}");
        let c = cfg(&[("OIDC_ENABLED", "True"), client[0], client[1], discovery]).unwrap();
        assert!(c.oidc_enabled);
        assert_eq!(
            c.oidc_issuer().as_deref(),
            Some("https://iam.example.org/realms/eoepca")
        );
        for (name, bad) in [
            ("OIDC_ENABLED", "maybe"),
            ("OIDC_CONNECT_CONFIG_URL", "http://iam.example.org/x"),
            ("OIDC_RP_SIGN_ALGO", "HS256"),
            ("OIDC_RP_SIGN_ALGO", "nonsense"),
            ("OIDC_RP_SCOPES", "profile email"),
            ("SESSION_LIFETIME_SECS", "0"),
            ("CI_GITHUB_ISSUER", "http://github.example"),
            ("CI_OIDC_POLICIES", "[{}]"),
        ] {
            let mut vars = vec![("OIDC_ENABLED", "true"), client[0], client[1], discovery];
            vars.retain(|(k, _)| *k != name);
            vars.push((name, bad));
            let err = cfg(&vars).unwrap_err().to_string();
            assert!(
                err.contains(name) || err.contains(bad),
                "{name}={bad}: {err}"
            );
        }
        assert!(cfg(&[("OIDC_RP_SIGN_ALGO", "ES256")]).is_ok());
    }

    #[test]
    fn public_url_must_be_an_origin() {
        for bad in [
            "example.org",
            "http://x.org/api",
            "ftp://x.org",
            "http://",
            "http://x.org?a=1",
        ] {
            let err = cfg(&[("PUBLIC_URL", bad)]).unwrap_err().to_string();
            assert!(
                err.starts_with("PUBLIC_URL must look like scheme://host[:port]"),
                "{bad}: {err}"
            );
        }
        let c = cfg(&[("PUBLIC_URL", "https://AQ.example.org:8443/")]).unwrap();
        assert_eq!(c.public_url, "https://aq.example.org:8443");
    }

    #[test]
    fn typed_errors_name_the_variable() {
        let err = cfg(&[("PORT", "eighty")]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = cfg(&[("JWT_SECRET", "short")]).unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
        let err = cfg(&[("DATABASE_URL", "mysql://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn allowed_hosts_and_callback() {
        let c = cfg(&[
            ("PUBLIC_URL", "https://aq.example.org"),
            ("BACKEND_SERVICE_HOST", "aq-api.ns.svc.cluster.local"),
            ("ADDITIONAL_ALLOWED_HOSTS", " .example.net , ci.local"),
        ])
        .unwrap();
        assert_eq!(
            c.allowed_hosts(),
            [
                "aq.example.org",
                "aq-api.ns.svc.cluster.local",
                ".example.net",
                "ci.local"
            ]
        );
        assert_eq!(
            c.callback_base_url(),
            "http://aq-api.ns.svc.cluster.local:80"
        );
    }
}
