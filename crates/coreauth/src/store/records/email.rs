//! The records of mail: the outgoing queue, requests for messages, the one-time tokens of
//! mailed links, invitations, and an org's sender settings and templates.

use super::{NewUser, Role};

/// A message to queue. Its subject and bodies are sealed: its link carries a one-time token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// Random: the message's `Message-ID`, and what its seal is bound to (`mail:<public_id>`).
    pub public_id: String,
    pub org_id: Option<i64>,
    /// What it is: `invitation`, `password_reset`, `email_verification`.
    pub kind: String,
    pub recipient: String,
    pub sealed: String,
    pub created_at: i64,
}

/// A queued message, as a worker takes it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueuedMail {
    pub id: i64,
    pub public_id: String,
    pub org_id: Option<i64>,
    pub kind: String,
    pub recipient: String,
    pub sealed: String,
    pub created_at: i64,
    /// Attempts before this one.
    pub attempts: i64,
}

/// The queue's state, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailQueueCounts {
    /// Not sent yet and not given up: waiting for its first or next attempt.
    pub waiting: i64,
    /// Of those, the ones whose last attempt failed.
    pub retrying: i64,
    pub sent: i64,
    /// Given up after the last attempt.
    pub failed: i64,
}

/// What a mailed link's one-time token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    PasswordReset,
    EmailVerification,
    Invitation,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
            Self::Invitation => "invitation",
        }
    }
}

/// A one-time token to store (only its SHA-256), with the message that carries it.
#[derive(Debug, Clone)]
pub struct NewEmailToken {
    pub token_hash: Vec<u8>,
    pub purpose: TokenPurpose,
    /// Whose account it acts on (reset, verification).
    pub user_id: Option<i64>,
    /// The invitation it accepts.
    pub invitation_id: Option<i64>,
    /// The address a verification token proves.
    pub email_key: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored one-time token, as a link's use reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EmailTokenRecord {
    pub purpose: String,
    pub user_id: Option<i64>,
    pub invitation_id: Option<i64>,
    pub email_key: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub superseded_at: Option<i64>,
}

/// An invitation to join an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    pub id: i64,
    pub public_id: String,
    pub org_id: i64,
    pub email: String,
    pub email_key: String,
    pub role: Role,
    pub invited_by: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// An invitation to create.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub public_id: String,
    pub org_id: i64,
    pub email: String,
    pub email_key: String,
    pub role: Role,
    pub invited_by: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// How an accepted invitation joins its org: a new account, or an existing one (signed in).
#[derive(Debug, Clone)]
pub enum Joining {
    NewUser(Box<NewUser>),
    Existing(i64),
}

/// An org's sender settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailSettings {
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
}

/// An org's template for one kind of message, replacing the built-in one.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EmailTemplate {
    pub kind: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
}

/// A request for a message, as accepted (before anyone looked the address up).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailRequestRecord {
    pub id: i64,
    /// `password_reset` or `email_verification`.
    pub kind: String,
    /// The address as given (already parsed).
    pub email: String,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub created_at: i64,
}
