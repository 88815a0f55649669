//! A client keeps its session alive by itself, shares renewals between callers, never sends
//! an expired token, and stops — with a clear reason — on revocation, logout, the session cap
//! or drop.

use std::time::Duration;

use coreauth_client::{EndReason, Error, ExposeSecret, SecretString, SessionStatus};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

/// The token the client would send now is good on the server's clock for a while yet.
async fn assert_fresh(server: &Server, client: &coreauth_client::Client) {
    let token = client.token().await.unwrap();
    let exp_ms = claims_of(token.expose_secret())["exp"].as_i64().unwrap() * 1000;
    let now = coreauth::domain::clock::to_millis(coreauth::domain::clock::Clock::now(
        &server.server_clock,
    ));
    assert!(
        exp_ms - now >= 10_000,
        "a token with {} ms left",
        exp_ms - now
    );
}

#[tokio::test]
async fn an_idle_client_stays_logged_in_across_four_token_lifetimes() {
    let server = Server::spawn().await;
    server.create_member("idle@example.com").await;
    let client = server.login("idle@example.com", PASSWORD).await;
    let sid = session_id(&client).await;

    // Sixty one-minute steps, nobody calling: only the background renewer keeps it alive.
    for _ in 0..60 {
        server.advance(MINUTE);
        server.settled(&client).await;
        assert_fresh(&server, &client).await;
    }
    let renewals = server.renewals(&sid).await;
    // A renewal every 8.5–10 minutes (at a third left, minus up to a tenth of jitter).
    assert!(
        (6..=8).contains(&renewals),
        "{renewals} renewals in an hour"
    );
    let me = client.whoami().await.unwrap();
    assert_eq!(me.email, "idle@example.com");
    assert_eq!(me.session_id.as_deref(), Some(sid.as_str()));
}

#[tokio::test]
async fn a_busy_client_without_a_renewer_renews_on_its_calls() {
    let server = Server::spawn().await;
    server.create_member("busy@example.com").await;
    let client = server
        .client()
        .background_renewal(false)
        .login(coreauth_client::Login::new(
            "busy@example.com",
            SecretString::from(PASSWORD),
        ))
        .await
        .unwrap();
    let sid = session_id(&client).await;
    for _ in 0..60 {
        server.advance(MINUTE);
        let me = client.whoami().await.unwrap();
        assert_eq!(me.email, "busy@example.com");
        assert_fresh(&server, &client).await;
    }
    let renewals = server.renewals(&sid).await;
    assert!(
        (6..=8).contains(&renewals),
        "{renewals} renewals in an hour"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_renewal() {
    let server = Server::spawn().await;
    server.create_member("many@example.com").await;
    let client = server.login("many@example.com", PASSWORD).await;
    let sid = session_id(&client).await;
    // Past the renewal point (at most 10 of 15 minutes), well before the token runs out.
    server.advance(11 * MINUTE);
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.whoami().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().email, "many@example.com");
    }
    server.settled(&client).await;
    assert_eq!(server.renewals(&sid).await, 1);
}

#[tokio::test]
async fn a_session_revoked_by_an_admin_stops_the_renewer() {
    let server = Server::spawn().await;
    let user = server.create_member("revoked@example.com").await;
    let client = server.login("revoked@example.com", PASSWORD).await;
    server
        .admin_call(
            Method::POST,
            &format!("/admin/users/{user}/sessions/revoke"),
            json!({}),
        )
        .await;
    // Nobody calls: the renewer finds out at its next renewal, and stops.
    server.advance(11 * MINUTE);
    let reason = tokio::time::timeout(Duration::from_secs(10), client.ended())
        .await
        .expect("the renewer gave up");
    assert_eq!(reason, EndReason::Revoked);
    assert_eq!(client.status(), SessionStatus::Ended(EndReason::Revoked));
    assert!(matches!(
        client.whoami().await,
        Err(Error::SessionEnded(EndReason::Revoked))
    ));
    assert!(matches!(
        client.token().await,
        Err(Error::SessionEnded(EndReason::Revoked))
    ));
}

#[tokio::test]
async fn a_logout_elsewhere_ends_the_session_at_the_next_call() {
    let server = Server::spawn().await;
    server.create_member("elsewhere@example.com").await;
    let client = server.login("elsewhere@example.com", PASSWORD).await;
    // Another program with the same token logs out.
    let token = client.token().await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/user/authenticate/logout", server.url))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let refused = client.whoami().await;
    assert!(
        matches!(refused, Err(Error::SessionEnded(EndReason::Revoked))),
        "{refused:?}"
    );
    let reason = tokio::time::timeout(Duration::from_secs(10), client.ended())
        .await
        .unwrap();
    assert_eq!(reason, EndReason::Revoked);
}

#[tokio::test]
async fn logout_ends_the_session_everywhere() {
    let server = Server::spawn().await;
    server.create_member("leaving@example.com").await;
    let client = server.login("leaving@example.com", PASSWORD).await;
    let token = client.token().await.unwrap();
    client.logout().await.unwrap();
    assert_eq!(client.status(), SessionStatus::Ended(EndReason::LoggedOut));
    assert!(matches!(
        client.whoami().await,
        Err(Error::SessionEnded(EndReason::LoggedOut))
    ));
    let me = reqwest::Client::new()
        .get(format!("{}/user/me", server.url))
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 403);
    // Again: nothing to do.
    client.logout().await.unwrap();
}

#[tokio::test]
async fn dropping_the_client_stops_its_renewer() {
    let server = Server::spawn().await;
    server.create_member("dropped@example.com").await;
    let client = server.login("dropped@example.com", PASSWORD).await;
    let sid = session_id(&client).await;
    let clone = client.clone();
    drop(client);
    // A clone keeps it going.
    server.advance(11 * MINUTE);
    server.settled(&clone).await;
    assert_eq!(server.renewals(&sid).await, 1);
    drop(clone);
    server.advance(11 * MINUTE);
    // Give a renewer that had survived every chance to run.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.renewals(&sid).await, 1, "no renewal after the drop");
}

#[tokio::test]
async fn the_session_cap_ends_the_session_without_a_renewal_loop() {
    let server = Server::spawn_with(|s| s.session_max = Duration::from_secs(20 * 60)).await;
    server.create_member("capped@example.com").await;
    let client = server.login("capped@example.com", PASSWORD).await;
    let sid = session_id(&client).await;
    for _ in 0..19 {
        server.advance(MINUTE);
        server.settled(&client).await;
    }
    assert!(
        matches!(
            client.status(),
            SessionStatus::Active { renew_at: None, .. }
        ),
        "at the cap, no renewal is planned: {:?}",
        client.status()
    );
    server.advance(MINUTE);
    let reason = tokio::time::timeout(Duration::from_secs(10), client.ended())
        .await
        .expect("the session ended at its cap");
    assert_eq!(reason, EndReason::Expired);
    // The first renewal gave a token ending at the cap, the second one no later: none after.
    assert_eq!(server.renewals(&sid).await, 2);
}

#[tokio::test]
async fn an_api_key_client_sends_its_key_and_never_renews() {
    let server = Server::spawn().await;
    let client = server
        .client()
        .api_key(SecretString::from(server.admin_key.as_str()))
        .unwrap();
    assert_eq!(
        client.status(),
        SessionStatus::Active {
            expires_at: None,
            renew_at: None
        }
    );
    server.advance(60 * MINUTE);
    let me = client.whoami().await.unwrap();
    assert_eq!(me.auth_method, "api_key");
    assert!(client.logout().await.is_err(), "a key has no session");
    assert!(
        server
            .client()
            .api_key(SecretString::from("eyJ.not.a-key"))
            .is_err()
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_api_error_with_its_code() {
    let server = Server::spawn().await;
    let refused = server
        .client()
        .login(coreauth_client::Login::new(
            ADMIN_EMAIL,
            SecretString::from("wrong password"),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("invalid_credentials"));
    assert!(matches!(refused, Error::Api { status: 401, .. }));
}

#[tokio::test]
async fn debug_output_shows_no_secret() {
    let server = Server::spawn().await;
    let client = server.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = client.token().await.unwrap();
    let printed = format!(
        "{client:?} {token:?} {:?}",
        coreauth_client::Login::new(ADMIN_EMAIL, SecretString::from(ADMIN_PASSWORD))
    );
    assert!(!printed.contains(token.expose_secret()), "{printed}");
    assert!(!printed.contains(ADMIN_PASSWORD), "{printed}");
}
