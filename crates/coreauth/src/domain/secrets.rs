//! `SecretBox`: encryption at rest for secrets coreauth must be able to read back (TOTP seeds,
//! later SSO client secrets), with ChaCha20-Poly1305. The key never sits in the database: it
//! comes from `COREAUTH_SECRET_KEY` / `COREAUTH_SECRET_KEY_FILE` (by default a 0600 file
//! `coreauth-secret.key` next to the working directory, created on first start).
//!
//! Each sealed value names the key that sealed it (`v1.<key id>.<nonce+ciphertext>`) and is
//! bound to what it belongs to (associated data such as `totp:<user id>`), so a value copied to
//! another row does not open. Rotation: make the new key the primary and list the old one in
//! `COREAUTH_PREVIOUS_SECRET_KEYS`; values sealed with an old key still open and are re-sealed
//! with the primary the next time they are used.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::error::{DomainError, DomainResult};

const NONCE_LEN: usize = 12;

struct SealingKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl SealingKey {
    fn new(bytes: &[u8; 32]) -> Self {
        let id = URL_SAFE_NO_PAD.encode(&Sha256::digest(bytes)[..6]);
        Self {
            id,
            cipher: ChaCha20Poly1305::new(&Key::from(*bytes)),
        }
    }
}

pub struct SecretBox {
    primary: SealingKey,
    previous: Vec<SealingKey>,
}

/// A value opened, and whether it should be re-sealed because an old key sealed it.
pub struct Opened {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub sealed_with_old_key: bool,
}

impl SecretBox {
    /// Keys are 32 random bytes, written in base64.
    pub fn from_base64(primary: &str, previous: &[String]) -> DomainResult<Self> {
        Ok(Self {
            primary: SealingKey::new(&decode_key(primary)?),
            previous: previous
                .iter()
                .map(|k| decode_key(k).map(|k| SealingKey::new(&k)))
                .collect::<DomainResult<_>>()?,
        })
    }

    /// A new random key, in base64.
    pub fn generate_key() -> DomainResult<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(DomainError::internal)?;
        Ok(STANDARD.encode(key.as_ref()))
    }

    pub fn seal(&self, plaintext: &[u8], bound_to: &str) -> DomainResult<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(DomainError::internal)?;
        let sealed = self
            .primary
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| DomainError::internal("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!(
            "v1.{}.{}",
            self.primary.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    pub fn open(&self, sealed: &str, bound_to: &str) -> DomainResult<Opened> {
        let unreadable =
            || DomainError::internal("a sealed secret cannot be opened with the configured keys");
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(unreadable());
        };
        let key = std::iter::once(&self.primary)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(unreadable)?;
        let bytes = URL_SAFE_NO_PAD.decode(data).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| unreadable())?;
        let plaintext = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| unreadable())?;
        Ok(Opened {
            plaintext: Zeroizing::new(plaintext),
            sealed_with_old_key: key.id != self.primary.id,
        })
    }
}

fn decode_key(text: &str) -> DomainResult<[u8; 32]> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| DomainError::invalid("a secret key must be base64"))?,
    );
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| DomainError::invalid("a secret key must be 32 bytes (44 base64 characters)"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_binding() {
        let keys = SecretBox::from_base64(&SecretBox::generate_key().unwrap(), &[]).unwrap();
        let sealed = keys.seal(b"JBSWY3DPEHPK3PXP", "totp:1").unwrap();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        let opened = keys.open(&sealed, "totp:1").unwrap();
        assert_eq!(opened.plaintext.as_slice(), b"JBSWY3DPEHPK3PXP");
        assert!(!opened.sealed_with_old_key);
        assert!(keys.open(&sealed, "totp:2").is_err(), "bound to its row");
        assert_ne!(
            sealed,
            keys.seal(b"JBSWY3DPEHPK3PXP", "totp:1").unwrap(),
            "fresh nonce"
        );
    }

    #[test]
    fn an_old_key_still_opens_and_asks_for_resealing() {
        let old = SecretBox::generate_key().unwrap();
        let new = SecretBox::generate_key().unwrap();
        let sealed = SecretBox::from_base64(&old, &[])
            .unwrap()
            .seal(b"s", "x")
            .unwrap();
        let rotated = SecretBox::from_base64(&new, &[old]).unwrap();
        let opened = rotated.open(&sealed, "x").unwrap();
        assert!(opened.sealed_with_old_key);
        let without_old = SecretBox::from_base64(&new, &[]).unwrap();
        assert!(without_old.open(&sealed, "x").is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(SecretBox::from_base64("short", &[]).is_err());
        assert!(SecretBox::from_base64(&STANDARD.encode([1u8; 16]), &[]).is_err());
        assert!(SecretBox::from_base64(&STANDARD.encode([1u8; 32]), &[]).is_ok());
    }
}
