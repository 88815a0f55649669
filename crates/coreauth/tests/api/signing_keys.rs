//! Signing keys rotate on their own (issue 35): the next key is published a day before it signs,
//! tokens signed by the previous key keep verifying across the switch, and the previous key is
//! retired once its last token has expired. Maintenance is run here at the moved clock, as each
//! instance runs it every few seconds.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn published(app: &TestApp, path: &str) -> Vec<String> {
    let jwks = body(app.get(path, None).await).await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn maintain(app: &TestApp) {
    app.state
        .signing_keys
        .maintain(app.clock_now())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_next_key_is_published_ahead_signs_on_schedule_and_the_previous_retires_after_its_tokens()
 {
    let app = TestApp::spawn().await;
    app.create_user("ann@example.com", 1, "member").await;
    let first = kid_of(&app.login_ok("ann@example.com", PASSWORD).await.token);
    maintain(&app).await;
    assert_eq!(
        published(&app, "/.well-known/jwks.json").await,
        std::slice::from_ref(&first)
    );

    // 29 days on, a day before the rotation is due: the next key is published, not used.
    app.advance(29 * DAY);
    maintain(&app).await;
    let keys = published(&app, "/.well-known/jwks.json").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let next = keys.iter().find(|k| **k != first).unwrap().clone();
    assert_eq!(
        published(&app, "/.well-known/integrations/jwks.json").await,
        [format!("int-{first}"), format!("int-{next}")],
        "integration keys follow the session keys"
    );
    maintain(&app).await;
    assert_eq!(
        published(&app, "/.well-known/jwks.json").await.len(),
        2,
        "one next key"
    );

    // A minute before the switch, a token from the first key; after it, the next key signs
    // and the earlier token still verifies.
    app.advance(DAY - Duration::from_secs(60));
    let before = app.login_ok("ann@example.com", PASSWORD).await.token;
    assert_eq!(kid_of(&before), first);
    app.advance(Duration::from_secs(120));
    maintain(&app).await;
    let after = app.login_ok("ann@example.com", PASSWORD).await.token;
    assert_eq!(kid_of(&after), next);
    assert_eq!(app.me(&before).await.status(), StatusCode::OK);
    let renewed = body(app.renew(&before).await).await;
    assert_eq!(
        kid_of(renewed["token"].as_str().unwrap()),
        next,
        "a renewal re-signs"
    );

    // Once the longest token (an integration token's hour) is over, the first key retires.
    app.advance(Duration::from_secs(3600 + 120));
    maintain(&app).await;
    assert_eq!(
        published(&app, "/.well-known/jwks.json").await,
        std::slice::from_ref(&next)
    );
    let admin = app.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await.token;
    let audit = body(app.get("/admin/audit?limit=100", Some(&admin)).await).await;
    let events: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| e.starts_with("signing_key."))
        .collect();
    assert!(events.contains(&"signing_key.created"), "{events:?}");
    assert!(events.contains(&"signing_key.retired"), "{events:?}");
}

#[tokio::test]
async fn a_retired_key_is_refused_at_once_and_the_last_key_cannot_be_retired() {
    let app = TestApp::spawn().await;
    app.create_user("bob@example.com", 1, "member").await;
    let token = app.login_ok("bob@example.com", PASSWORD).await.token;
    let old = kid_of(&token);
    let now = app.clock_now();
    let refused = app.state.signing_keys.retire(&old, now).await.unwrap_err();
    assert_eq!(refused.code(), "conflict", "the only key left");

    // A leaked key: rotate, then retire it. The new key signs at once, the old one's tokens fail.
    let new = app.state.signing_keys.rotate(now).await.unwrap();
    app.state.signing_keys.retire(&old, now).await.unwrap();
    assert_error(
        app.me(&token).await,
        StatusCode::FORBIDDEN,
        "unauthenticated",
    )
    .await;
    let fresh = app.login_ok("bob@example.com", PASSWORD).await.token;
    assert_eq!(kid_of(&fresh), new.kid);
    assert_eq!(
        published(&app, "/.well-known/jwks.json").await,
        std::slice::from_ref(&new.kid)
    );
    let unknown = app
        .state
        .signing_keys
        .retire("nope", now)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), "not_found");
}

#[tokio::test]
async fn with_rotation_off_no_key_is_added() {
    let app = TestApp::spawn_with(|s| s.signing_key_rotation = Duration::ZERO).await;
    app.advance(400 * DAY);
    maintain(&app).await;
    assert_eq!(published(&app, "/.well-known/jwks.json").await.len(), 1);
}
