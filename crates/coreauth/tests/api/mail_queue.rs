//! The mail queue without an SMTP server (the default): a queued message becomes an `.eml`
//! file in the outbox, sent once, and counted in `/metrics`. Delivery through a real SMTP
//! server is tested in `tests/mail/` (run by `scripts/test`).

use std::time::{Duration, Instant};

use coreauth::domain::mail::{MailContent, queued};
use coreauth::domain::secrets::SecretBox;

use crate::helpers::*;

#[tokio::test]
async fn a_queued_message_lands_in_the_outbox_once_and_is_counted() {
    let app = TestApp::spawn().await;
    let outbox = app.database.secret_key_file().with_file_name("outbox");
    let key = std::fs::read_to_string(app.database.secret_key_file()).unwrap();
    let secrets = SecretBox::from_base64(key.trim(), &[]).unwrap();
    let content = MailContent {
        subject: "Reset your password".into(),
        text: "Follow https://auth.example/reset#t0ken".into(),
        html: None,
        link: Some("https://auth.example/reset#t0ken".into()),
        from_name: None,
        reply_to: None,
    };
    let mail = queued(
        &secrets,
        (Some(1), "password_reset"),
        "ada@example.com",
        &content,
        app.now_millis(),
    )
    .unwrap();
    app.store.queue_mail(&mail).await.unwrap();

    // The worker runs every second, off the request path.
    let started = Instant::now();
    let file = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "eml"))
        });
        if let Some(file) = found {
            break file;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no message in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with(&format!("-{}.eml", mail.public_id)),
        "{name}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("Subject: Reset your password\r\n"), "{text}");
    assert!(text.contains(&format!("Message-ID: <{}@coreauth>\r\n", mail.public_id)));
    assert!(text.contains("https://auth.example/reset#t0ken"));

    while metric(&app, "coreauth_mail_sent_total").await < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(20), "never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = app.store.mail_counts().await.unwrap();
    assert_eq!((counts.waiting, counts.sent, counts.failed), (0, 1, 0));
    // Nothing is sent again, however often the worker runs.
    app.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
    assert_eq!(metric(&app, "coreauth_mail_sent_total").await, 1.0);
    assert_eq!(metric(&app, "coreauth_mail_failed_total").await, 0.0);
}
