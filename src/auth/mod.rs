//! Authentication: password hashing, JWTs, per-run callback tokens, OIDC tokens (CloudEvent
//! senders, the IAM, CI workload identities), browser sessions (signed cookies, and the record
//! of those signed out). The extractors that state each handler's access rule in its signature
//! are the web layer's (`crate::http::auth`).

pub mod identity;
pub mod jwt;
pub mod login_limit;
pub mod oidc;
pub mod password;
pub mod revocation;
pub mod run_token;
pub mod session;
pub mod user_cache;
