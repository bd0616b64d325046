//! Password hashing: argon2id with OWASP parameters (m=7 MiB, t=5, p=1) for new hashes;
//! argon2 hashes with other parameters (earlier m=19 MiB, t=2 hashes) verify and are re-hashed;
//! Django `pbkdf2_sha256$iterations$salt$hash` hashes (imported from the reference) still verify
//! and are flagged for re-hashing. Both are CPU-heavy: call them through [`verify_blocking`] /
//! [`hash_blocking`], which run on tokio's blocking pool, never on the async workers.

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{PasswordHash, Salt},
};
use base64::Engine;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Memory of new hashes in KiB: OWASP's argon2id configuration m=7 MiB, t=5, p=1, which the
/// cheat sheet lists as equal in strength to m=19 MiB, t=2 (and to m=46 MiB, t=1). The smaller
/// memory with more passes keeps the service under 30 MiB while logins run: each concurrent
/// hash holds its whole memory for tens of milliseconds.
pub const M_COST_KIB: u32 = 7 * 1024;
/// Passes over the memory of new hashes (see [`M_COST_KIB`]).
pub const T_COST: u32 = 5;
/// Lanes of new hashes.
pub const P_COST: u32 = 1;
/// Largest memory a stored hash may ask us to spend verifying it (64 MiB): bounds the work of
/// imported or tampered rows.
const MAX_VERIFY_M_COST_KIB: u32 = 64 * 1024;
const MAX_VERIFY_T_COST: u32 = 16;
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// Outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or an unusable stored hash).
    No,
    /// Right password, hash is current.
    Yes,
    /// Right password, but the stored hash is a legacy format or has other parameters than
    /// new hashes: re-hash it.
    YesRehash,
}

fn current_params() -> Params {
    Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN)).expect("valid argon2 parameters")
}

/// How many hashes may run at once: half the cores, at least one. Extra callers wait for a
/// slot, so a login flood neither runs hundreds of hashes on the blocking pool nor holds
/// hundreds of hash memories, and it leaves the other cores to everything else (a login takes
/// about 11 ms of one core).
fn slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(slot_count()))
}

fn slot_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Hash memories kept between hashes (at most one per slot). Allocating a fresh 7 MiB per hash
/// on whichever blocking thread runs it made glibc keep every thread's freed arena: the
/// process grew to 200-300 MiB under a login load; reused memories keep it flat.
static MEMORIES: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs argon2 with a reused memory of exactly the size `params` needs.
fn argon2_into(params: Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    let blocks = params.block_count();
    let mut memory = MEMORIES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_default();
    memory.resize(blocks, Block::default());
    let ok = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password, salt, out, &mut memory[..])
        .is_ok();
    // A legacy hash may have needed a larger memory: give back what new hashes do not use.
    let keep = current_params().block_count();
    if memory.len() > keep {
        memory.truncate(keep);
        memory.shrink_to_fit();
    }
    let mut pool = MEMORIES.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < slot_count() {
        pool.push(memory);
    }
    ok
}

/// Hashes a password with argon2id (PHC string `$argon2id$v=19$m=7168,t=5,p=1$salt$hash`).
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_LEN];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let mut out = [0u8; OUTPUT_LEN];
    if !argon2_into(current_params(), password.as_bytes(), &salt, &mut out) {
        anyhow::bail!("argon2 hashing failed (password too long?)");
    }
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    Ok(format!(
        "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}",
        b64.encode(salt),
        b64.encode(out)
    ))
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
    verify_argon2(password, stored).unwrap_or(Verified::No)
}

fn verify_argon2(password: &str, stored: &str) -> Option<Verified> {
    let parsed = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::new(parsed.algorithm.as_str()).ok()?;
    let version = parsed.version.unwrap_or(0x13);
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let salt: &Salt = parsed.salt.as_ref()?;
    if params.m_cost() > MAX_VERIFY_M_COST_KIB || params.t_cost() > MAX_VERIFY_T_COST {
        return None;
    }
    // Only argon2id v1.3 is ever written; other variants are verified for imports with the
    // library's own allocation (rare, so not worth a reused memory).
    let mut out = vec![0u8; expected.len()];
    let ok = if algorithm == Algorithm::Argon2id && version == 0x13 {
        argon2_into(params.clone(), password.as_bytes(), salt.as_ref(), &mut out)
    } else {
        Argon2::new(algorithm, Version::try_from(version).ok()?, params.clone())
            .hash_password_into(password.as_bytes(), salt.as_ref(), &mut out)
            .is_ok()
    };
    if !ok || !bool::from(out.as_slice().ct_eq(expected.as_ref())) {
        return Some(Verified::No);
    }
    let current = algorithm == Algorithm::Argon2id
        && version == 0x13
        && params.m_cost() == M_COST_KIB
        && params.t_cost() == T_COST
        && params.p_cost() == P_COST;
    Some(if current {
        Verified::Yes
    } else {
        Verified::YesRehash
    })
}

/// A valid argon2id hash of a random password, verified against when the user does not exist so
/// unknown and known usernames take the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

/// [`verify`] on the blocking thread pool, once a hashing slot is free.
pub async fn verify_blocking(password: String, stored: String) -> Verified {
    let Ok(_slot) = slots().acquire().await else {
        return Verified::No;
    };
    tokio::task::spawn_blocking(move || verify(&password, &stored))
        .await
        .unwrap_or(Verified::No)
}

/// [`hash`] on the blocking thread pool, once a hashing slot is free.
pub async fn hash_blocking(password: String) -> anyhow::Result<String> {
    let _slot = slots().acquire().await?;
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
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        assert_eq!(verify("s3cret", &h), Verified::Yes);
        assert_eq!(verify("wrong", &h), Verified::No);
        assert_ne!(hash("s3cret").unwrap(), h, "salted");
    }

    #[test]
    fn hashes_of_the_library_and_other_parameters_verify() {
        use argon2::password_hash::PasswordHasher;
        // The previous default (m=19 MiB, t=2) written by the library itself: valid, re-hash.
        let old = Argon2::default()
            .hash_password(b"s3cret")
            .unwrap()
            .to_string();
        assert!(old.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{old}");
        assert_eq!(verify("s3cret", &old), Verified::YesRehash);
        assert_eq!(verify("wrong", &old), Verified::No);
        // Our own format is what the library verifies too.
        let ours = hash("s3cret").unwrap();
        let parsed = PasswordHash::new(ours.as_str()).unwrap();
        use argon2::password_hash::PasswordVerifier;
        Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .unwrap();
        // argon2i and an absurd memory cost are refused or handled without panicking.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(b"s3cret")
            .unwrap()
            .to_string();
        assert_eq!(verify("s3cret", &argon2i), Verified::YesRehash);
        let huge = ours.replace("m=7168", "m=4000000");
        assert_eq!(verify("s3cret", &huge), Verified::No);
        assert_eq!(
            verify("s3cret", "$argon2id$v=19$m=7168,t=5,p=1$"),
            Verified::No
        );
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
