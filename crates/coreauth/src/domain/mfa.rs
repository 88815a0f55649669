//! The second factor: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, ±1 step) with ten
//! single-use recovery codes. A code is accepted at most once: the store only accepts a step
//! newer than the last one it accepted, atomically, so parallel replays get one success.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use totp_rs::Totp;
use zeroize::Zeroizing;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use super::origin::RequestOrigin;
use super::password::{Password, PasswordHashing};
use super::secrets::SecretBox;
use super::session::Principal;
use super::throttle::{Subject, Throttle};
use crate::store::Store;

pub const RECOVERY_CODES: usize = 10;
const SECRET_BYTES: usize = 20;
const ISSUER: &str = "coreauth";
/// Unambiguous characters for recovery codes (no 0/O, 1/I/L).
const RECOVERY_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// What a user needs to add coreauth to an authenticator app.
pub struct Enrollment {
    pub secret_base32: String,
    pub otpauth_url: String,
    /// `data:image/svg+xml;base64,…`: the otpauth URL as a QR code.
    pub qr_code: String,
}

/// How a user proves they may turn TOTP off.
pub enum Proof {
    Code(String),
    Password(Password),
}

pub struct Mfa {
    store: Arc<dyn Store>,
    secrets: Arc<SecretBox>,
    hashing: Arc<PasswordHashing>,
    throttle: Arc<Throttle>,
}

fn binding(user_id: i64) -> String {
    format!("totp:{user_id}")
}

/// A TOTP for a secret; the account name only shows in authenticator apps.
fn totp(secret: &[u8], account: &str) -> DomainResult<Totp> {
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| DomainError::internal(format!("totp: {e:?}")))
}

fn unix_seconds(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0)
}

fn hash_recovery_code(code: &str) -> Vec<u8> {
    let normalised: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Sha256::digest(normalised.as_bytes()).to_vec()
}

fn generate_recovery_code() -> DomainResult<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(DomainError::internal)?;
    let chars: String = bytes
        .iter()
        .map(|b| char::from(RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()]))
        .collect();
    Ok(format!("{}-{}", &chars[..6], &chars[6..]))
}

fn looks_like_totp(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

impl Mfa {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<SecretBox>,
        hashing: Arc<PasswordHashing>,
        throttle: Arc<Throttle>,
    ) -> Self {
        Self {
            store,
            secrets,
            hashing,
            throttle,
        }
    }

    /// Starts (or restarts) an enrolment: a new secret, unconfirmed until `confirm`.
    pub async fn enroll(
        &self,
        caller: &Principal,
        now: OffsetDateTime,
    ) -> DomainResult<Enrollment> {
        caller.require_session("change the second factor")?;
        let user = self
            .store
            .user_by_id(caller.user_id)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        getrandom::fill(&mut secret).map_err(DomainError::internal)?;
        let sealed = self.secrets.seal(&secret, &binding(user.id))?;
        let audit = NewAuditEvent::new("mfa.enrollment_started", now)
            .by(caller)
            .subject_user(user.id);
        self.store
            .save_totp_enrollment(user.id, &sealed, to_millis(now), &audit)
            .await?;
        let totp = totp(&secret, &user.email)?;
        let otpauth_url = totp
            .to_url()
            .map_err(|e| DomainError::internal(format!("otpauth url: {e:?}")))?;
        Ok(Enrollment {
            secret_base32: totp.secret().to_base32(),
            qr_code: qr_data_url(&otpauth_url)?,
            otpauth_url,
        })
    }

    /// Turns TOTP on with a first valid code; answers the recovery codes, shown this once.
    pub async fn confirm(
        &self,
        caller: &Principal,
        code: &str,
        now: OffsetDateTime,
    ) -> DomainResult<Vec<String>> {
        caller.require_session("change the second factor")?;
        let record = self
            .store
            .totp_of(caller.user_id)
            .await?
            .ok_or_else(|| DomainError::invalid("start with POST /user/mfa/totp/enroll"))?;
        if record.confirmed_at.is_some() {
            return Err(DomainError::Conflict("TOTP is already enabled".into()));
        }
        let secret = self
            .secrets
            .open(&record.sealed_secret, &binding(caller.user_id))?;
        let step = totp(&secret.plaintext, "")?
            .check(code.trim(), unix_seconds(now))
            .ok_or(DomainError::MfaInvalid)?;
        let codes = (0..RECOVERY_CODES)
            .map(|_| generate_recovery_code())
            .collect::<DomainResult<Vec<_>>>()?;
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| hash_recovery_code(c)).collect();
        let audit = NewAuditEvent::new("mfa.enabled", now)
            .by(caller)
            .subject_user(caller.user_id);
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        if !self
            .store
            .confirm_totp(caller.user_id, step, &hashes, to_millis(now), &audit)
            .await?
        {
            return Err(DomainError::Conflict("TOTP is already enabled".into()));
        }
        Ok(codes)
    }

    /// Whether the user has TOTP turned on.
    pub async fn is_enabled(&self, user_id: i64) -> DomainResult<bool> {
        Ok(self
            .store
            .totp_of(user_id)
            .await?
            .is_some_and(|r| r.confirmed_at.is_some()))
    }

    /// The second step of every login path: nothing to do without TOTP; otherwise a current,
    /// unused code or an unused recovery code.
    pub async fn check_login(
        &self,
        user_id: i64,
        code: Option<&str>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        let Some(record) = self.store.totp_of(user_id).await? else {
            return Ok(());
        };
        if record.confirmed_at.is_none() {
            return Ok(());
        }
        let code = code.map(str::trim).filter(|c| !c.is_empty());
        let Some(code) = code else {
            return Err(DomainError::MfaRequired);
        };
        if self
            .verify(user_id, &record.sealed_secret, code, origin, now)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::MfaInvalid)
        }
    }

    async fn verify(
        &self,
        user_id: i64,
        sealed: &str,
        code: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<bool> {
        if !looks_like_totp(code) {
            let audit = NewAuditEvent::new("mfa.recovery_code_used", now)
                .from(origin)
                .actor(user_id)
                .subject_user(user_id);
            return Ok(self
                .store
                .use_recovery_code(user_id, &hash_recovery_code(code), to_millis(now), &audit)
                .await?);
        }
        let opened = self.secrets.open(sealed, &binding(user_id))?;
        let Some(step) = totp(&opened.plaintext, "")?.check(code, unix_seconds(now)) else {
            return Ok(false);
        };
        if opened.sealed_with_old_key {
            let resealed = self.secrets.seal(&opened.plaintext, &binding(user_id))?;
            self.store.reseal_totp(user_id, &resealed).await?;
        }
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        Ok(self.store.consume_totp_step(user_id, step).await?)
    }

    /// Turns TOTP off, proven by a current code or the password.
    pub async fn disable(
        &self,
        caller: &Principal,
        proof: Proof,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        caller.require_session("change the second factor")?;
        let record = self
            .store
            .totp_of(caller.user_id)
            .await?
            .filter(|r| r.confirmed_at.is_some())
            .ok_or(DomainError::NotFound("TOTP enrolment"))?;
        let account = format!("user:{}", caller.user_id);
        let guess = self
            .throttle
            .guess(Some(Subject::Account(&account)), &caller.origin, now)
            .await?;
        let proven = match proof {
            Proof::Code(code) => {
                self.verify(
                    caller.user_id,
                    &record.sealed_secret,
                    code.trim(),
                    &caller.origin,
                    now,
                )
                .await?
            }
            Proof::Password(password) => {
                let user = self.store.user_by_id(caller.user_id).await?;
                let hash = user.and_then(|u| u.password_hash);
                self.hashing.verify(&password, hash.as_deref()).await?
            }
        };
        if !proven {
            return Err(DomainError::MfaInvalid);
        }
        self.throttle.settle(&guess.proved()).await?;
        let audit = NewAuditEvent::new("mfa.disabled", now)
            .by(caller)
            .subject_user(caller.user_id);
        self.store.delete_totp(caller.user_id, &audit).await?;
        Ok(())
    }

    /// An admin removes a user's TOTP (a lost phone); the caller's right to do so is checked by
    /// `Admin`.
    pub async fn reset(
        &self,
        caller: &Principal,
        user_id: i64,
        now: OffsetDateTime,
    ) -> DomainResult<bool> {
        let audit = NewAuditEvent::new("mfa.reset", now)
            .by(caller)
            .subject_user(user_id);
        Ok(self.store.delete_totp(user_id, &audit).await?)
    }
}

fn qr_data_url(text: &str) -> DomainResult<String> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| DomainError::internal(format!("qr code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (secret "12345678901234567890"). The RFC's codes have 8
    /// digits; a 6-digit code is the same number modulo 10^6, i.e. its last six digits.
    #[test]
    fn rfc_6238_test_vectors() {
        let totp = totp(b"12345678901234567890", "").unwrap();
        for (time, eight_digits) in [
            (59_u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                totp.generate(time).to_string(),
                eight_digits[2..],
                "at {time}"
            );
        }
    }

    #[test]
    fn one_step_either_side_is_accepted_two_are_not() {
        let totp = totp(b"12345678901234567890", "").unwrap();
        let now = 1_111_111_111;
        let code = totp.generate(now).to_string();
        assert_eq!(totp.check(&code, now), Some(now / 30));
        assert_eq!(totp.check(&code, now + 30), Some(now / 30));
        assert_eq!(totp.check(&code, now - 30), Some(now / 30));
        assert_eq!(totp.check(&code, now + 60), None);
        assert_eq!(totp.check("000000x", now), None);
    }

    #[test]
    fn recovery_codes_are_random_and_compared_loosely() {
        let a = generate_recovery_code().unwrap();
        assert_eq!(a.len(), 13);
        assert_ne!(a, generate_recovery_code().unwrap());
        assert!(!looks_like_totp(&a));
        assert_eq!(
            hash_recovery_code(&a),
            hash_recovery_code(&a.to_lowercase().replace('-', " "))
        );
    }
}
