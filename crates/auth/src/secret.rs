//! Passwords and generated secrets.
//!
//! Passwords are hashed with argon2id (PHC string, random salt). Robot
//! secrets and API tokens are 256-bit random values shown once; they are
//! stored as SHA-256, which is enough for secrets with that much entropy
//! and keeps a robot's `docker login` cheap.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Digest as _;

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters"),
    )
}

/// Hash a password for storage.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt encodes");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters")
        .to_string()
}

/// Check a password against a stored hash (constant time in the hash).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// Fill `buf` with random bytes from the system generator.
pub fn fill(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("the system random generator works");
}

/// A new random secret: `prefix` then 43 characters of base64url.
pub fn generate(prefix: &str) -> String {
    let mut b = [0u8; 32];
    fill(&mut b);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// A random password for a first admin: 24 base64url characters.
pub fn generate_password() -> String {
    let mut b = [0u8; 18];
    fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The stored form of a generated secret.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Compare two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secrets() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$v=19$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(hash_password("same"), hash_password("same"), "salted");
        let s = generate("ddr_");
        assert!(s.starts_with("ddr_") && s.len() == 4 + 43);
        assert_ne!(generate(""), generate(""));
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
    }
}
