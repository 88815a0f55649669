//! With no SMTP server configured, each message is an `.eml` file in `outbox/` beside the
//! SQLite database.

use crate::harness::*;
use crate::helpers::*;

#[tokio::test]
async fn without_smtp_a_message_is_a_parseable_file_beside_the_database() {
    // The default place (the tests otherwise set it, for PostgreSQL's sake).
    let app = TestApp::spawn_with(|s| s.outbox_dir = None).await;
    if app.database.is_postgres() {
        return; // beside the database means the working directory there: not for a test
    }
    let database_file = app
        .database_url
        .strip_prefix("sqlite://")
        .map(std::path::PathBuf::from)
        .unwrap();
    let outbox = database_file.parent().unwrap().join("outbox");
    let mail = queue(
        &app,
        "ada@example.com",
        &content("Welcome", Some("<p>Welcome</p>")),
    )
    .await;

    let files = wait_for_files(&outbox, 1).await;
    assert_eq!(files.len(), 1);
    let message = Parsed::new(&files[0]);
    assert_eq!(message.header("From"), Some("coreauth <noreply@localhost>"));
    assert_eq!(message.header("To"), Some("ada@example.com"));
    assert_eq!(message.header("Subject"), Some("Welcome"));
    assert_eq!(
        message.header("Message-ID"),
        Some(format!("<{}@coreauth>", mail.public_id).as_str())
    );
    let parts = message.parts();
    assert_eq!(parts.len(), 2);
    assert!(parts[1].body.contains("<p>Welcome</p>"));
    wait_for_counts(&app, |c| c.sent == 1).await;
    let name = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".eml"))
        .unwrap();
    assert!(
        name.ends_with(&format!("-{}.eml", mail.public_id)),
        "{name}"
    );
}
