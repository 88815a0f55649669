//! Which account a provider's verified identity signs in as, and with which role: the one
//! linked to it, the one being linked, one the org's own directory made (SCIM), or a new one;
//! never another existing account on the provider's word alone. When the connection maps groups to roles, the groups decide the role
//! at every sign-in (the directory is the source of truth).

use time::OffsetDateTime;

use super::claims::default_role;
use super::token::Assertion;
use super::{Sso, failure};
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult, SsoFailure};
use crate::domain::org::{Name, Role};
use crate::domain::origin::RequestOrigin;
use crate::domain::user::{NewUser, UserRecord};
use crate::store::records::{Joining, MembershipPatch, ScimUserLookup};
use crate::store::{SsoConnectionRecord, SsoLoginRecord, StoreError};

impl Sso {
    /// The account behind the provider's identity, as an active member of the org: the one
    /// linked to it; or, in a sign-on started to link, the caller's account when the asserted
    /// email is its own; or a new account when none has this email and the org allows
    /// just-in-time provisioning. An existing account that is not linked is refused, whatever
    /// the provider asserts: an org admin controls their provider and could assert anyone.
    /// `role` is what the groups give (`None`: the mapping names no groups).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn account_for(
        &self,
        connection: &SsoConnectionRecord,
        login: &SsoLoginRecord,
        assertion: &Assertion,
        email: &Email,
        role: Option<Role>,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<(UserRecord, Role)> {
        let org_id = connection.org_id;
        let issuer = connection.issuer.as_str();
        let subject = assertion.subject.as_str();
        let identity = (issuer, subject);
        if let Some(user_id) = self.store.sso_identity(org_id, issuer, subject).await? {
            if login.link_user_id.is_some_and(|linking| linking != user_id) {
                return Err(failure(SsoFailure::LinkMismatch));
            }
            let user = self.store.user_by_id(user_id).await?;
            let member = self.active_member(user, org_id).await?;
            return self.with_role(member, role, connection, origin, now).await;
        }
        if let Some(linking) = login.link_user_id {
            let user = self.store.user_by_id(linking).await?;
            let same_email = user
                .as_ref()
                .is_some_and(|u| Email::parse(&u.email).is_ok_and(|e| e.key() == email.key()));
            if !same_email {
                return Err(failure(SsoFailure::LinkMismatch));
            }
            let (user, current) = self.active_member(user, org_id).await?;
            let audit = NewAuditEvent::new("sso.linked", now)
                .from(origin)
                .org(org_id)
                .subject_user(user.id)
                .details(serde_json::json!({
                    "connectionId": connection.id,
                    "issuer": issuer,
                    "email": email.as_str(),
                }));
            self.store
                .link_sso_identity(org_id, identity, user.id, to_millis(now), &audit)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => failure(SsoFailure::LinkMismatch),
                    other => other.into(),
                })?;
            return self
                .with_role((user, current), role, connection, origin, now)
                .await;
        }
        if let Some(existing) = self.store.user_by_email(&email.key()).await? {
            if !self.made_by_directory(&existing, org_id).await? {
                return Err(failure(SsoFailure::NotLinked));
            }
            let audit = NewAuditEvent::new("sso.linked", now)
                .from(origin)
                .org(org_id)
                .subject_user(existing.id)
                .details(serde_json::json!({
                    "connectionId": connection.id,
                    "issuer": issuer,
                    "email": email.as_str(),
                    "via": "scim",
                }));
            self.store
                .link_sso_identity(org_id, identity, existing.id, to_millis(now), &audit)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => failure(SsoFailure::LinkMismatch),
                    other => other.into(),
                })?;
            let member = self.active_member(Some(existing), org_id).await?;
            return self.with_role(member, role, connection, origin, now).await;
        }
        // An org that signs this domain in through SSO takes its invitations here: the
        // invitation lets the address in with its role, with or without just-in-time accounts.
        let now_ms = to_millis(now);
        if let Some(invitation) = self
            .store
            .open_invitation(org_id, &email.key(), now_ms)
            .await?
        {
            let (first, last) = names(assertion)?;
            let user = NewUser {
                membership: Some((org_id, invitation.role)),
                sso_identity: Some((issuer.to_owned(), subject.to_owned())),
                ..NewUser::person(email, first, last, now_ms)
            };
            let audit = NewAuditEvent::new("invitation.accepted", now)
                .from(origin)
                .org(org_id)
                .subject(invitation.public_id.clone())
                .details(serde_json::json!({ "via": "sso", "connectionId": connection.id }));
            let user_id = self
                .store
                .accept_invitation(
                    None,
                    invitation.id,
                    Joining::NewUser(Box::new(user)),
                    now_ms,
                    &audit,
                )
                .await?;
            let user =
                self.store.user_by_id(user_id).await?.ok_or_else(|| {
                    DomainError::internal("an accepted invitation's user vanished")
                })?;
            return Ok((user, invitation.role));
        }
        if !connection.allow_jit {
            return Err(failure(SsoFailure::NoAccount));
        }
        let role = role
            .or_else(|| default_role(&connection.claims))
            .ok_or(failure(SsoFailure::NoRole))?;
        let (first, last) = names(assertion)?;
        let audit = NewAuditEvent::new("user.created", now)
            .from(origin)
            .org(org_id)
            .details(serde_json::json!({
                "email": email.as_str(),
                "via": "sso",
                "connectionId": connection.id,
                "role": role.as_str(),
            }));
        let user = self
            .store
            .create_user(
                NewUser {
                    membership: Some((org_id, role)),
                    sso_identity: Some((issuer.to_owned(), subject.to_owned())),
                    ..NewUser::person(email, first, last, to_millis(now))
                },
                &audit,
            )
            .await?;
        Ok((user, role))
    }

    /// Whether the org's own directory made the account (through SCIM, in the org's verified
    /// domains, with no password anyone could have set): it is the org's person already, so
    /// the org's provider's identity for the address links to it at the first sign-in, as a
    /// just-in-time account would have been made. Any other existing account is linked by its
    /// owner, signed in.
    async fn made_by_directory(&self, user: &UserRecord, org_id: i64) -> DomainResult<bool> {
        if user.home_org_id != Some(org_id)
            || user.password_hash.is_some()
            || user.is_platform_admin
        {
            return Ok(false);
        }
        let provisioned = self
            .store
            .scim_users(org_id, &ScimUserLookup::Uuid(user.uuid.clone()))
            .await?;
        Ok(provisioned.iter().any(|m| m.version > 0))
    }

    /// The member with the role the groups give, their membership changed when it differs.
    /// A change that would leave the org without an active admin is not made: the member
    /// keeps the role, and the refusal is audited.
    async fn with_role(
        &self,
        (user, current): (UserRecord, Role),
        asserted: Option<Role>,
        connection: &SsoConnectionRecord,
        origin: &RequestOrigin,
        now: OffsetDateTime,
    ) -> DomainResult<(UserRecord, Role)> {
        let Some(role) = asserted.filter(|&role| role != current) else {
            return Ok((user, current));
        };
        let audit = NewAuditEvent::new("member.updated", now)
            .from(origin)
            .org(connection.org_id)
            .subject_user(user.id)
            .details(serde_json::json!({
                "role": role.as_str(),
                "via": "sso",
                "connectionId": connection.id,
            }));
        let patch = MembershipPatch {
            role: Some(role),
            is_active: None,
        };
        match self
            .store
            .update_membership(connection.org_id, user.id, &patch, to_millis(now), &audit)
            .await
        {
            Ok(_) => Ok((user, role)),
            Err(StoreError::Conflict(_)) => {
                let refused = NewAuditEvent::new("member.updated", now)
                    .from(origin)
                    .org(connection.org_id)
                    .subject_user(user.id)
                    .failed("last_admin")
                    .details(serde_json::json!({ "role": role.as_str(), "via": "sso" }));
                self.store.record_audit(&refused).await?;
                Ok((user, current))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The user's role in the org, when both the user and the membership are active.
    async fn active_member(
        &self,
        user: Option<UserRecord>,
        org_id: i64,
    ) -> DomainResult<(UserRecord, Role)> {
        let Some(user) = user.filter(|u| u.is_active) else {
            return Err(failure(SsoFailure::NoAccount));
        };
        match self.store.membership(user.id, org_id).await? {
            Some(m) if m.is_active => Ok((user, m.role)),
            _ => Err(failure(SsoFailure::NoAccount)),
        }
    }
}

/// The names the provider asserted, as an account's (empty when it asserted none).
fn names(assertion: &Assertion) -> DomainResult<(Name, Name)> {
    let given = assertion.given_name.as_deref().unwrap_or("");
    let family = assertion.family_name.as_deref().unwrap_or("");
    Ok((
        Name::parse("first", given, true)?,
        Name::parse("last", family, true)?,
    ))
}
