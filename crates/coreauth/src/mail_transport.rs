//! Where outgoing mail goes (`domain::mail::MailTransport`): an SMTP server through lettre
//! (`COREAUTH_SMTP_URL`), or, with none configured, `.eml` files in an `outbox/` folder, so that
//! `coreauth serve` alone still carries invitations and resets end to end.
//!
//! Both write the same MIME message (`message`): `From` with the sender's display name,
//! `Reply-To`, `Message-ID: <public id@coreauth>`, and multipart/alternative text and HTML when
//! there is HTML.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Settings;
use crate::domain::mail::{MailTransport, Outgoing, SendError};

/// How long one SMTP command may wait for the server (lettre's per-command timeout); the
/// worker bounds a whole send besides (`delivery::SEND_LIMIT`).
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The transport `settings` ask for: SMTP when `COREAUTH_SMTP_URL` (or its file) is set, the
/// outbox otherwise. Errors name the setting, never its value (the URL may hold a password).
pub fn from_settings(settings: &Settings) -> Result<Box<dyn MailTransport>, String> {
    let from: Mailbox = settings
        .email_from
        .parse()
        .map_err(|e| format!("COREAUTH_EMAIL_FROM is not an address ({e})"))?;
    match &settings.smtp_url {
        Some(url) => Ok(Box::new(SmtpTransport::new(
            url,
            settings.smtp_password.as_ref(),
            from,
        )?)),
        None => {
            let dir = settings
                .outbox_dir
                .clone()
                .unwrap_or_else(|| default_outbox_dir(&settings.database_url));
            // Absolute, so the startup log and each message's log line say where to look.
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            Ok(Box::new(OutboxTransport::new(dir, from)))
        }
    }
}

/// `outbox/` beside an SQLite database file; in the working directory for PostgreSQL or an
/// in-memory database.
pub fn default_outbox_dir(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|path| !path.is_empty() && !path.contains(":memory:"));
    match file.map(Path::new).and_then(Path::parent) {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join("outbox"),
        _ => PathBuf::from("outbox"),
    }
}

/// The MIME message for `outgoing`, from `from` (whose display name the org's sender name
/// replaces). An address that does not parse is a permanent failure: it never will.
pub fn message(from: &Mailbox, outgoing: &Outgoing) -> Result<Message, SendError> {
    let permanent = |reason: String| SendError {
        permanent: true,
        reason,
    };
    let to: Mailbox = outgoing
        .to
        .parse()
        .map_err(|e| permanent(format!("the recipient is not an address ({e})")))?;
    let name = outgoing.from_name.as_deref().or(from.name.as_deref());
    let sender = Mailbox::new(name.map(display_name), from.email.clone());
    let mut builder = Message::builder()
        .from(sender)
        .to(to)
        .subject(outgoing.content.subject.as_str())
        .message_id(Some(format!("<{}@coreauth>", outgoing.message_id)));
    if let Some(reply_to) = &outgoing.reply_to {
        let reply_to: Mailbox = reply_to
            .parse()
            .map_err(|e| permanent(format!("the reply-to is not an address ({e})")))?;
        builder = builder.reply_to(reply_to);
    }
    let text = outgoing.content.text.clone();
    let built = match &outgoing.content.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html.clone())),
        None => builder.singlepart(SinglePart::plain(text)),
    };
    built.map_err(|e| permanent(format!("the message cannot be built ({e})")))
}

/// `name` without control characters, runs of white space made one space: lettre panics
/// formatting a display name with a line break in it (an org's sender name could hold one).
fn display_name(name: &str) -> String {
    let spaced: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Mail through an SMTP server: `smtp://host:port` (plain), `smtp://…?tls=required`
/// (STARTTLS), `smtps://host:port` (TLS from the start), credentials in the URL or from
/// `COREAUTH_SMTP_PASSWORD(_FILE)`. Connections are pooled between messages.
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    described: String,
}

impl SmtpTransport {
    pub fn new(
        url: &SecretString,
        password: Option<&SecretString>,
        from: Mailbox,
    ) -> Result<Self, String> {
        let url = url.expose_secret();
        let parsed =
            url::Url::parse(url).map_err(|e| format!("COREAUTH_SMTP_URL is not a URL ({e})"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("COREAUTH_SMTP_URL: {e}"))?
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(password) = password {
            let user = percent_decoded(parsed.username());
            if user.is_empty() {
                return Err(
                    "COREAUTH_SMTP_PASSWORD needs a user name in COREAUTH_SMTP_URL \
                            (smtp://user@host:port)"
                        .into(),
                );
            }
            builder =
                builder.credentials(Credentials::new(user, password.expose_secret().to_owned()));
        }
        Ok(Self {
            inner: builder.build(),
            from,
            described: describe_url(&parsed),
        })
    }
}

/// `scheme://host:port` and the TLS mode, without user name or password.
fn describe_url(url: &url::Url) -> String {
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let mode = match (url.scheme(), tls.as_deref()) {
        ("smtps", _) => "TLS",
        (_, Some("required")) => "STARTTLS",
        (_, Some("opportunistic")) => "STARTTLS if offered",
        _ => "no TLS",
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port} ({mode})",
        url.scheme(),
        url.host_str().unwrap_or("")
    )
}

fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether an SMTP failure is worth trying again. Any 5xx reply is final for that message (a
/// refused address, a message too large), except those about our own credentials (530, 534,
/// 535, 538): a misconfiguration the operator mends, after which the queue should still go out.
/// Connections refused or dropped, TLS failures, timeouts and 4xx replies are retried.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(|c| c.to_string());
    let credentials = matches!(code.as_deref(), Some("530" | "534" | "535" | "538"));
    SendError {
        permanent: e.is_permanent() && !credentials,
        reason: format!("SMTP: {e}"),
    }
}

#[async_trait::async_trait]
impl MailTransport for SmtpTransport {
    async fn send(&self, outgoing: &Outgoing) -> Result<(), SendError> {
        let message = message(&self.from, outgoing)?;
        self.inner
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    fn describe(&self) -> String {
        format!("SMTP server {}", self.described)
    }
}

/// Mail as `.eml` files in a folder: what coreauth does with no SMTP server configured, so that
/// a lone `coreauth serve` (a trial, a development machine) can still follow every link.
pub struct OutboxTransport {
    dir: PathBuf,
    from: Mailbox,
}

impl OutboxTransport {
    pub fn new(dir: PathBuf, from: Mailbox) -> Self {
        Self { dir, from }
    }

    /// Writes `bytes` as `name` in the folder (created 0700: the files hold one-time links),
    /// through a temporary file renamed into place, so a reader never sees half a message.
    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        use std::io::Write;
        let mut folder = std::fs::DirBuilder::new();
        folder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
        folder.create(dir)?;
        let staging = dir.join(format!(".{name}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&staging).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        let path = dir.join(name);
        let renamed = written.and_then(|()| std::fs::rename(&staging, &path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&staging);
        }
        renamed.map(|()| path)
    }
}

/// `20261207T151352.123Z-<message id>.eml`: in the order written, and named by the message.
fn outbox_file_name(now: time::OffsetDateTime, message_id: &str) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    // The id is the queue's UUID; anything else that could name another path is replaced.
    let id: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stamp}-{id}.eml")
}

#[async_trait::async_trait]
impl MailTransport for OutboxTransport {
    async fn send(&self, outgoing: &Outgoing) -> Result<(), SendError> {
        let bytes = message(&self.from, outgoing)?.formatted();
        let name = outbox_file_name(time::OffsetDateTime::now_utc(), &outgoing.message_id);
        let dir = self.dir.clone();
        let path = tokio::task::spawn_blocking(move || Self::write(&dir, &name, &bytes))
            .await
            .map_err(|e| SendError {
                permanent: false,
                reason: format!("writing to the outbox: {e}"),
            })?
            .map_err(|e| SendError {
                permanent: false,
                reason: format!("writing to the outbox {}: {e}", self.dir.display()),
            })?;
        // Deliberately logs the link, the one-time token in it included: with no SMTP server
        // this log line (or the file) is the only way the link reaches its reader, and whoever
        // reads this log can read the outbox folder anyway. Configure COREAUTH_SMTP_URL for
        // anything real, and links stay out of the log.
        tracing::info!(
            path = %path.display(),
            link = outgoing.content.link.as_deref().unwrap_or("none"),
            "mail written to the outbox (no COREAUTH_SMTP_URL)"
        );
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "the outbox folder {} (set COREAUTH_SMTP_URL to send through a mail server)",
            self.dir.display()
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "mail_transport_tests.rs"]
mod tests;
