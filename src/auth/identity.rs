//! Identities from other issuers: the IAM (OpenID Connect: the browser sign-in's ID tokens and
//! access tokens on the REST API) and CI workload identities (GitHub Actions and GitLab CI ID
//! tokens), each verified by an [`Issuer`] (lazily discovered, cached keys).
//!
//! IAM users are local users linked to their identity by `(iss, sub)` (`aq_identity`), created
//! on the identity's first sign-in (username from `OIDC_PREFERRED_USERNAME_CLAIM_FIELD`) and
//! updated from the claims (staff from `OIDC_STAFF_CLAIM`/`OIDC_STAFF_VALUES`). Unlike the
//! reference, a username never makes an identity into an existing account: a name that is
//! taken gets an account of its own (`docs/access.md` has the rules, adoption included).
//!
//! CI tokens never create users: a policy (`CI_OIDC_POLICIES`) maps claims such as
//! `repository` and `ref` to an existing local user, in the manner of trusted publishing, so CI
//! needs neither a stored password nor a token handed between jobs.

use super::oidc::{Audience, Issuer, IssuerOptions};
pub use crate::config::auth::{CiKind, CiPolicy};
use crate::{
    config::Config,
    db::entities::{identity, user},
    error::AppError,
};
use anyhow::Context;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter, TransactionTrait,
};
use serde_json::{Map, Value};
use std::{path::PathBuf, time::Duration};

/// Shortest time between two key fetches caused by unknown key ids.
const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
impl CiPolicy {
    fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.claims.iter().all(|(name, want)| {
            let have = match claims.get(name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => return false,
            };
            match want.strip_suffix('*') {
                Some(prefix) => have.starts_with(prefix),
                None => &have == want,
            }
        })
    }
}

/// The IAM as an OpenID Connect client sees it.
pub struct Iam {
    /// Its tokens' verifier (and discovery document).
    pub issuer: Issuer,
    /// Our client id.
    pub client_id: String,
    /// Our client secret.
    pub client_secret: String,
    /// Requested scopes.
    pub scopes: String,
    /// The registered callback.
    pub redirect_uri: String,
    /// Endpoint overrides.
    pub authorization_endpoint: Option<String>,
    /// Token endpoint override.
    pub token_endpoint: Option<String>,
    /// Logout endpoint override.
    pub logout_endpoint: Option<String>,
    /// Where the IAM sends the browser after logout.
    pub post_logout_redirect: String,
    /// Name of that parameter.
    pub logout_parameter: String,
    /// After sign-in.
    pub login_redirect: String,
    /// After logout without an end-session endpoint.
    pub logout_redirect: String,
    username_claim: String,
    link_by_username: bool,
    staff_claim: String,
    staff_values: Vec<String>,
    api_audiences: Vec<String>,
}

impl Iam {
    /// Verifies an ID token of the sign-in (audience: our client id) and its nonce.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, AppError> {
        let claims = self
            .issuer
            .verify(token, Audience::Exactly(&self.client_id))
            .await?;
        let azp_ok = match claims.get("aud") {
            // With several audiences, `azp` must be us (OpenID Connect Core 3.1.3.7).
            Some(Value::Array(a)) if a.len() > 1 => {
                claims.get("azp").and_then(Value::as_str) == Some(self.client_id.as_str())
            }
            _ => true,
        };
        if !azp_ok {
            return Err(AppError::Unauthorized(
                "The ID token was issued to another client (azp).".into(),
            ));
        }
        let token_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            token_nonce.as_bytes(),
            nonce.as_bytes(),
        )) {
            return Err(AppError::Unauthorized(
                "The ID token's nonce does not match this sign-in.".into(),
            ));
        }
        Ok(claims)
    }

    /// The local user of an IAM identity, found by its `(iss, sub)` link; on the identity's
    /// first sign-in (browser or access token) linked as [`Iam::link_first_sign_in`] decides.
    /// Then its e-mail and (with a staff rule) staff status are updated from the claims, and
    /// an inactive user is refused. `signing_in`: the claims are an ID token's, where a missing
    /// staff claim means "not staff"; an access token may simply not carry it (a Keycloak
    /// mapper added to the ID token only), so there a missing claim leaves staff status as the
    /// last sign-in set it.
    pub async fn upsert_user(
        &self,
        db: &DatabaseConnection,
        claims: &Map<String, Value>,
        signing_in: bool,
    ) -> Result<user::Model, AppError> {
        let (issuer, subject) = identity_key(claims)?;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(254)
            .collect::<String>();
        let staff = self
            .staff_rule(claims)
            .filter(|_| signing_in || self.staff_claim_of(claims).is_some());
        let found = match linked_user(db, issuer, subject).await? {
            Some(u) => u,
            None => {
                self.link_first_sign_in(db, issuer, subject, claims, staff, &email)
                    .await?
            }
        };
        if !found.is_active {
            return Err(AppError::Unauthorized("User is inactive".into()));
        }
        let new_staff = staff.unwrap_or(found.is_staff);
        let new_email = if email.is_empty() {
            found.email.clone()
        } else {
            email
        };
        if new_staff == found.is_staff && new_email == found.email {
            return Ok(found);
        }
        let mut active = found.into_active_model();
        active.is_staff = Set(new_staff);
        active.email = Set(new_email);
        Ok(active.update(db).await?)
    }

    /// The username an identity asks for (`OIDC_PREFERRED_USERNAME_CLAIM_FIELD`, else `sub`),
    /// checked like local usernames.
    fn username_of<'a>(&self, claims: &'a Map<String, Value>) -> Result<&'a str, AppError> {
        let username = claims
            .get(&self.username_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| claims.get("sub").and_then(Value::as_str))
            .unwrap_or_default();
        if !user::valid_username(username) {
            return Err(AppError::Unauthorized(format!(
                "The identity's username {:?} (claim {}) is not a valid username (up to 150 letters, digits and @.+-_).",
                username.chars().take(160).collect::<String>(),
                self.username_claim
            )));
        }
        Ok(username)
    }

    /// The first sign-in of an identity: which account it gets, linked in the same
    /// transaction as the account is created or chosen.
    ///
    /// - Nobody has its username: a new account of that name.
    /// - The account of that name was created by an earlier sign-in through the provider
    ///   (unusable password `!`, no link yet: accounts from before identities were linked) and
    ///   is adopted, once. A name match never grants staff: the account keeps staff status only
    ///   when the staff rule gives it to this identity.
    /// - With `OIDC_LINK_BY_USERNAME`, any account of that name without a link is taken, but a
    ///   staff account only when the staff rule makes this identity staff.
    /// - Otherwise the name belongs to someone else (a local account, another identity's):
    ///   a new account named `<username>-2` (`-3`, ...), never the existing one.
    async fn link_first_sign_in(
        &self,
        db: &DatabaseConnection,
        issuer: &str,
        subject: &str,
        claims: &Map<String, Value>,
        staff: Option<bool>,
        email: &str,
    ) -> Result<user::Model, AppError> {
        let username = self.username_of(claims)?;
        // A concurrent first sign-in (of this identity, or taking the same name or account)
        // makes an insert fail on a unique key: look again, a few times at most.
        for _ in 0..3 {
            let txn = db.begin().await?;
            let linked = async {
                let user = self.choose_account(&txn, username, staff, email).await?;
                identity::ActiveModel {
                    issuer: Set(issuer.to_owned()),
                    subject: Set(subject.to_owned()),
                    user_id: Set(user.id),
                    created_at: Set(chrono::Utc::now()),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
                Ok::<_, LinkError>(user)
            }
            .await;
            match linked {
                Ok(user) => {
                    txn.commit().await?;
                    return Ok(user);
                }
                Err(LinkError::Db(e)) if crate::db::is_unique_violation(&e) => {
                    txn.rollback().await?;
                    if let Some(u) = linked_user(db, issuer, subject).await? {
                        return Ok(u);
                    }
                }
                Err(e) => {
                    txn.rollback().await?;
                    return Err(e.into());
                }
            }
        }
        Err(AppError::Unavailable {
            detail: "Concurrent sign-ins of this identity collided; retry.".into(),
            retry_after: 1,
        })
    }

    /// The account a new identity named `username` gets (see [`Iam::link_first_sign_in`]).
    async fn choose_account(
        &self,
        txn: &DatabaseTransaction,
        username: &str,
        staff: Option<bool>,
        email: &str,
    ) -> Result<user::Model, LinkError> {
        let Some(existing) = user_named(txn, username).await? else {
            return Ok(new_iam_user(txn, username, email, staff).await?);
        };
        let unlinked = identity::Entity::find()
            .filter(identity::Column::UserId.eq(existing.id))
            .one(txn)
            .await?
            .is_none();
        if unlinked && existing.password == IAM_PASSWORD {
            let keeps_staff = existing.is_staff && staff == Some(true);
            tracing::warn!(
                username,
                staff = keeps_staff,
                "adopting an account created by an earlier sign-in through the identity provider (once: it is linked to this identity from now on)"
            );
            if existing.is_staff && !keeps_staff {
                tracing::warn!(
                    username,
                    "staff status removed from the adopted account: a name match never grants it (set OIDC_STAFF_VALUES, or restore it in the database)"
                );
                let mut am = existing.into_active_model();
                am.is_staff = Set(false);
                return Ok(am.update(txn).await?);
            }
            return Ok(existing);
        }
        if unlinked && self.link_by_username && (!existing.is_staff || staff == Some(true)) {
            tracing::warn!(
                username,
                "linking an identity to an existing account by its username (OIDC_LINK_BY_USERNAME)"
            );
            return Ok(existing);
        }
        for n in 2..2 + MAX_NAME_ATTEMPTS {
            let suffix = format!("-{n}");
            let base: String = username
                .chars()
                .take(user::MAX_USERNAME_LEN - suffix.len())
                .collect();
            let candidate = format!("{base}{suffix}");
            if user_named(txn, &candidate).await?.is_none() {
                tracing::warn!(
                    username,
                    account = %candidate,
                    "an identity's username is another account's: it gets an account of its own"
                );
                return Ok(new_iam_user(txn, &candidate, email, staff).await?);
            }
        }
        Err(LinkError::App(AppError::Unauthorized(format!(
            "The username {username:?} and {MAX_NAME_ATTEMPTS} variants of it are taken by other accounts; ask an administrator."
        ))))
    }

    /// The staff claim (a dotted path), if present.
    fn staff_claim_of<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let mut parts = self.staff_claim.split('.');
        let mut value = claims.get(parts.next().unwrap_or(""));
        for part in parts {
            value = value.and_then(|v| v.get(part));
        }
        value
    }

    /// Staff status by the rule, `None` when no rule is configured.
    fn staff_rule(&self, claims: &Map<String, Value>) -> Option<bool> {
        if self.staff_values.is_empty() {
            return None;
        }
        let has = |s: &str| self.staff_values.iter().any(|v| v == s);
        Some(match self.staff_claim_of(claims) {
            Some(Value::String(s)) => has(s),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(has),
            Some(Value::Bool(b)) => *b && has("true"),
            _ => false,
        })
    }
}

/// The password of accounts created by sign-ins through the identity provider: unusable
/// (as Django's `!` hashes), so they sign in only through the provider. Local accounts always
/// have a real hash, imported Django ones `!` plus random characters, so an account whose
/// password is exactly this was made by the provider path.
pub const IAM_PASSWORD: &str = "!";
/// Longest `iss` and `sub` stored (OpenID Connect: `sub` is at most 255 ASCII characters).
const MAX_KEY_LEN: usize = 255;
/// Names tried (`<username>-2` ...) for an identity whose username is taken.
const MAX_NAME_ATTEMPTS: usize = 100;

/// Why linking a first sign-in failed: a database error (a unique key lost to a concurrent
/// sign-in is retried) or a refusal.
#[derive(Debug)]
enum LinkError {
    Db(sea_orm::DbErr),
    App(AppError),
}

impl From<sea_orm::DbErr> for LinkError {
    fn from(e: sea_orm::DbErr) -> Self {
        LinkError::Db(e)
    }
}

impl From<LinkError> for AppError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Db(e) => AppError::Db(e),
            LinkError::App(e) => e,
        }
    }
}

/// The verified `iss` and `sub` of an identity: what links it to its account (a username can
/// change at the provider, or be taken by someone else; the pair cannot).
fn identity_key(claims: &Map<String, Value>) -> Result<(&str, &str), AppError> {
    let get = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && v.len() <= MAX_KEY_LEN)
    };
    match (get("iss"), get("sub")) {
        (Some(iss), Some(sub)) => Ok((iss, sub)),
        _ => Err(AppError::Unauthorized(
            "The identity has no usable iss and sub (1 to 255 characters each).".into(),
        )),
    }
}

/// The account linked to an identity, if any.
async fn linked_user<C: ConnectionTrait>(
    db: &C,
    issuer: &str,
    subject: &str,
) -> Result<Option<user::Model>, sea_orm::DbErr> {
    let Some(link) = identity::Entity::find()
        .filter(identity::Column::Issuer.eq(issuer))
        .filter(identity::Column::Subject.eq(subject))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    user::Entity::find_by_id(link.user_id).one(db).await
}

async fn user_named<C: ConnectionTrait>(
    db: &C,
    username: &str,
) -> Result<Option<user::Model>, sea_orm::DbErr> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(db)
        .await
}

/// A new account for an identity (unusable password: it signs in through the provider only).
async fn new_iam_user<C: ConnectionTrait>(
    db: &C,
    username: &str,
    email: &str,
    staff: Option<bool>,
) -> Result<user::Model, sea_orm::DbErr> {
    let u = user::ActiveModel {
        username: Set(username.to_owned()),
        password: Set(IAM_PASSWORD.to_owned()),
        email: Set(email.to_owned()),
        is_staff: Set(staff.unwrap_or(false)),
        is_active: Set(true),
        date_joined: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    tracing::info!(username, staff = u.is_staff, "created a user from the IAM");
    Ok(u)
}

/// Every external issuer whose tokens the REST API accepts.
pub struct Identities {
    /// The IAM, with `OIDC_ENABLED=true`.
    pub iam: Option<Iam>,
    ci: Vec<(CiKind, Issuer)>,
    policies: Vec<CiPolicy>,
    ci_audience: String,
}

impl Identities {
    /// The issuers of a configuration; does no I/O.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let iam = if config.oidc.oidc_enabled {
            let issuer = config
                .oidc
                .oidc_issuer()
                .context("OIDC_CONNECT_CONFIG_URL is required")?;
            let client_id = config.oidc.oidc_rp_client_id.clone().unwrap_or_default();
            let parse = |name: &str, v: &Option<String>| -> anyhow::Result<Option<url::Url>> {
                v.as_deref()
                    .map(|u| url::Url::parse(u).with_context(|| name.to_string()))
                    .transpose()
            };
            let api_audiences = config.oidc.api_audiences.clone();
            Some(Iam {
                issuer: Issuer::new(IssuerOptions {
                    issuer,
                    label: "IAM token",
                    jwks_url: parse("OIDC_OP_JWKS_ENDPOINT", &config.oidc.oidc_op_jwks_endpoint)?,
                    discovery_url: parse(
                        "OIDC_CONNECT_CONFIG_URL",
                        &config.oidc.oidc_connect_config_url,
                    )?,
                    ca_file: None,
                    bearer_token_file: None,
                    refresh_interval: REFRESH_INTERVAL,
                    algorithm: config
                        .oidc
                        .oidc_rp_sign_algo
                        .as_deref()
                        .map(str::parse)
                        .transpose()
                        .context("OIDC_RP_SIGN_ALGO")?,
                })?,
                api_audiences: if api_audiences.is_empty() {
                    vec![client_id.clone()]
                } else {
                    api_audiences
                },
                client_id,
                client_secret: config
                    .oidc
                    .oidc_rp_client_secret
                    .clone()
                    .unwrap_or_default(),
                scopes: config.oidc.oidc_rp_scopes.clone(),
                redirect_uri: config.oidc_redirect_uri(),
                authorization_endpoint: config.oidc.oidc_op_authorization_endpoint.clone(),
                token_endpoint: config.oidc.oidc_op_token_endpoint.clone(),
                logout_endpoint: config.oidc.oidc_op_logout_endpoint.clone(),
                post_logout_redirect: config
                    .oidc
                    .oidc_post_logout_redirect_url
                    .clone()
                    .unwrap_or_else(|| format!("{}/", config.server.public_url)),
                logout_parameter: config.oidc.oidc_logout_redirect_uri_parameter_name.clone(),
                login_redirect: config.oidc.login_redirect_url.clone(),
                logout_redirect: config.oidc.logout_redirect_url.clone(),
                username_claim: config.oidc.oidc_preferred_username_claim_field.clone(),
                link_by_username: config.oidc.oidc_link_by_username,
                staff_claim: config.oidc.oidc_staff_claim.clone(),
                staff_values: config.oidc.staff_values.clone(),
            })
        } else {
            None
        };
        let policies = config.auth.ci_policies.clone();
        let mut ci = Vec::new();
        for (kind, issuer, label) in [
            (
                CiKind::GitHub,
                &config.auth.ci_github_issuer,
                "GitHub Actions token",
            ),
            (
                CiKind::GitLab,
                &config.auth.ci_gitlab_issuer,
                "GitLab CI token",
            ),
        ] {
            if policies.iter().any(|p| p.kind() == Some(kind)) {
                ci.push((
                    kind,
                    Issuer::new(IssuerOptions {
                        issuer: issuer.clone(),
                        label,
                        jwks_url: None,
                        discovery_url: None,
                        ca_file: None::<PathBuf>,
                        bearer_token_file: None,
                        refresh_interval: REFRESH_INTERVAL,
                        algorithm: None,
                    })?,
                ));
            }
        }
        Ok(Identities {
            iam,
            ci,
            policies,
            ci_audience: config
                .auth
                .ci_oidc_audience
                .clone()
                .unwrap_or_else(|| config.server.public_url.clone()),
        })
    }

    /// The local user of a Bearer token from an external issuer (`iss` read unverified to pick
    /// the verifier): 401 with the reason when the issuer is unknown, the token invalid, or no
    /// policy maps it.
    pub async fn user_from_token(
        &self,
        db: &DatabaseConnection,
        token: &str,
        iss: &str,
    ) -> Result<user::Model, AppError> {
        if let Some(iam) = self.iam.as_ref().filter(|i| i.issuer.is_issuer(iss)) {
            let claims = iam
                .issuer
                .verify(token, Audience::AnyOrAuthorizedParty(&iam.api_audiences))
                .await?;
            // Keycloak marks its ID and refresh tokens in `typ`; only access tokens are
            // credentials for the API (an ID token is addressed to the client, not to us).
            if let Some(typ) = claims.get("typ").and_then(Value::as_str)
                && !typ.eq_ignore_ascii_case("bearer")
            {
                return Err(AppError::Unauthorized(format!(
                    "An IAM token of type {:?} is not an access token.",
                    typ.chars().take(50).collect::<String>()
                )));
            }
            return iam.upsert_user(db, &claims, false).await;
        }
        let Some((kind, issuer)) = self.ci.iter().find(|(_, i)| i.is_issuer(iss)) else {
            return Err(AppError::Unauthorized(format!(
                "Tokens of the issuer {:?} are not accepted here.",
                iss.chars().take(200).collect::<String>()
            )));
        };
        let claims = issuer
            .verify(token, Audience::Exactly(&self.ci_audience))
            .await?;
        let policy = self
            .policies
            .iter()
            .filter(|p| p.kind() == Some(*kind))
            .find(|p| p.matches(&claims));
        let Some(policy) = policy else {
            let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
            tracing::warn!(sub, "a valid CI token that no policy maps to a user");
            return Err(AppError::Unauthorized(format!(
                "No CI_OIDC_POLICIES entry maps this {} token (sub {:?}) to a user.",
                if *kind == CiKind::GitHub {
                    "GitHub Actions"
                } else {
                    "GitLab CI"
                },
                claims.get("sub").and_then(Value::as_str).unwrap_or("")
            )));
        };
        match user::Entity::find()
            .filter(user::Column::Username.eq(policy.user.as_str()))
            .one(db)
            .await?
        {
            Some(u) if u.is_active => Ok(u),
            Some(_) => Err(AppError::Unauthorized("User is inactive".into())),
            None => Err(AppError::Unauthorized(format!(
                "The CI policy maps to the user {:?}, which does not exist.",
                policy.user
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_are_checked_and_matched() {
        let list = CiPolicy::parse_list(
            r#"[{"issuer": "github", "claims": {"repository": "org/repo", "ref": "refs/heads/*"}, "user": "ci"},
                {"issuer": "gitlab", "claims": {"project_path": "group/project"}, "user": "ci2"}]"#,
        )
        .unwrap();
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert!(list[0].matches(&claims(
            json!({"repository": "org/repo", "ref": "refs/heads/main"})
        )));
        assert!(!list[0].matches(&claims(
            json!({"repository": "org/repo", "ref": "refs/tags/v1"})
        )));
        assert!(!list[0].matches(&claims(
            json!({"repository": "org/repo2", "ref": "refs/heads/main"})
        )));
        assert!(!list[0].matches(&claims(json!({"ref": "refs/heads/main"}))));
        assert!(list[1].matches(&claims(json!({"project_path": "group/project"}))));
        for bad in [
            r#"[{"issuer": "github", "claims": {"ref": "refs/heads/main"}, "user": "ci"}]"#,
            r#"[{"issuer": "github", "claims": {"repository": "*"}, "user": "ci"}]"#,
            r#"[{"issuer": "bitbucket", "claims": {"repository": "a/b"}, "user": "ci"}]"#,
            r#"[{"issuer": "github", "claims": {"repository": "a/b"}, "user": ""}]"#,
            r#"[{"issuer": "github", "claims": {"repository": "a/b"}, "user": "u", "x": 1}]"#,
            r#"{"issuer": "github"}"#,
        ] {
            assert!(CiPolicy::parse_list(bad).is_err(), "{bad}");
        }
    }
}
