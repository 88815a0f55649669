//! How a sign-on in flight ends, for either protocol: the OpenID callback (`finish`), the
//! checks every sign-on passes (`check_login`: not expired, the same browser), the session an
//! asserted identity opens (`sign_in`), and the audit of a refusal (`concluded`). SAML's ACS is
//! in `saml`.

use time::OffsetDateTime;

use super::hand_off::HandOff;
use super::token::Assertion;
use super::{Callback, Refusal, Sso, SsoOutcome, claims, failure, failure_detail, sha256_hex};
use crate::domain::audit::NewAuditEvent;
use crate::domain::auth::Vouched;
use crate::domain::clock::to_millis;
use crate::domain::error::{DomainError, DomainResult, SsoFailure};
use crate::domain::origin::RequestOrigin;
use crate::store::{SsoConnectionRecord, SsoLoginRecord};

impl Sso {
    /// Finishes a login. Every failure is audited with its reason.
    pub async fn callback(
        &self,
        callback: Callback,
        origin: RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoOutcome> {
        let state = callback.state.clone().unwrap_or_default();
        let login = if state.is_empty() {
            None
        } else {
            self.store.take_sso_login(&state, to_millis(now)).await?
        };
        let result = match &login {
            Some(login) => self.finish(login, callback, &origin, now).await,
            None => Err(failure(SsoFailure::StateInvalid).into()),
        };
        self.concluded(login.as_ref(), result, &origin, now).await
    }

    /// A finished sign-on's answer; a refusal is audited with its reason (successes are
    /// audited as `login.succeeded`, method sso, with the session), and a device waiting for
    /// the sign-on is told.
    pub(super) async fn concluded(
        &self,
        login: Option<&SsoLoginRecord>,
        result: Result<SsoOutcome, Refusal>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<SsoOutcome> {
        let Refusal { error, details } = match result {
            Ok(outcome) => return Ok(outcome),
            Err(refusal) => refusal,
        };
        let hand_off = HandOff::from_stored(login.and_then(|l| l.hand_off.as_deref()));
        if let HandOff::Device(device) = &hand_off {
            self.store
                .complete_sso_device(device, None, Some(error.code()))
                .await?;
        }
        let mut audit = NewAuditEvent::new("sso.login", now)
            .from(origin)
            .failed(error.code())
            .details(details);
        audit.org_id = login.map(|l| l.org_id);
        if let DomainError::Sso(SsoFailure::IdpUnreachable(_)) = error {
            audit.details = serde_json::json!({ "detail": failure_detail(&error) });
        }
        self.store.record_audit(&audit).await?;
        Err(error)
    }

    /// Refuses a sign-on in flight that expired, or that comes back to another browser than
    /// the one that started it.
    pub(super) fn check_login(
        &self,
        login: &SsoLoginRecord,
        browser_secret: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), Refusal> {
        if login.expires_at <= to_millis(now) {
            return Err(failure(SsoFailure::StateExpired).into());
        }
        if let Some(expected) = &login.browser_binding {
            use subtle::ConstantTimeEq;
            let presented = browser_secret.map(sha256_hex);
            let same =
                presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
            if !same {
                return Err(failure(SsoFailure::BrowserMismatch).into());
            }
        }
        Ok(())
    }

    async fn finish(
        &self,
        login: &SsoLoginRecord,
        callback: Callback,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> Result<SsoOutcome, Refusal> {
        self.check_login(login, callback.browser_secret.as_deref(), now)?;
        if let Some(error) = callback.error.as_deref() {
            return Err(failure(if error == "access_denied" {
                SsoFailure::Denied
            } else {
                SsoFailure::ProviderError(error.chars().take(100).collect())
            })
            .into());
        }
        let code = callback
            .code
            .ok_or_else(|| DomainError::invalid("the callback carries no code"))?;
        let connection = self
            .connection_of(login.org_id, Some(login.connection_id))
            .await?;
        if connection.saml.is_some() {
            return Err(failure(SsoFailure::StateInvalid).into());
        }
        let assertion = self.assertion(&connection, login, code, now).await?;
        self.sign_in(&connection, login, assertion, origin, now)
            .await
    }

    /// Opens the session an asserted identity signs in to, by the connection's mapping, and
    /// hands it where the sign-on said.
    pub(super) async fn sign_in(
        &self,
        connection: &SsoConnectionRecord,
        login: &SsoLoginRecord,
        assertion: Assertion,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> Result<SsoOutcome, Refusal> {
        let refused = |failure: SsoFailure| {
            // What the provider asserted, for the audit trail of a refusal: the admin reading
            // it can tell a misconfigured mapping from an attempt.
            let claims = &assertion.claims;
            let shown = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            Refusal {
                error: DomainError::Sso(failure),
                details: serde_json::json!({
                    "connectionId": connection.id,
                    "subject": assertion.subject,
                    "email": shown("email"),
                    "preferredUsername": shown("preferred_username"),
                    "upn": shown("upn"),
                }),
            }
        };
        let email =
            claims::asserted_email(&connection.claims, &assertion.claims).map_err(refused)?;
        let served = self
            .store
            .sso_connection_for_domain(email.domain().as_str())
            .await?;
        if served != Some((connection.org_id, connection.id)) {
            return Err(refused(SsoFailure::DomainMismatch));
        }
        // A connection that maps no groups of its own takes the org's groups → role table (the
        // one the org's SCIM groups give roles by).
        let mut mapping = connection.claims.clone();
        if mapping.role_mapping.is_empty() {
            let table = self.store.group_roles(connection.org_id).await?;
            mapping.role_mapping = table
                .into_iter()
                .map(|(group, role)| (group, role.as_str().to_owned()))
                .collect();
        }
        let role = claims::asserted_role(&mapping, &assertion.claims).map_err(refused)?;
        let (user, role) = self
            .account_for(connection, login, &assertion, &email, role, origin, now)
            .await
            .map_err(|e| match e {
                DomainError::Sso(failure) => refused(failure),
                other => other.into(),
            })?;
        let issued = self
            .auth
            .open_sso_session(
                Vouched {
                    user,
                    org_id: connection.org_id,
                    role,
                    multi_factor: assertion.multi_factor,
                },
                login.client.clone(),
                origin.clone(),
                now,
            )
            .await?;
        Ok(match HandOff::from_stored(login.hand_off.as_deref()) {
            HandOff::Caller => SsoOutcome::Caller {
                issued,
                return_to: login.return_to.clone(),
            },
            HandOff::Docs => SsoOutcome::Docs(issued),
            HandOff::Device(device) => {
                self.hand_to_device(&device, &issued).await?;
                SsoOutcome::Device {
                    client: login.client.clone(),
                }
            }
        })
    }
}
