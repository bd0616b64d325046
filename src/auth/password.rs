//! Password hashing: argon2id with OWASP parameters (m=19 MiB, t=2, p=1) for new hashes;
//! Django `pbkdf2_sha256$iterations$salt$hash` hashes (imported from the reference) still verify
//! and are flagged for re-hashing. Both are CPU-heavy: call them through [`verify_blocking`] /
//! [`hash_blocking`], which run on tokio's blocking pool, never on the async workers.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use base64::Engine;
use subtle::ConstantTimeEq;

/// Outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or an unusable stored hash).
    No,
    /// Right password, hash is current.
    Yes,
    /// Right password, but the stored hash is a legacy format: re-hash it.
    YesRehash,
}

/// Hashes a password with argon2id (PHC string).
pub fn hash(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

/// Checks a password against a stored hash of either supported format.
pub fn verify(password: &str, stored: &str) -> Verified {
    if stored.starts_with("pbkdf2_sha256$") {
        return if verify_django_pbkdf2(password, stored) {
            Verified::YesRehash
        } else {
            Verified::No
        };
    }
    match PasswordHash::new(stored) {
        Ok(parsed)
            if Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok() =>
        {
            Verified::Yes
        }
        _ => Verified::No,
    }
}

/// A valid argon2id hash of a random password, verified against when the user does not exist so
/// unknown and known usernames take the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

/// [`verify`] on the blocking thread pool.
pub async fn verify_blocking(password: String, stored: String) -> Verified {
    tokio::task::spawn_blocking(move || verify(&password, &stored))
        .await
        .unwrap_or(Verified::No)
}

/// [`hash`] on the blocking thread pool.
pub async fn hash_blocking(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash(&password)).await?
}

fn verify_django_pbkdf2(password: &str, stored: &str) -> bool {
    let mut parts = stored.splitn(4, '$');
    let (Some(_), Some(iterations), Some(salt), Some(expected)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    // Bound the work an imported row can make us do (Django's current default is 1.2M).
    if iterations == 0 || iterations > 5_000_000 {
        return false;
    }
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(expected) else {
        return false;
    };
    if expected.len() != 32 {
        return false;
    }
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    out.ct_eq(&expected).into()
}

/// Builds a Django-format hash (tests and fixtures use it to produce realistic imported users).
pub fn django_pbkdf2(password: &str, salt: &str, iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    format!(
        "pbkdf2_sha256${iterations}${salt}${}",
        base64::engine::general_purpose::STANDARD.encode(out)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let h = hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify("s3cret", &h), Verified::Yes);
        assert_eq!(verify("wrong", &h), Verified::No);
    }

    #[test]
    fn django_hashes_verify_and_ask_for_rehash() {
        // Known vector: Django's make_password("password", "seasalt", "pbkdf2_sha256") at 1000 iterations.
        let h = django_pbkdf2("password", "seasalt", 1000);
        assert_eq!(verify("password", &h), Verified::YesRehash);
        assert_eq!(verify("nope", &h), Verified::No);
        assert_eq!(verify("password", "pbkdf2_sha256$x$y$z"), Verified::No);
        assert_eq!(verify("password", "!unusable"), Verified::No);
    }
}
