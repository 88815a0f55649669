//! Messages through a real SMTP server: whole, retried when the server is down, given up when
//! refused, and sent once by several instances on one database.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use crate::helpers::*;

#[tokio::test]
async fn a_queued_message_reaches_the_server_whole() {
    let server = SmtpServer::start().await;
    let app = app_sending_to(&server.url()).await;
    let html = "<p>Hello, <a href=\"https://auth.example/accept#t0ken\">join Acme</a>.</p>";
    let mail = queue(
        &app,
        "ada@example.com",
        &content("You are invited to Acme", Some(html)),
    )
    .await;

    let received = server.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let message = Parsed::new(&received[0]);
    assert_eq!(message.header("X-Envelope-From"), Some("auth@acme.example"));
    assert_eq!(message.header("X-Envelope-To"), Some("ada@example.com"));
    assert_eq!(
        message.header("From"),
        Some("\"Acme Auth\" <auth@acme.example>")
    );
    assert_eq!(message.header("To"), Some("ada@example.com"));
    assert_eq!(message.header("Subject"), Some("You are invited to Acme"));
    assert_eq!(
        message.header("Message-ID"),
        Some(format!("<{}@coreauth>", mail.public_id).as_str())
    );
    assert_eq!(message.all("Message-ID"), 1);
    assert_eq!(message.header("MIME-Version"), Some("1.0"));
    assert!(message.header("Date").is_some());
    assert!(
        message
            .header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    let parts = message.parts();
    assert_eq!(parts.len(), 2);
    assert!(
        parts[0]
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        parts[0]
            .body
            .contains("follow https://auth.example/accept#t0ken to join Acme.")
    );
    assert!(
        parts[1]
            .header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(parts[1].body.contains(html));

    let counts = wait_for_counts(&app, |c| c.sent == 1).await;
    assert_eq!((counts.waiting, counts.failed), (0, 0));
    assert_eq!(metric(&app, "coreauth_mail_sent_total").await, 1.0);
}

#[tokio::test]
async fn a_text_only_message_is_one_plain_part() {
    let server = SmtpServer::start().await;
    let app = app_sending_to(&server.url()).await;
    queue(
        &app,
        "bob@example.com",
        &content("Verify your address", None),
    )
    .await;
    let message = Parsed::new(&server.wait_for(1).await[0]);
    assert!(
        message
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(message.body.contains("https://auth.example/accept#t0ken"));
}

#[tokio::test]
async fn a_message_queued_while_the_server_is_down_goes_out_once_it_is_up() {
    let port = free_port();
    let app = app_sending_to(&format!("smtp://127.0.0.1:{port}")).await;
    let mail = queue(
        &app,
        "ada@example.com",
        &content("Reset your password", None),
    )
    .await;
    // The first attempt finds nobody listening and waits 30 s of the app's clock.
    let counts = wait_for_counts(&app, |c| c.retrying == 1).await;
    assert_eq!((counts.waiting, counts.sent), (1, 0));

    let server = SmtpServer::start_on(port).await;
    // Up, but the retry is not due: a few of the worker's rounds pass without a send.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        server.messages().is_empty(),
        "sent before its retry was due"
    );
    app.advance(Duration::from_secs(30));
    let received = server.wait_for(1).await;
    let message = Parsed::new(&received[0]);
    assert_eq!(
        message.header("Message-ID"),
        Some(format!("<{}@coreauth>", mail.public_id).as_str())
    );
    let counts = wait_for_counts(&app, |c| c.sent == 1).await;
    assert_eq!((counts.waiting, counts.retrying), (0, 0));
    // Once, however long the worker goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.messages().len(), 1);
    assert_eq!(metric(&app, "coreauth_mail_failed_total").await, 1.0);
    assert_eq!(metric(&app, "coreauth_mail_sent_total").await, 1.0);
}

#[tokio::test]
async fn a_refused_recipient_is_given_up_and_a_busy_one_retried() {
    let server = SmtpServer::start().await;
    let app = app_sending_to(&server.url()).await;
    queue(&app, "reject-me@example.com", &content("Invitation", None)).await;
    queue(&app, "later@example.com", &content("Invitation", None)).await;
    let counts = wait_for_counts(&app, |c| c.failed == 1 && c.retrying == 1).await;
    assert_eq!((counts.waiting, counts.sent), (1, 0));
    assert!(server.messages().is_empty());
    assert_eq!(metric(&app, "coreauth_mail_given_up_total").await, 1.0);
    // The worker counts the queue for /metrics within a few seconds.
    let started = std::time::Instant::now();
    while metric(&app, "coreauth_mail_queue_retrying").await != 1.0 {
        assert!(started.elapsed() < Duration::from_secs(20), "never counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&app, "coreauth_mail_queue_waiting").await, 1.0);
}

#[tokio::test]
async fn two_instances_on_one_database_send_each_message_once() {
    let server = SmtpServer::start().await;
    let database = Arc::new(TestDatabase::fresh().await);
    let url = server.url();
    let configure = |s: &mut coreauth::config::Settings| {
        s.smtp_url = Some(url.clone().into());
        s.email_from = FROM.into();
    };
    let first = TestApp::spawn_on(&database, configure).await;
    let _second = TestApp::spawn_on(&database, configure).await;
    let mut ids = HashSet::new();
    for n in 0..60 {
        let mail = queue(
            &first,
            &format!("user{n}@example.com"),
            &content("Hi", None),
        )
        .await;
        ids.insert(format!("<{}@coreauth>", mail.public_id));
    }
    server.wait_for(60).await;
    wait_for_counts(&first, |c| c.sent == 60).await;
    // Both workers keep running: nothing arrives twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let received: Vec<String> = server
        .messages()
        .iter()
        .map(|m| Parsed::new(m).header("Message-ID").unwrap().to_owned())
        .collect();
    assert_eq!(received.len(), 60, "a message was sent twice");
    assert_eq!(received.into_iter().collect::<HashSet<_>>(), ids);
}
