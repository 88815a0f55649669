//! Administration of orgs, users and memberships, and who may do it: a platform admin anywhere,
//! an org admin within the org of their token.

use std::sync::Arc;

use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::credentials::Credentials;
use super::email::{Email, EmailDomain};
use super::error::{DomainError, DomainResult};
use super::mfa::Mfa;
use super::org::{MembershipPatch, MembershipRecord, Name, OrgRecord, Role};
use super::password::{Password, PasswordHashing};
use super::policy::PasswordPolicy;
use super::policy::policy_of;
use super::session::Principal;
use super::user::{NewUser, UserPatch, UserRecord, Username};
use crate::cache::CachedReads;
use crate::store::{PasswordChange, Revoked, Store};

/// A user as an admin asked for it, before validation.
#[derive(Debug)]
pub struct UserRequest {
    pub email: String,
    pub password: Password,
    pub first: String,
    pub last: String,
    pub org_id: i64,
    pub role: String,
    pub username: Option<String>,
}

pub struct Admin {
    store: Arc<dyn Store>,
    reads: Arc<CachedReads>,
    hashing: Arc<PasswordHashing>,
    credentials: Arc<Credentials>,
    mfa: Arc<Mfa>,
}

const MAX_EMAIL_DOMAINS: usize = 100;

impl Admin {
    pub fn new(
        store: Arc<dyn Store>,
        reads: Arc<CachedReads>,
        hashing: Arc<PasswordHashing>,
        credentials: Arc<Credentials>,
        mfa: Arc<Mfa>,
    ) -> Self {
        Self {
            store,
            reads,
            hashing,
            credentials,
            mfa,
        }
    }

    /// The first admin of an empty database: org 1 ("Default"), and this user as its admin and a
    /// platform admin. `None` when the database already has users (nothing changes then).
    pub async fn bootstrap(
        &self,
        email: &str,
        password: Password,
        now: OffsetDateTime,
    ) -> DomainResult<Option<UserRecord>> {
        let email = Email::parse(email)?;
        PasswordPolicy::default().check(&password)?;
        let hash = self.hashing.hash(&password).await?;
        let first = Name::parse("first", "Admin", false)?;
        let admin = NewUser {
            password_hash: Some(hash),
            is_platform_admin: true,
            // The store makes it the admin of org 1 (which it creates); this makes org 1 home.
            membership: Some((1, Role::Admin)),
            ..NewUser::person(
                &email,
                first,
                Name::parse("last", "", true)?,
                to_millis(now),
            )
        };
        let audit = NewAuditEvent::new("admin.bootstrapped", now)
            .details(serde_json::json!({ "email": &admin.email }));
        Ok(self.store.bootstrap(admin, to_millis(now), &audit).await?)
    }

    pub async fn create_org(
        &self,
        caller: &Principal,
        name: &str,
        email_domains: &[String],
        now: OffsetDateTime,
    ) -> DomainResult<OrgRecord> {
        if !caller.is_platform_admin {
            return Err(DomainError::Forbidden);
        }
        let name = Name::parse("name", name, false)?;
        if email_domains.len() > MAX_EMAIL_DOMAINS {
            return Err(DomainError::invalid(format!(
                "at most {MAX_EMAIL_DOMAINS} email domains"
            )));
        }
        let domains = email_domains
            .iter()
            .map(|d| EmailDomain::parse(d).map(|d| d.as_str().to_owned()))
            .collect::<DomainResult<Vec<_>>>()?;
        let audit = NewAuditEvent::new("org.created", now)
            .by(caller)
            .details(serde_json::json!({ "name": name.as_str(), "emailDomains": domains }));
        Ok(self
            .store
            .create_org(name.as_str(), &domains, to_millis(now), &audit)
            .await?)
    }

    pub async fn create_user(
        &self,
        caller: &Principal,
        request: UserRequest,
        now: OffsetDateTime,
    ) -> DomainResult<UserRecord> {
        if !caller.administers_org(request.org_id) {
            return Err(DomainError::Forbidden);
        }
        let email = Email::parse(&request.email)?;
        let first = Name::parse("first", &request.first, false)?;
        let last = Name::parse("last", &request.last, true)?;
        let role = Role::parse(&request.role)?;
        let username = request
            .username
            .as_deref()
            .map(Username::parse)
            .transpose()?;
        let Some(org) = self.store.org(request.org_id).await? else {
            return Err(DomainError::NotFound("org"));
        };
        // Email addresses are unique across orgs, so "taken" would tell an org admin that an
        // account exists elsewhere, and an org minting accounts for any address could squat
        // another org's people before they arrive. An org admin creates accounts only in the
        // domains the org verifiably holds; anyone else joins by invitation. The refusal comes
        // before any look-up of the address, the same whether or not it has an account.
        if !caller.is_platform_admin && !self.holds_domain(&org, &email).await? {
            return Err(DomainError::ForbiddenBecause(
                "org admins create accounts only for addresses in the org's verified email \
                 domains; invite anyone else"
                    .into(),
            ));
        }
        policy_of(&self.reads, request.org_id)
            .await?
            .check(&request.password)?;
        let hash = self.hashing.hash(&request.password).await?;
        let audit = NewAuditEvent::new("user.created", now)
            .by(caller)
            .org(request.org_id)
            .details(serde_json::json!({ "email": email.as_str(), "role": role.as_str() }));
        Ok(self
            .store
            .create_user(
                NewUser {
                    password_hash: Some(hash),
                    membership: Some((request.org_id, role)),
                    username: username.as_ref().map(Username::stored),
                    ..NewUser::person(&email, first, last, to_millis(now))
                },
                &audit,
            )
            .await?)
    }

    pub async fn add_member(
        &self,
        caller: &Principal,
        org_id: i64,
        user_id: i64,
        role: &str,
        now: OffsetDateTime,
    ) -> DomainResult<MembershipRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let role = Role::parse(role)?;
        if !caller.is_platform_admin && !self.administers_some_org_of(caller, user_id).await? {
            // The same answer for unknown ids and for other orgs' users: no id oracle.
            return Err(DomainError::ForbiddenBecause(
                "only a user already in an org you administer can be added; anyone else joins \
                 by invitation or through a platform admin"
                    .into(),
            ));
        }
        let audit = NewAuditEvent::new("member.added", now)
            .by(caller)
            .org(org_id)
            .subject_user(user_id)
            .details(serde_json::json!({ "role": role.as_str() }));
        Ok(self
            .store
            .add_membership(org_id, user_id, role, to_millis(now), &audit)
            .await?)
    }

    /// Changes a role or (de)activates a membership; deactivation ends the member's sessions in
    /// that org at once.
    pub async fn update_member(
        &self,
        caller: &Principal,
        org_id: i64,
        user_id: i64,
        patch: MembershipPatch,
        now: OffsetDateTime,
    ) -> DomainResult<MembershipRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        let audit = NewAuditEvent::new("member.updated", now)
            .by(caller)
            .org(org_id)
            .subject_user(user_id)
            .details(serde_json::json!({
                "role": patch.role.map(Role::as_str),
                "isActive": patch.is_active,
            }));
        self.store
            .update_membership(org_id, user_id, &patch, to_millis(now), &audit)
            .await?
            .map(|(membership, _)| membership)
            .ok_or(DomainError::NotFound("membership"))
    }

    /// Changes a user's names or deactivates them (ending all their sessions at once).
    pub async fn update_user(
        &self,
        caller: &Principal,
        user_id: i64,
        patch: UserPatch,
        now: OffsetDateTime,
    ) -> DomainResult<UserRecord> {
        self.check_administers_account(caller, user_id).await?;
        if patch.is_active == Some(false) && user_id == caller.user_id {
            return Err(DomainError::Conflict(
                "you cannot deactivate yourself".into(),
            ));
        }
        let audit = NewAuditEvent::new("user.updated", now)
            .by(caller)
            .subject_user(user_id)
            .details(serde_json::json!({
                "first": patch.first,
                "last": patch.last,
                "isActive": patch.is_active,
                "username": patch.username.as_ref().map(|u| u.as_ref().map(|(name, _)| name)),
            }));
        self.store
            .update_user(user_id, &patch, to_millis(now), &audit)
            .await?
            .map(|(user, _)| user)
            .ok_or(DomainError::NotFound("user"))
    }

    /// Sets a user's password (checked against the strictest policy of the user's orgs and the
    /// user's history) and ends all their sessions; with `must_change` their next login answers
    /// `password_expired` until they choose a new one.
    /// With `api_keys`, every API key of the user goes too, in the same transaction.
    pub async fn reset_password(
        &self,
        caller: &Principal,
        user_id: i64,
        new: Password,
        must_change: bool,
        api_keys: bool,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        let target = self.check_administers_account(caller, user_id).await?;
        let policy = policy_of(&self.reads, caller.org_id).await?;
        let new_hash = self.credentials.vet(&target, policy, &new).await?;
        let audit = NewAuditEvent::new("password.reset", now)
            .by(caller)
            .subject_user(user_id)
            .details(serde_json::json!({ "mustChange": must_change }));
        self.store
            .set_password(
                &PasswordChange {
                    user_id,
                    new_hash,
                    expected_hash: None,
                    must_change,
                    now: to_millis(now),
                    keep_session: None,
                    delete_api_keys: api_keys,
                    consumes_token: None,
                },
                &audit,
            )
            .await?;
        Ok(())
    }

    /// Removes a user's second factor (a lost phone); they log in with the password alone and
    /// can enrol again.
    pub async fn reset_mfa(
        &self,
        caller: &Principal,
        user_id: i64,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        self.check_administers_account(caller, user_id).await?;
        if self.mfa.reset(caller, user_id, now).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("TOTP enrolment"))
        }
    }

    /// Ends the user's sessions: all of them for an admin of the account (home org or
    /// platform), those in the caller's org for the admin of another org the user belongs to.
    /// With `api_keys`, the user's API keys go too (in the same scope): keys serve static
    /// integrations, so ending a person's sessions leaves them unless asked, but an account
    /// thought compromised wants both gone.
    pub async fn revoke_sessions_of(
        &self,
        caller: &Principal,
        user_id: i64,
        api_keys: bool,
        now: OffsetDateTime,
    ) -> DomainResult<Revoked> {
        let in_org = match self.check_administers_account(caller, user_id).await {
            Ok(_) => None,
            // `Forbidden` comes after `is_member_here` was found true.
            Err(DomainError::Forbidden) if caller.role.is_admin() => Some(caller.org_id),
            Err(e) => return Err(e),
        };
        let audit = NewAuditEvent::new("sessions.revoked", now)
            .by(caller)
            .subject_user(user_id)
            .details(serde_json::json!({ "orgId": in_org }));
        let revoked = self
            .store
            .revoke_sessions_of(user_id, in_org, to_millis(now), &audit)
            .await?;
        if api_keys {
            self.delete_keys_of(caller, user_id, in_org, now).await?;
        }
        Ok(revoked)
    }

    async fn delete_keys_of(
        &self,
        caller: &Principal,
        user_id: i64,
        in_org: Option<i64>,
        now: OffsetDateTime,
    ) -> DomainResult<u64> {
        let audit = NewAuditEvent::new("key.deleted", now)
            .by(caller)
            .subject_user(user_id)
            .details(serde_json::json!({ "orgId": in_org, "all": true }));
        Ok(self
            .store
            .delete_api_keys_of(user_id, in_org, &audit)
            .await?)
    }

    /// Account-wide actions (names, deactivation, password, second factor, every session)
    /// belong to platform admins and to the admins of the user's home org, acting through a
    /// token for it; never to an org admin over a platform admin. Each other org the user
    /// belongs to controls its own membership (`update_member`) and its sessions there. Users
    /// outside the caller's org are "not found", not "forbidden".
    async fn check_administers_account(
        &self,
        caller: &Principal,
        user_id: i64,
    ) -> DomainResult<UserRecord> {
        let target = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(DomainError::NotFound("user"))?;
        if target.is_service {
            return Err(DomainError::ForbiddenBecause(
                "this is a service account: manage it under /admin/orgs/{orgId}/service-accounts"
                    .into(),
            ));
        }
        if caller.is_platform_admin {
            return Ok(target);
        }
        if !self.is_member_here(caller, user_id).await? {
            return Err(DomainError::NotFound("user"));
        }
        let home_admin = caller.role.is_admin() && target.home_org_id == Some(caller.org_id);
        if home_admin && !target.is_platform_admin {
            Ok(target)
        } else {
            Err(DomainError::Forbidden)
        }
    }

    /// Whether the user is a member (active or not) of the caller's org.
    async fn is_member_here(&self, caller: &Principal, user_id: i64) -> DomainResult<bool> {
        Ok(self
            .store
            .membership(user_id, caller.org_id)
            .await?
            .is_some())
    }

    /// Whether the user belongs to an org the caller is an active admin of; false for unknown
    /// users and for platform admins.
    async fn administers_some_org_of(
        &self,
        caller: &Principal,
        user_id: i64,
    ) -> DomainResult<bool> {
        let Some(target) = self.store.user_by_id(user_id).await? else {
            return Ok(false);
        };
        if target.is_platform_admin {
            return Ok(false);
        }
        let theirs = self.store.memberships_of(user_id).await?;
        let mine = self.store.memberships_of(caller.user_id).await?;
        Ok(theirs.iter().any(|t| {
            mine.iter()
                .any(|m| m.org_id == t.org_id && m.is_active && m.role.is_admin())
        }))
    }

    /// Whether the email's domain is one the org holds: set on the org by a platform admin, or
    /// verified for its single sign-on (the same holding SSO settings check domains against).
    async fn holds_domain(&self, org: &OrgRecord, email: &Email) -> DomainResult<bool> {
        let holders = self
            .store
            .orgs_holding_domain(email.domain().as_str())
            .await?;
        Ok(holders.contains(&org.id))
    }
}
