//! Outgoing mail: what coreauth sends (invitations, password resets, address verification), how
//! a message is queued (sealed, in the transaction of the change it announces) and how the queue
//! is worked (`delivery`: a worker per instance, retries with back-off).
//!
//! The transport is behind `MailTransport`: SMTP through lettre, or, with no SMTP server
//! configured, `.eml` files in an `outbox/` folder beside the database (`crate::mail_transport`).

pub mod delivery;
pub mod links;
pub mod requests;
pub mod settings;
pub mod templates;

pub use crate::store::records::{MailQueueCounts, NewMail, QueuedMail};

use serde::{Deserialize, Serialize};

use super::error::{DomainError, DomainResult};
use super::secrets::SecretBox;

/// A message's subject and bodies, as sealed in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailContent {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// The link the message carries, for a transport that shows it (the outbox logs it).
    pub link: Option<String>,
    /// The sender's display name and reply-to address: the org's email settings.
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// A message ready for a transport.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `Message-ID` (the queue's public id), so that a message sent twice (a worker dying
    /// between the server's acceptance and the queue's record of it) is recognisably one.
    pub message_id: String,
    pub to: String,
    /// The sender's display name (the org's email settings), beside `COREAUTH_EMAIL_FROM`.
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub content: MailContent,
}

/// Why a transport could not send; `permanent` failures are not retried (a refused address).
#[derive(Debug, Clone)]
pub struct SendError {
    pub permanent: bool,
    /// What failed, fit for logs and the queue's `last_error` (never the message).
    pub reason: String,
}

/// Sends one message.
#[async_trait::async_trait]
pub trait MailTransport: Send + Sync {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError>;

    /// What it is, for the startup log (`smtp://host:port`, `outbox /path`), no credentials.
    fn describe(&self) -> String;
}

/// What a seal of message `public_id` is bound to.
pub fn seal_binding(public_id: &str) -> String {
    format!("mail:{public_id}")
}

/// A message for the queue, its content sealed.
pub fn queued(
    secrets: &SecretBox,
    (org_id, kind): (Option<i64>, &str),
    recipient: &str,
    content: &MailContent,
    created_at: i64,
) -> DomainResult<NewMail> {
    let public_id = uuid::Uuid::new_v4().to_string();
    let json = serde_json::to_vec(content).map_err(DomainError::internal)?;
    Ok(NewMail {
        sealed: secrets.seal(&json, &seal_binding(&public_id))?,
        public_id,
        org_id,
        kind: kind.to_owned(),
        recipient: recipient.to_owned(),
        created_at,
    })
}
