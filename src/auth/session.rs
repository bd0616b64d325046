//! Browser sessions: signed, expiring cookies, and a record of the ones signed out.
//!
//! The reference keeps Django sessions in its database; here a live session needs nothing
//! server-side, so every replica and a cold start accept it. A cookie is
//! `<base64url(JSON payload)>.<base64url(HMAC-SHA256)>` under a key derived from the service's
//! signing key (as the run callback tokens are), with a purpose string in the MAC so the
//! pre-login cookie (state, nonce, PKCE verifier) can never pass for a session or the reverse.
//!
//! Signing out records the session's random id until the session would have expired
//! (`aq_revoked_session`, see `auth::revocation`), so a copy of the cookie taken before is
//! refused on every replica; the user being deactivated, or the signing key changing, ends
//! every session too.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Sha256;

/// Name of the session cookie (HttpOnly).
pub const SESSION_COOKIE: &str = "aq_session";
/// Name of the readable CSRF cookie the frontend copies into `X-CSRFToken` (Django's name).
pub const CSRF_COOKIE: &str = "csrftoken";
/// Name of the short-lived cookie that carries the sign-in's state, nonce and PKCE verifier
/// from `/oidc/authenticate/` to `/oidc/callback/`.
pub const LOGIN_COOKIE: &str = "aq_oidc_login";
/// Header the frontend sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrftoken";
/// Longest cookie value considered (a session is about 200 bytes).
const MAX_COOKIE_LEN: usize = 4096;

/// What a session cookie says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The session's random id: what signing out records. Cookies without one (sealed before
    /// sessions could be signed out) do not open, so their users sign in again.
    pub sid: String,
    /// The user's id.
    pub uid: i64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The CSRF token issued with this session; the `csrftoken` cookie and the `X-CSRFToken`
    /// header must both equal it.
    pub csrf: String,
    /// Given name from the identity provider (no column for it; shown by `user-details`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_name: String,
    /// Family name from the identity provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_name: String,
}

/// What the pre-login cookie says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingLogin {
    /// The `state` sent to the provider.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Why a cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Not ours, altered, or signed with another key.
    Invalid,
    /// Signed by us but past its expiry.
    Expired,
}

/// Seals and opens cookies under one derived key.
pub struct SessionKeys {
    key: [u8; 32],
}

impl SessionKeys {
    /// The keys derived from the service's signing key.
    pub fn new(signing_key: &[u8]) -> Self {
        let mut m = mac(signing_key);
        m.update(b"application-quality-api browser sessions v1");
        SessionKeys {
            key: m.finalize().into_bytes().into(),
        }
    }

    /// Signs a payload for `purpose`.
    pub fn seal<T: Serialize>(&self, purpose: &str, payload: &T) -> String {
        // A plain struct always serialises.
        let json = serde_json::to_vec(payload).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(json);
        let tag = self.tag(purpose, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Verifies a value sealed for `purpose` and returns its payload (expiry not checked).
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, value: &str) -> Option<T> {
        if value.len() > MAX_COOKIE_LEN {
            return None;
        }
        let (body, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut m = mac(&self.key);
        m.update(purpose.as_bytes());
        m.update(b"\0");
        m.update(body.as_bytes());
        // Constant-time comparison.
        m.verify_slice(&tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }

    /// Opens a session cookie and checks its expiry.
    pub fn open_session(&self, value: &str) -> Result<Session, CookieError> {
        let s: Session = self.open("session", value).ok_or(CookieError::Invalid)?;
        if s.exp <= now() {
            return Err(CookieError::Expired);
        }
        Ok(s)
    }

    /// Opens a pre-login cookie and checks its expiry.
    pub fn open_login(&self, value: &str) -> Result<PendingLogin, CookieError> {
        let p: PendingLogin = self.open("login", value).ok_or(CookieError::Invalid)?;
        if p.exp <= now() {
            return Err(CookieError::Expired);
        }
        Ok(p)
    }

    fn tag(&self, purpose: &str, body: &[u8]) -> [u8; 32] {
        let mut m = mac(&self.key);
        m.update(purpose.as_bytes());
        m.update(b"\0");
        m.update(body);
        m.finalize().into_bytes().into()
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

/// A random URL-safe token of 256 bits (state, nonce, PKCE verifier, CSRF token).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The value of the cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value. `max_age` zero deletes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    http_only: bool,
    secure: bool,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite=Lax");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Current Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(exp: u64) -> Session {
        Session {
            sid: "s".into(),
            uid: 7,
            exp,
            csrf: "c".into(),
            first_name: "Ada".into(),
            last_name: String::new(),
        }
    }

    #[test]
    fn sealed_values_round_trip_and_resist_tampering() {
        let k = SessionKeys::new(b"signing key");
        let s = session(now() + 60);
        let v = k.seal("session", &s);
        assert_eq!(k.open_session(&v), Ok(s.clone()));
        // Another key, another purpose, an altered body or tag: refused.
        assert_eq!(
            SessionKeys::new(b"other key").open_session(&v),
            Err(CookieError::Invalid)
        );
        assert_eq!(k.open_login(&v), Err(CookieError::Invalid));
        let (body, tag) = v.split_once('.').unwrap();
        let mut other = session(now() + 60);
        other.uid = 1;
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        assert_eq!(
            k.open_session(&format!("{forged}.{tag}")),
            Err(CookieError::Invalid)
        );
        assert_eq!(
            k.open_session(&format!("{body}.{}", &tag[1..])),
            Err(CookieError::Invalid)
        );
        assert_eq!(k.open_session("garbage"), Err(CookieError::Invalid));
        let old = k.seal("session", &session(now() - 1));
        assert_eq!(k.open_session(&old), Err(CookieError::Expired));
        // A session sealed before sessions had ids cannot be signed out: refused.
        let legacy = k.seal(
            "session",
            &serde_json::json!({"uid": 7, "exp": now() + 60, "csrf": "c"}),
        );
        assert_eq!(k.open_session(&legacy), Err(CookieError::Invalid));
    }

    #[test]
    fn cookies_are_found_and_written() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; csrftoken=xyz".parse().unwrap());
        h.append(http::header::COOKIE, "aq_session=s.t".parse().unwrap());
        assert_eq!(cookie(&h, "csrftoken"), Some("xyz"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("s.t"));
        assert_eq!(cookie(&h, "missing"), None);
        let c = set_cookie("n", "v", "/", 60, true, true);
        assert_eq!(c, "n=v; Path=/; Max-Age=60; SameSite=Lax; HttpOnly; Secure");
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
