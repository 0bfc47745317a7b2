//! API key secrets: how they look, how they are made and how they are stored (only a hash).
//!
//! A secret is `cc_` followed by 32 bytes from the operating system's CSPRNG in unpadded base64url (43
//! characters). Only its SHA-256 is stored. A fast hash is the right tool here: salted slow hashes (argon2,
//! bcrypt) protect low-entropy passwords against guessing, but a 256-bit random secret cannot be guessed, and
//! SHA-256 is preimage resistant, so a leaked table of hashes does not reveal any key. An unsalted digest is
//! also what lets each call find its key with one indexed lookup instead of a slow hash per stored key.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::violations::{Violations, reason};

/// The prefix of every secret, so leaked keys are easy to recognize (secret scanners, logs).
pub const SECRET_PREFIX: &str = "cc_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// Most characters of a key name (it becomes the acting agent).
pub const MAX_NAME_CHARS: usize = 64;

/// A new secret. Fails only if the operating system has no randomness to give.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("no randomness from the operating system: {e}"))?;
    Ok(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a secret: its SHA-256 in lower-case hex.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `secret` has the shape of one of ours (checked before any lookup, so garbage costs nothing).
pub fn looks_like_secret(secret: &str) -> bool {
    secret.strip_prefix(SECRET_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The token of an `authorization: Bearer TOKEN` header value (scheme case-insensitive), or None.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Checks a key name: 1 to 64 characters of `[A-Za-z0-9._@-]` (it is written to `created_by` and shown in
/// presence, so it stays printable and unambiguous).
pub fn check_name(violations: &mut Violations, field: &str, name: &str) {
    if name.is_empty() {
        violations.push(field, reason::REQUIRED_FIELD, "a key name is required");
    } else if name.chars().count() > MAX_NAME_CHARS {
        violations.push(
            field,
            reason::FIELD_TOO_LONG,
            format!("at most {MAX_NAME_CHARS} characters"),
        );
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    {
        violations.push(
            field,
            reason::INVALID_KEY_NAME,
            "use letters, digits and . _ @ - only",
        );
    } else if name == "anonymous" {
        violations.push(
            field,
            reason::INVALID_KEY_NAME,
            "\"anonymous\" names calls without an agent; choose another name",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_well_formed_and_hash_to_hex() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(looks_like_secret(&a), "{a}");
        assert_eq!(hash_secret(&a).len(), 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!looks_like_secret("cc_short"));
        assert!(!looks_like_secret(&a.replace("cc_", "xx_")));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token("Bearer cc_x"), Some("cc_x"));
        assert_eq!(bearer_token("bearer  cc_x "), Some("cc_x"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("cc_x"), None);
    }

    #[test]
    fn names_are_short_and_plain() {
        let check = |name: &str| {
            let mut v = Violations::new();
            check_name(&mut v, "name", name);
            v.is_empty()
        };
        assert!(check("router-1"));
        assert!(check("ana.lopez@example.com"));
        assert!(!check(""));
        assert!(!check("two words"));
        assert!(!check("anonymous"));
        assert!(!check(&"a".repeat(65)));
    }
}
