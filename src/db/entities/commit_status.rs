//! `aq_commit_status`: the outbox of commit statuses for GitHub and GitLab. A row is written in
//! the transaction that changes the run, and delivered after commit (see [`crate::statuses`]).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "aq_commit_status")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: Option<i64>,
    /// `github` or `gitlab`.
    pub forge: String,
    /// Base URL of the forge's REST API (`https://api.github.com`, `https://gitlab.com/api/v4`).
    pub api_url: String,
    /// `owner/repo` (GitHub) or the numeric project id (GitLab).
    pub repository: String,
    /// Which `*_API_TOKEN__<scope>` variable is tried first: the owner or top-level namespace.
    /// The token itself is never stored.
    pub token_scope: String,
    pub sha: String,
    pub context: String,
    /// The forge's own state name (`pending`, `success`, `failure` / `failed`).
    pub state: String,
    pub description: String,
    pub target_url: Option<String>,
    /// `queued`, `delivered` or `failed` (given up).
    pub outcome: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    /// A replica delivering this row holds it until then.
    pub lease_until: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
