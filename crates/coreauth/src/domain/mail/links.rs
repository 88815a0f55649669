//! The one-time tokens of mailed links: 256 bits from the OS, in the link's fragment (so no
//! server or proxy log along the way records it), stored only as SHA-256 (a fast hash suits a
//! high-entropy secret), used once, short-lived, and superseded by a newer token of the same
//! purpose. A link's use says plainly why a token is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::domain::error::{DomainError, DomainResult, LinkRefusal};
use crate::store::records::{EmailTokenRecord, TokenPurpose};

/// A fresh token: its text (for the link, shown nowhere else) and its hash (for the store).
pub struct OneTimeToken {
    pub text: String,
    pub hash: Vec<u8>,
}

impl OneTimeToken {
    pub fn generate() -> DomainResult<Self> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(DomainError::internal)?;
        let text = URL_SAFE_NO_PAD.encode(bytes.as_ref());
        Ok(Self {
            hash: hash_token(&text),
            text,
        })
    }
}

pub fn hash_token(text: &str) -> Vec<u8> {
    Sha256::digest(text.trim().as_bytes()).to_vec()
}

/// `<public url><path>#token=<token>`: a page of coreauth's that reads the fragment.
pub fn link(public_url: &str, path: &str, token: &OneTimeToken) -> String {
    format!(
        "{}{path}#token={}",
        public_url.trim_end_matches('/'),
        token.text
    )
}

/// Whether a stored token may be used now for `purpose`, and if not, why not.
pub fn usable(
    token: Option<&EmailTokenRecord>,
    purpose: TokenPurpose,
    now_ms: i64,
) -> DomainResult<()> {
    let refused = |why| Err(DomainError::Link(why));
    let Some(token) = token.filter(|t| t.purpose == purpose.as_str()) else {
        return refused(LinkRefusal::Unknown);
    };
    if token.used_at.is_some() {
        return refused(LinkRefusal::Used);
    }
    if token.superseded_at.is_some() {
        return refused(LinkRefusal::Superseded);
    }
    if token.expires_at <= now_ms {
        return refused(LinkRefusal::Expired);
    }
    Ok(())
}

/// A duration as a message says it: "30 minutes", "7 days".
pub fn in_words(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s % 86_400 == 0 && s >= 86_400 => (s / 86_400, "day"),
        s if s % 3600 == 0 && s >= 3600 => (s / 3600, "hour"),
        s => (s.div_ceil(60).max(1), "minute"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn token(used: bool, superseded: bool, expires_at: i64) -> EmailTokenRecord {
        EmailTokenRecord {
            purpose: "password_reset".into(),
            user_id: Some(1),
            invitation_id: None,
            email_key: None,
            created_at: 0,
            expires_at,
            used_at: used.then_some(5),
            superseded_at: superseded.then_some(6),
        }
    }

    fn refusal(result: DomainResult<()>) -> &'static str {
        result.err().map(|e| e.code()).unwrap_or("usable")
    }

    #[test]
    fn each_refusal_has_its_code() {
        let reset = TokenPurpose::PasswordReset;
        assert_eq!(
            refusal(usable(Some(&token(false, false, 10)), reset, 9)),
            "usable"
        );
        assert_eq!(refusal(usable(None, reset, 9)), "token_invalid");
        let other = TokenPurpose::Invitation;
        assert_eq!(
            refusal(usable(Some(&token(false, false, 10)), other, 9)),
            "token_invalid"
        );
        assert_eq!(
            refusal(usable(Some(&token(true, false, 10)), reset, 9)),
            "token_used"
        );
        assert_eq!(
            refusal(usable(Some(&token(false, true, 10)), reset, 9)),
            "token_superseded"
        );
        assert_eq!(
            refusal(usable(Some(&token(false, false, 10)), reset, 10)),
            "token_expired"
        );
    }

    #[test]
    fn tokens_are_256_bits_in_the_fragment_and_stored_hashed() {
        let token = OneTimeToken::generate().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token.text).unwrap().len(), 32);
        assert_eq!(token.hash, hash_token(&token.text));
        let url = link("https://auth.example/", "/user/password/reset", &token);
        assert_eq!(
            url,
            format!(
                "https://auth.example/user/password/reset#token={}",
                token.text
            )
        );
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(in_words(1800), "30 minutes");
        assert_eq!(in_words(7 * 86_400), "7 days");
        assert_eq!(in_words(3600), "1 hour");
        assert_eq!(in_words(1), "1 minute");
    }
}
