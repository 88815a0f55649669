//! Sign-ons coreauth starts for its own surfaces, so that an SSO-only admin is not locked out of
//! them: the API documentation (the callback sets its cookie) and devices without a browser of
//! their own, such as the CLI (RFC 8628's shape: the device shows a short code, the person
//! confirms it in any browser and signs in at the provider, the device polls for the session).
//! The session never travels through the browser to the device: it waits sealed in the store
//! until the device that holds the device code takes it, once.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Sso, SsoStart, random_secret, sha256_hex};
use crate::domain::auth::IssuedToken;
use crate::domain::clock::to_millis;
use crate::domain::error::{DomainError, DomainResult, SsoFailure};
use crate::domain::org::Role;
use crate::domain::origin::RequestOrigin;
use crate::domain::throttle::Subject;
use crate::store::SsoDeviceRecord;

/// How long a device sign-in may take, from the request to the person signing in.
const DEVICE_TTL: Duration = Duration::from_secs(10 * 60);

/// How often a device polls, in seconds.
pub const DEVICE_INTERVAL: u64 = 2;

/// The user code's letters: no vowels (no words), none that read alike.
const USER_CODE_LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// Where the callback hands a sign-on's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HandOff {
    /// To the browser that asked (JSON or `returnTo`).
    Caller,
    Docs,
    /// To the device sign-in with this id.
    Device(String),
}

impl HandOff {
    pub(super) fn stored(&self) -> Option<String> {
        match self {
            Self::Caller => None,
            Self::Docs => Some("docs".into()),
            Self::Device(id) => Some(format!("device:{id}")),
        }
    }

    pub(super) fn from_stored(stored: Option<&str>) -> Self {
        match stored {
            Some("docs") => Self::Docs,
            Some(other) => match other.strip_prefix("device:") {
                Some(id) => Self::Device(id.to_owned()),
                None => Self::Caller,
            },
            None => Self::Caller,
        }
    }
}

/// What a device shows its user and polls with.
pub struct DeviceStart {
    pub device_code: String,
    /// As shown: `BCDF-GHJK`.
    pub user_code: String,
    pub expires_in: u64,
}

/// A device sign-in waiting for its person, as the confirmation page shows it.
pub struct PendingDevice {
    pub user_code: String,
    pub client: Option<String>,
}

/// The session a device takes, sealed while it waits.
#[derive(serde::Serialize, serde::Deserialize)]
struct HandedSession {
    token: String,
    expires_at: i64,
    user_id: i64,
    org_id: i64,
    role: String,
    password_expires_at: Option<i64>,
    mfa_enrollment_required: bool,
    mfa_required: bool,
}

fn new_user_code() -> DomainResult<String> {
    let mut bytes = [0u8; USER_CODE_LEN];
    getrandom::fill(&mut bytes).map_err(DomainError::internal)?;
    // 256 is not a multiple of 20: the first letters are a little likelier (13 in 256 against
    // 12), which costs a guesser nothing worth having against 20^8 codes and a throttle.
    let letters: Vec<char> = bytes
        .iter()
        .map(|b| char::from(USER_CODE_LETTERS[usize::from(*b) % USER_CODE_LETTERS.len()]))
        .collect();
    let (first, second) = letters.split_at(USER_CODE_LEN / 2);
    Ok(format!(
        "{}-{}",
        first.iter().collect::<String>(),
        second.iter().collect::<String>()
    ))
}

/// A user code as typed (any case, with or without the dash) as it is stored: hashed.
fn user_code_key(typed: &str) -> Option<String> {
    let letters: String = typed
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (letters.len() == USER_CODE_LEN && letters.bytes().all(|b| USER_CODE_LETTERS.contains(&b)))
        .then(|| sha256_hex(&letters))
}

fn seal_binding(device_id: &str) -> String {
    format!("sso-device:{device_id}")
}

/// The refusal a device hears: the sign-in's own reason, when it is one a person can act on.
fn refusal_of(code: &str) -> SsoFailure {
    [
        SsoFailure::EmailUnverified,
        SsoFailure::DomainMismatch,
        SsoFailure::NoAccount,
        SsoFailure::NotLinked,
        SsoFailure::EmailMissing,
        SsoFailure::NoRole,
        SsoFailure::InvalidToken,
    ]
    .into_iter()
    .find(|failure| failure.code() == code)
    .unwrap_or(SsoFailure::Denied)
}

impl Sso {
    /// A device asks to sign in `email` through the connection serving its domain. Anonymous:
    /// counted against the caller's address's sign-in traffic.
    pub async fn start_device(
        &self,
        email: &str,
        client: Option<String>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<DeviceStart> {
        self.count_anonymous(origin, Subject::Traffic, now).await?;
        let Some((org_id, connection_id)) = self.connection_for_email(email).await? else {
            return Err(DomainError::invalid(
                "this email signs in with a password, not single sign-on",
            ));
        };
        let device_code = random_secret()?;
        let user_code = new_user_code()?;
        let created_at = to_millis(now);
        let ttl = i64::try_from(DEVICE_TTL.as_millis()).unwrap_or(i64::MAX);
        self.store
            .create_sso_device(&SsoDeviceRecord {
                id: sha256_hex(&device_code),
                user_code: user_code_key(&user_code)
                    .ok_or_else(|| DomainError::internal("a user code of the wrong shape"))?,
                org_id,
                connection_id,
                client: client.map(|c| c.chars().take(100).collect()),
                created_at,
                expires_at: created_at + ttl,
                sealed_session: None,
                refusal: None,
                taken_at: None,
            })
            .await?;
        Ok(DeviceStart {
            device_code,
            user_code,
            expires_in: DEVICE_TTL.as_secs(),
        })
    }

    /// The device sign-in waiting for this user code: `NotFound` for one unknown, expired or
    /// done. A guess from the caller's address, as user codes are short; a right one is given
    /// back.
    async fn waiting_device(
        &self,
        typed: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoDeviceRecord> {
        let guess = self.throttle.guess(None, origin, now).await?;
        let unknown = || DomainError::NotFound("device sign-in (check the code, or start again)");
        let key = user_code_key(typed).ok_or_else(unknown)?;
        let device = self
            .store
            .sso_device_by_user_code(&key)
            .await?
            .filter(|d| {
                d.expires_at > to_millis(now) && d.sealed_session.is_none() && d.refusal.is_none()
            })
            .ok_or_else(unknown)?;
        self.throttle.settle(&guess.proved()).await?;
        Ok(device)
    }

    /// What the confirmation page shows of the device sign-in with this code.
    pub async fn pending_device(
        &self,
        typed: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<PendingDevice> {
        let device = self.waiting_device(typed, origin, now).await?;
        Ok(PendingDevice {
            user_code: typed.trim().to_ascii_uppercase(),
            client: device.client,
        })
    }

    /// The person confirmed the code: a sign-on at the device's connection, bound to this
    /// browser, whose session goes to the device.
    pub async fn start_device_sign_in(
        &self,
        typed: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoStart> {
        let device = self.waiting_device(typed, origin, now).await?;
        let connection = self
            .connection_of(device.org_id, Some(device.connection_id))
            .await?;
        let hand_off = HandOff::Device(device.id);
        self.start_in_browser(&connection, None, device.client, hand_off, now)
            .await
    }

    /// The API documentation's sign-in for an email whose domain signs in through SSO; `None`
    /// when it signs in with a password.
    pub async fn start_docs(
        &self,
        email: &str,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<Option<SsoStart>> {
        self.count_anonymous(origin, Subject::Traffic, now).await?;
        let Some((org_id, connection_id)) = self.connection_for_email(email).await? else {
            return Ok(None);
        };
        let connection = self.connection_of(org_id, Some(connection_id)).await?;
        let client = Some("swagger-docs".to_owned());
        self.start_in_browser(&connection, None, client, HandOff::Docs, now)
            .await
            .map(Some)
    }

    /// Leaves the session for the device, sealed.
    pub(super) async fn hand_to_device(
        &self,
        device_id: &str,
        issued: &IssuedToken,
    ) -> DomainResult<()> {
        let handed = HandedSession {
            token: issued.token.clone(),
            expires_at: issued.expires_at,
            user_id: issued.user.id,
            org_id: issued.org_id,
            role: issued.role.as_str().to_owned(),
            password_expires_at: issued.password_expires_at,
            mfa_enrollment_required: issued.mfa_enrollment_required,
            mfa_required: issued.mfa_required,
        };
        let json =
            zeroize::Zeroizing::new(serde_json::to_vec(&handed).map_err(DomainError::internal)?);
        let sealed = self.secrets.seal(&json, &seal_binding(device_id))?;
        if !self
            .store
            .complete_sso_device(device_id, Some(&sealed), None)
            .await?
        {
            return Err(DomainError::Sso(SsoFailure::ExpiredToken));
        }
        Ok(())
    }

    /// The device's poll: the session once the person signed in (once only).
    pub async fn device_session(
        &self,
        device_code: &str,
        now: OffsetDateTime,
    ) -> DomainResult<IssuedToken> {
        let expired = || DomainError::Sso(SsoFailure::ExpiredToken);
        let id = sha256_hex(device_code);
        let (device, taken) = self
            .store
            .take_sso_device(&id, to_millis(now))
            .await?
            .ok_or_else(expired)?;
        if let Some(code) = &device.refusal {
            return Err(DomainError::Sso(refusal_of(code)));
        }
        let Some(sealed) = device.sealed_session.as_deref() else {
            if device.expires_at <= to_millis(now) {
                return Err(expired());
            }
            return Err(DomainError::Sso(SsoFailure::AuthorizationPending));
        };
        if !taken {
            // Another poll took it before.
            return Err(expired());
        }
        let opened = self.secrets.open(sealed, &seal_binding(&id))?;
        let handed: HandedSession =
            serde_json::from_slice(&opened.plaintext).map_err(DomainError::internal)?;
        let user = self
            .store
            .user_by_id(handed.user_id)
            .await?
            .ok_or_else(expired)?;
        Ok(IssuedToken {
            token: handed.token,
            expires_at: handed.expires_at,
            user,
            org_id: handed.org_id,
            role: Role::from_stored(&handed.role).ok_or_else(expired)?,
            password_expires_at: handed.password_expires_at,
            mfa_enrollment_required: handed.mfa_enrollment_required,
            mfa_required: handed.mfa_required,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_read_back_however_they_are_typed() {
        let code = new_user_code().unwrap();
        assert_eq!(code.len(), USER_CODE_LEN + 1);
        assert_eq!(code.as_bytes()[4], b'-');
        let key = user_code_key(&code).unwrap();
        assert_eq!(user_code_key(&code.to_lowercase()), Some(key.clone()));
        assert_eq!(user_code_key(&code.replace('-', " ")), Some(key));
        assert_eq!(user_code_key("BCDF-GHJ"), None, "too short");
        assert_eq!(user_code_key("ABCD-EFGH"), None, "vowels are never issued");
    }

    #[test]
    fn hand_offs_are_stored_and_read_back() {
        for hand_off in [
            HandOff::Caller,
            HandOff::Docs,
            HandOff::Device("ab12".into()),
        ] {
            assert_eq!(HandOff::from_stored(hand_off.stored().as_deref()), hand_off);
        }
    }
}
