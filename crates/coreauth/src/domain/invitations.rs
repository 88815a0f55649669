//! Invitations: an org's admin invites an address with a role; the invitee follows the mailed
//! link and sets a password (a new account, its address proven by the link), or, holding an
//! account already, accepts while signed in to it. Invitations expire (7 days), can be listed,
//! resent (a new link; the old one dies) and revoked.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::audit::NewAuditEvent;
use super::clock::to_millis;
use super::email::Email;
use super::error::{DomainError, DomainResult, LinkRefusal, SsoFailure};
use super::mail::links::{self, OneTimeToken, in_words};
use super::mail::settings::compose;
use super::mail::templates::{MailKind, MailVars};
use super::mail::{self};
use super::org::{Name, Role};
use super::password::{Password, PasswordHashing};
use super::policy::{password_allowed, policy_of};
use super::secrets::SecretBox;
use super::session::Principal;
use super::throttle::{Subject, Throttle};
use super::user::NewUser;
use crate::cache::CachedReads;
use crate::store::Store;
use crate::store::records::{
    InvitationRecord, Joining, NewEmailToken, NewInvitation, OrgRecord, TokenPurpose,
};

pub const INVITATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Where an invitation's link leads: a page of coreauth's that reads the token.
pub const ACCEPT_PAGE: &str = "/user/invitations/accept";

/// An invitation's state, as lists show it.
pub fn invitation_state(invitation: &InvitationRecord, now_ms: i64) -> &'static str {
    if invitation.accepted_at.is_some() {
        "accepted"
    } else if invitation.revoked_at.is_some() {
        "revoked"
    } else if invitation.expires_at <= now_ms {
        "expired"
    } else {
        "pending"
    }
}

/// What a new account gives when accepting.
#[derive(Debug)]
pub struct NewAccount {
    pub password: Password,
    pub first: String,
    pub last: String,
}

pub struct Invitations {
    store: Arc<dyn Store>,
    reads: Arc<CachedReads>,
    hashing: Arc<PasswordHashing>,
    secrets: Arc<SecretBox>,
    throttle: Arc<Throttle>,
    public_url: String,
}

impl Invitations {
    pub fn new(
        reads: Arc<CachedReads>,
        hashing: Arc<PasswordHashing>,
        secrets: Arc<SecretBox>,
        throttle: Arc<Throttle>,
        public_url: String,
    ) -> Self {
        Self {
            store: reads.store().clone(),
            reads,
            hashing,
            secrets,
            throttle,
            public_url,
        }
    }

    pub async fn invite(
        &self,
        caller: &Principal,
        org_id: i64,
        (email, role): (&str, &str),
        now: OffsetDateTime,
    ) -> DomainResult<InvitationRecord> {
        let org = self.administered(caller, org_id).await?;
        let email = Email::parse(email)?;
        let role = Role::parse(role)?;
        let key = email.key();
        let open = self
            .store
            .invitations_of(org_id)
            .await?
            .into_iter()
            .any(|i| i.email_key == key && invitation_state(&i, to_millis(now)) == "pending");
        if open {
            return Err(DomainError::Conflict(
                "this address has an open invitation: resend it".into(),
            ));
        }
        if let Some(user) = self.store.user_by_email(&key).await?
            && self.store.membership(user.id, org_id).await?.is_some()
        {
            return Err(DomainError::Conflict(
                "this address is a member of the org already".into(),
            ));
        }
        self.throttle
            .attempt(&[Subject::Recipient(&key)], now)
            .await?;
        let now_ms = to_millis(now);
        let invitation = NewInvitation {
            public_id: uuid::Uuid::new_v4().to_string(),
            org_id,
            email: email.as_str().to_owned(),
            email_key: key,
            role,
            invited_by: Some(caller.user_id),
            created_at: now_ms,
            expires_at: now_ms + millis(INVITATION_LIFETIME),
        };
        let (token, mail) = self.letter(&org, &invitation.email, now_ms).await?;
        let audit = NewAuditEvent::new("invitation.created", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({ "email": email.as_str(), "role": role.as_str() }));
        Ok(self
            .store
            .create_invitation(&invitation, &token, &mail, &audit)
            .await?)
    }

    pub async fn list(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<Vec<InvitationRecord>> {
        self.administered(caller, org_id).await?;
        Ok(self.store.invitations_of(org_id).await?)
    }

    /// A new link for an open invitation, for another 7 days; the old link dies.
    pub async fn resend(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<InvitationRecord> {
        let org = self.administered(caller, org_id).await?;
        let invitation = self.find(org_id, id).await?;
        if invitation.accepted_at.is_some() || invitation.revoked_at.is_some() {
            return Err(DomainError::Conflict(
                "this invitation was accepted or revoked".into(),
            ));
        }
        self.throttle
            .attempt(&[Subject::Recipient(&invitation.email_key)], now)
            .await?;
        let now_ms = to_millis(now);
        let (token, mail) = self.letter(&org, &invitation.email, now_ms).await?;
        let token = NewEmailToken {
            invitation_id: Some(invitation.id),
            ..token
        };
        let audit = NewAuditEvent::new("invitation.resent", now)
            .by(caller)
            .org(org_id)
            .subject(invitation.public_id.clone());
        self.store
            .create_email_token(&token, &mail, None, &audit)
            .await?;
        self.find(org_id, id).await
    }

    pub async fn revoke(
        &self,
        caller: &Principal,
        org_id: i64,
        id: &str,
        now: OffsetDateTime,
    ) -> DomainResult<()> {
        self.administered(caller, org_id).await?;
        let audit = NewAuditEvent::new("invitation.revoked", now)
            .by(caller)
            .org(org_id)
            .subject(id.to_owned());
        if self
            .store
            .revoke_invitation(org_id, id, to_millis(now), &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("open invitation"))
        }
    }

    /// Accepts with a link's token: as a new account (`account`), or as the signed-in
    /// `caller` whose address was invited. The user's id and the org's.
    pub async fn accept(
        &self,
        token: &str,
        account: Option<NewAccount>,
        caller: Option<&Principal>,
        now: OffsetDateTime,
    ) -> DomainResult<(i64, i64)> {
        let now_ms = to_millis(now);
        let hash = links::hash_token(token);
        let stored = self.store.email_token(&hash).await?;
        links::usable(stored.as_ref(), TokenPurpose::Invitation, now_ms)?;
        let invitation = match stored.and_then(|t| t.invitation_id) {
            Some(id) => self.store.invitation_by_id(id).await?,
            None => None,
        }
        .ok_or(DomainError::Link(LinkRefusal::Unknown))?;
        match invitation_state(&invitation, now_ms) {
            "pending" => {}
            "expired" => return Err(DomainError::Link(LinkRefusal::Expired)),
            _ => return Err(DomainError::Link(LinkRefusal::Used)),
        }
        let email = Email::parse(&invitation.email)?;
        let existing = self.store.user_by_email(&invitation.email_key).await?;
        let mut audit = NewAuditEvent::new("invitation.accepted", now)
            .org(invitation.org_id)
            .subject(invitation.public_id.clone());
        let joining = match (existing, caller) {
            (Some(user), Some(caller)) if caller.user_id == user.id => {
                caller.require_session("accept an invitation")?;
                audit = audit.by(caller);
                Joining::Existing(user.id)
            }
            (Some(_), _) => {
                return Err(DomainError::ForbiddenBecause(
                    "an account with the invited address exists: sign in to it and accept with \
                     its session"
                        .into(),
                ));
            }
            (None, _) => {
                let connections = self.reads.sso_connections(invitation.org_id).await?;
                if !password_allowed(&connections, email.domain().as_str()) {
                    return Err(DomainError::Sso(SsoFailure::SsoRequired));
                }
                let account = account.ok_or_else(|| {
                    DomainError::invalid("give password, first and last for the new account")
                })?;
                let first = Name::parse("first", &account.first, false)?;
                let last = Name::parse("last", &account.last, true)?;
                policy_of(&self.reads, invitation.org_id)
                    .await?
                    .check(&account.password)?;
                let hash = self.hashing.hash(&account.password).await?;
                Joining::NewUser(Box::new(NewUser {
                    password_hash: Some(hash),
                    membership: Some((invitation.org_id, invitation.role)),
                    ..NewUser::person(&email, first, last, now_ms)
                }))
            }
        };
        let user_id = self
            .store
            .accept_invitation(Some(&hash), invitation.id, joining, now_ms, &audit)
            .await?;
        Ok((user_id, invitation.org_id))
    }

    /// A token for a link to `email` and its message.
    async fn letter(
        &self,
        org: &OrgRecord,
        email: &str,
        now_ms: i64,
    ) -> DomainResult<(NewEmailToken, mail::NewMail)> {
        let token = OneTimeToken::generate()?;
        let vars = MailVars {
            org: org.name.clone(),
            link: Some(links::link(&self.public_url, ACCEPT_PAGE, &token)),
            email: email.to_owned(),
            name: String::new(),
            expires: in_words(INVITATION_LIFETIME.as_secs()),
        };
        let content = compose(&self.store, Some(org.id), MailKind::Invitation, &vars).await?;
        let mail = mail::queued(
            &self.secrets,
            (Some(org.id), MailKind::Invitation.as_str()),
            email,
            &content,
            now_ms,
        )?;
        let stored = NewEmailToken {
            token_hash: token.hash,
            purpose: TokenPurpose::Invitation,
            user_id: None,
            invitation_id: None,
            email_key: None,
            created_at: now_ms,
            expires_at: now_ms + millis(INVITATION_LIFETIME),
        };
        Ok((stored, mail))
    }

    async fn administered(&self, caller: &Principal, org_id: i64) -> DomainResult<OrgRecord> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        self.store
            .org(org_id)
            .await?
            .ok_or(DomainError::NotFound("org"))
    }

    async fn find(&self, org_id: i64, id: &str) -> DomainResult<InvitationRecord> {
        self.store
            .invitation(org_id, id)
            .await?
            .ok_or(DomainError::NotFound("invitation"))
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
