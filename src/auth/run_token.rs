//! Per-run callback tokens, handed to the run's pods through a Kubernetes Secret and stored
//! only as a SHA-256 hash. Job reports and results are accepted only with the token.
//!
//! A run's token is derived ([`derive`]) from a server key and the run (id and creation time),
//! not drawn at random: when a launch reached the cluster but recording it did not reach the
//! database, the resumed launch must hand the same token to the same objects, or the pods
//! already running with the first token would be locked out of their own results.
//!
//! A token is scoped to its run's life ([`in_scope`]): accepted while the run has not ended,
//! and for a short grace after (`CALLBACK_GRACE_SECS`, a late upload), never again.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix that tells callback tokens apart from JWTs in an `Authorization: Bearer` header.
pub const PREFIX: &str = "aqrun_";

/// The key tokens are derived with, itself derived from the service's signing key so every
/// replica agrees on it without another secret.
pub fn derivation_key(signing_key: &[u8]) -> [u8; 32] {
    mac(
        signing_key,
        b"application-quality-api run callback tokens v1",
    )
}

/// The callback token of run `run_id` created at `created_micros` (256 bits, unguessable
/// without the key).
pub fn derive(key: &[u8; 32], run_id: i64, created_micros: i64) -> String {
    let raw = mac(key, format!("{run_id}:{created_micros}").as_bytes());
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(message);
    m.finalize().into_bytes().into()
}

/// Hex SHA-256 of a token, as stored on the run.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` matches the stored hash (constant-time comparison).
pub fn matches(token: &str, stored_hash: &str) -> bool {
    hash(token).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// `text` with every callback token in it replaced: a run's log and messages are read by its
/// user, and a hostile repository can make a tool print its environment.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(PREFIX) {
        return std::borrow::Cow::Borrowed(text);
    }
    let token_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(PREFIX) {
        out.push_str(&rest[..i]);
        let after = &rest[i + PREFIX.len()..];
        let len = after.find(|c: char| !token_char(c)).unwrap_or(after.len());
        if len >= 16 {
            out.push_str("[callback token]");
        } else {
            out.push_str(&rest[i..i + PREFIX.len() + len]);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Whether a callback token is accepted at `now` for a run that ended at `ended_at` (`None`:
/// not ended): before the end, and up to `grace_secs` after it.
pub fn in_scope(
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    grace_secs: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    // A century bounds the grace: chrono durations have a range.
    let grace = chrono::Duration::seconds(grace_secs.min(100 * 365 * 86_400) as i64);
    ended_at.is_none_or(|end| {
        end.checked_add_signed(grace)
            .is_none_or(|deadline| now <= deadline)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_redacted_from_text() {
        let key = super::derivation_key(b"k");
        let token = super::derive(&key, 3, 9);
        let text = format!("A=1\0AQ_CALLBACK_TOKEN={token}\0B=aqrun_short");
        let redacted = super::redact(&text);
        assert!(!redacted.contains(&token));
        assert!(redacted.contains("AQ_CALLBACK_TOKEN=[callback token]\0B=aqrun_short"));
        assert_eq!(super::redact("plain"), "plain");
    }

    #[test]
    fn tokens_expire_after_the_grace() {
        let end = chrono::Utc::now();
        let after = |s| end + chrono::Duration::seconds(s);
        assert!(super::in_scope(None, 0, after(10_000)));
        assert!(super::in_scope(Some(end), 300, after(300)));
        assert!(!super::in_scope(Some(end), 300, after(301)));
        assert!(super::in_scope(Some(end), 0, end));
        assert!(!super::in_scope(Some(end), 0, after(1)));
        assert!(super::in_scope(Some(end), u64::MAX, after(1)));
    }

    #[test]
    fn tokens_verify_by_hash() {
        let key = super::derivation_key(b"signing key");
        let a = super::derive(&key, 1, 0);
        let b = super::derive(&key, 2, 0);
        assert_ne!(a, b);
        assert!(a.starts_with(super::PREFIX) && a.len() > 40);
        let h = super::hash(&a);
        assert!(super::matches(&a, &h));
        assert!(!super::matches(&b, &h));
    }

    #[test]
    fn derived_tokens_are_stable_per_run_and_key() {
        let key = super::derivation_key(b"signing key");
        let t = super::derive(&key, 7, 1_700_000_000_000_000);
        assert_eq!(t, super::derive(&key, 7, 1_700_000_000_000_000));
        assert!(t.starts_with(super::PREFIX) && t.len() > 40);
        assert_ne!(t, super::derive(&key, 8, 1_700_000_000_000_000));
        assert_ne!(t, super::derive(&key, 7, 1_700_000_000_000_001));
        let other = super::derivation_key(b"another key");
        assert_ne!(t, super::derive(&other, 7, 1_700_000_000_000_000));
    }
}
