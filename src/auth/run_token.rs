//! Per-run callback tokens: random, handed to the run's pods through a Kubernetes Secret, and
//! stored only as a SHA-256 hash. Job reports and results are accepted only with the token.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix that tells callback tokens apart from JWTs in an `Authorization: Bearer` header.
pub const PREFIX: &str = "aqrun_";

/// A new random token (256 bits).
pub fn generate() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// Hex SHA-256 of a token, as stored on the run.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` matches the stored hash (constant-time comparison).
pub fn matches(token: &str, stored_hash: &str) -> bool {
    hash(token).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_random_and_verify_by_hash() {
        let a = super::generate();
        let b = super::generate();
        assert_ne!(a, b);
        assert!(a.starts_with(super::PREFIX) && a.len() > 40);
        let h = super::hash(&a);
        assert!(super::matches(&a, &h));
        assert!(!super::matches(&b, &h));
    }
}
