//! The MIME message both transports write, the outbox's files, and what the settings pick.

use super::*;
use crate::domain::mail::MailContent;

fn outgoing(html: Option<&str>) -> Outgoing {
    Outgoing {
        message_id: "6f1c2a8e-0b7d-4c1e-9a55-3d2f1b0c9e77".into(),
        to: "ada@example.com".into(),
        from_name: None,
        reply_to: None,
        content: MailContent {
            subject: "Reset your password".into(),
            text: "Follow https://auth.example/reset#token".into(),
            html: html.map(str::to_owned),
            link: Some("https://auth.example/reset#token".into()),
            from_name: None,
            reply_to: None,
        },
    }
}

fn from() -> Mailbox {
    "Acme Auth <auth@acme.example>".parse().unwrap()
}

fn formatted(outgoing: &Outgoing) -> String {
    String::from_utf8(message(&from(), outgoing).unwrap().formatted()).unwrap()
}

/// The value of header `name` in `head` (the part before the first blank line), unfolded.
fn header(text: &str, name: &str) -> Option<String> {
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

#[test]
fn a_text_message_names_its_sender_recipient_and_id() {
    let text = formatted(&outgoing(None));
    assert_eq!(
        header(&text, "From").as_deref(),
        Some("\"Acme Auth\" <auth@acme.example>")
    );
    assert_eq!(header(&text, "To").as_deref(), Some("ada@example.com"));
    assert_eq!(
        header(&text, "Subject").as_deref(),
        Some("Reset your password")
    );
    assert_eq!(
        header(&text, "Message-ID").as_deref(),
        Some("<6f1c2a8e-0b7d-4c1e-9a55-3d2f1b0c9e77@coreauth>")
    );
    assert!(header(&text, "Date").is_some());
    assert!(header(&text, "Reply-To").is_none());
    assert!(
        header(&text, "Content-Type")
            .unwrap()
            .starts_with("text/plain"),
        "{text}"
    );
    assert!(text.contains("Follow https://auth.example/reset#token"));
}

#[test]
fn html_makes_it_multipart_alternative_text_first() {
    let text = formatted(&outgoing(Some(
        "<p>Follow <a href=\"https://auth.example/\">it</a></p>",
    )));
    let content_type = header(&text, "Content-Type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let plain = text.find("Content-Type: text/plain").unwrap();
    let html = text.find("Content-Type: text/html").unwrap();
    assert!(plain < html, "the richest part comes last (RFC 2046)");
    assert!(text.contains("<p>Follow"));
}

#[test]
fn the_orgs_sender_name_and_reply_to_are_used() {
    let mut mail = outgoing(None);
    mail.from_name = Some("Globex IT".into());
    mail.reply_to = Some("helpdesk@globex.example".into());
    let text = formatted(&mail);
    assert_eq!(
        header(&text, "From").as_deref(),
        Some("\"Globex IT\" <auth@acme.example>"),
        "the address stays COREAUTH_EMAIL_FROM's: only it may send for its domain"
    );
    assert_eq!(
        header(&text, "Reply-To").as_deref(),
        Some("helpdesk@globex.example")
    );
}

#[test]
fn headers_cannot_be_injected_and_non_ascii_is_encoded() {
    let mut mail = outgoing(None);
    mail.content.subject = "Bienvenue chez Société\r\nBcc: evil@example.com".into();
    mail.from_name = Some("Zoë\r\nBcc: evil@example.com".into());
    let text = formatted(&mail);
    let head = text.split("\r\n\r\n").next().unwrap();
    assert!(!head.lines().any(|l| l.starts_with("Bcc:")), "{head}");
    assert!(head.is_ascii(), "{head}");
}

#[test]
fn a_recipient_that_is_no_address_is_a_permanent_failure() {
    let mut mail = outgoing(None);
    mail.to = "not an address".into();
    let error = message(&from(), &mail).unwrap_err();
    assert!(error.permanent);
    assert!(
        !error.reason.contains("not an address\""),
        "{}",
        error.reason
    );
}

#[test]
fn the_outbox_is_beside_the_sqlite_file_or_in_the_working_directory() {
    assert_eq!(
        default_outbox_dir("sqlite:///var/lib/coreauth/coreauth.db?mode=rwc"),
        PathBuf::from("/var/lib/coreauth/outbox")
    );
    assert_eq!(
        default_outbox_dir("sqlite://data/coreauth.db"),
        PathBuf::from("data/outbox")
    );
    assert_eq!(
        default_outbox_dir("sqlite://coreauth.db"),
        PathBuf::from("outbox")
    );
    assert_eq!(
        default_outbox_dir("sqlite::memory:"),
        PathBuf::from("outbox")
    );
    assert_eq!(
        default_outbox_dir("postgres://u@db/coreauth"),
        PathBuf::from("outbox")
    );
}

#[test]
fn outbox_files_sort_by_time_and_carry_the_id() {
    let at = |hour, minute, second, milli| {
        time::Date::from_calendar_date(2026, time::Month::December, 7)
            .unwrap()
            .with_hms_milli(hour, minute, second, milli)
            .unwrap()
            .assume_utc()
    };
    let (early, late) = (at(9, 5, 3, 7), at(15, 13, 52, 123));
    let a = outbox_file_name(early, "id-1");
    let b = outbox_file_name(late, "../etc/passwd");
    assert_eq!(a, "20261207T090503.007Z-id-1.eml");
    assert_eq!(b, "20261207T151352.123Z-___etc_passwd.eml");
    assert!(a < b);
}

#[tokio::test]
async fn the_outbox_writes_a_private_whole_message_file() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let transport = OutboxTransport::new(outbox.clone(), from());
    let mail = outgoing(Some("<p>hi</p>"));
    transport.send(&mail).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "no temporary file is left: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with(&format!("-{}.eml", mail.message_id)),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(
        header(&text, "Message-ID").as_deref(),
        Some("<6f1c2a8e-0b7d-4c1e-9a55-3d2f1b0c9e77@coreauth>")
    );
    assert!(
        text.contains("<p>hi</p>") && text.trim_end().ends_with("--"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&outbox), 0o700);
        assert_eq!(mode(&files[0]), 0o600);
    }
}

#[test]
fn smtp_settings_are_described_without_credentials() {
    let url = |u: &str| url::Url::parse(u).unwrap();
    assert_eq!(
        describe_url(&url("smtp://user:secret@mail.example:2525")),
        "smtp://mail.example:2525 (no TLS)"
    );
    assert_eq!(
        describe_url(&url("smtp://mail.example:587?tls=required")),
        "smtp://mail.example:587 (STARTTLS)"
    );
    assert_eq!(
        describe_url(&url("smtps://u:p@mail.example")),
        "smtps://mail.example (TLS)"
    );
}

#[tokio::test]
async fn the_settings_pick_the_transport() {
    let mut settings = Settings {
        database_url: "sqlite:///srv/coreauth/coreauth.db".into(),
        ..Settings::default()
    };
    let outbox = from_settings(&settings).unwrap();
    assert!(
        outbox.describe().contains("/srv/coreauth/outbox"),
        "{}",
        outbox.describe()
    );
    settings.smtp_url = Some("smtp://bot:s3cret@127.0.0.1:2525".to_owned().into());
    let smtp = from_settings(&settings).unwrap();
    assert_eq!(
        smtp.describe(),
        "SMTP server smtp://127.0.0.1:2525 (no TLS)"
    );
    settings.smtp_url = Some("smtp://127.0.0.1:2525".to_owned().into());
    settings.smtp_password = Some("s3cret".to_owned().into());
    let refused = from_settings(&settings).err().unwrap();
    assert!(refused.contains("user name"), "{refused}");
    settings.smtp_url = Some("ftp://127.0.0.1".to_owned().into());
    settings.smtp_password = None;
    let refused = from_settings(&settings).err().unwrap();
    assert!(refused.starts_with("COREAUTH_SMTP_URL"), "{refused}");
    settings.smtp_url = None;
    settings.email_from = "nobody".into();
    assert!(from_settings(&settings).is_err());
}
