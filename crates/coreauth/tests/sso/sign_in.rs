//! The sign-in and its defences, against the real provider.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;
use crate::helpers::*;

#[tokio::test]
async fn a_new_member_signs_in_through_the_provider_and_gets_a_session_token() {
    let (app, org, provider) = acme_with_provider(true).await;
    let strategy = body(
        app.post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": "newcomer@acme.example"}),
        )
        .await,
    )
    .await;
    assert_eq!(strategy["strategy"], "sso");

    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    assert!(url.starts_with(&provider.issuer));
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    let token = landing.body["token"].as_str().unwrap();
    assert_eq!(landing.body["user"]["email"], "newcomer@acme.example");
    assert_eq!(landing.body["user"]["orgId"], org);
    assert_eq!(landing.body["user"]["role"], "member");

    let me = body(app.me(token).await).await;
    assert_eq!(me["email"], "newcomer@acme.example");
    assert_eq!(me["orgId"], org);
    let audit = body(
        app.get("/admin/audit?event=login.succeeded", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(audit["events"][0]["details"]["method"], "sso");
    assert_eq!(audit["events"][0]["client"], "portal");

    // The state was single use: the same callback again is refused.
    let replay = browser.get(&landing.callback_url).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(replay).await["error"], "sso_state_invalid");
    provider.stop().await;
}

/// `POST /user/authenticate/sso/link` with a password session's token: the provider URL that
/// links the account once the provider asserts its email.
#[tokio::test]
async fn an_existing_member_links_their_account_once_then_lands_on_the_return_page() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("alice@acme.example", org, "admin").await;
    // Signed in with her password before the org turned password logins off.
    let alice = app.login_ok("alice@acme.example", PASSWORD).await.token;
    let provider = start_provider(&app, free_port(), "k1").await;
    configure(&app, org, &provider.issuer, false).await;

    // The provider's word alone does not adopt an existing account.
    let first = browser();
    let url = start_url(&app, &first, org, Some(RETURN_TO)).await;
    let landing = sign_in(&app, &first, &url, "alice@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    assert_eq!(landing.body["error"], "sso_account_not_linked");

    // Alice proves the account with her password session and links it.
    let url = link_url(&app, &alice, org, Some(RETURN_TO)).await;
    let landing = sign_in(&app, &browser(), &url, "alice@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER);
    let me = body(app.me(&fragment_token(&landing)).await).await;
    assert_eq!(me["email"], "alice@acme.example");
    assert_eq!(me["role"], "admin");

    // From now on a plain sign-on finds her through the link.
    let browser = browser();
    let url = start_url(&app, &browser, org, Some(RETURN_TO)).await;
    let landing = sign_in(&app, &browser, &url, "alice@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER);
    let me = body(app.me(&fragment_token(&landing)).await).await;
    assert_eq!(me["email"], "alice@acme.example");

    // A link must name the account's own email: Alice cannot link someone else's identity.
    let url = link_url(&app, &alice, org, None).await;
    let landing = sign_in(&app, &self::browser(), &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    assert_eq!(landing.body["error"], "sso_link_mismatch");

    // An open-redirect attempt never reaches the provider.
    let evil = format!(
        "{}/user/authenticate/sso/start?org={org}&returnTo=https%3A%2F%2Fevil.example%2F",
        app.address
    );
    let response = browser.get(&evil).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    provider.stop().await;
}

#[tokio::test]
async fn an_org_admin_cannot_sign_in_as_the_platform_admin_through_their_own_provider() {
    let app = TestApp::spawn().await;
    let rogue = app
        .create_org_with_domains("Rogue", &["rogue.example"])
        .await;
    app.create_user("boss@rogue.example", rogue, "admin").await;
    let boss = app.login_ok("boss@rogue.example", PASSWORD).await.token;
    let provider = start_provider(&app, free_port(), "k1").await;

    // The rogue admin points the platform admin's domain at a provider they control.
    let config = json!({"issuer": provider.issuer, "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET, "emailDomains": ["example.com", "rogue.example"],
        "allowJit": true, "redirectAllowList": [RETURN_TO]});
    let path = format!("/admin/orgs/{rogue}/sso");
    let response = app
        .send(reqwest::Method::PUT, &path, Some(&boss), Some(&config))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let saved = body(response).await;
    assert_eq!(saved["emailDomains"], json!(["rogue.example"]));
    assert_eq!(saved["pendingDomains"], json!(["example.com"]));
    let strategy = body(
        app.post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": ADMIN_EMAIL}),
        )
        .await,
    )
    .await;
    assert_eq!(
        strategy["strategy"], "password",
        "a pending domain does nothing"
    );
    let attacker = browser();
    let url = start_url(&app, &attacker, rogue, None).await;
    let landing = sign_in(&app, &attacker, &url, ADMIN_EMAIL, false).await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    assert_eq!(landing.body["error"], "sso_domain_mismatch");

    // Even were the domain approved by mistake, the existing account is not adopted.
    let response = app
        .send(
            reqwest::Method::PUT,
            &path,
            Some(&app.admin_token),
            Some(&config),
        )
        .await;
    assert_eq!(body(response).await["pendingDomains"], json!([]));
    let attacker = browser();
    let url = start_url(&app, &attacker, rogue, None).await;
    let landing = sign_in(&app, &attacker, &url, ADMIN_EMAIL, false).await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    assert_eq!(landing.body["error"], "sso_account_not_linked");
    let orgs = body(app.get("/user/orgs", Some(&app.admin_token)).await).await;
    assert_eq!(
        orgs.as_array().unwrap().len(),
        1,
        "not pulled into Rogue: {orgs}"
    );
    let audit = body(
        app.get(
            &format!("/admin/audit?event=sso.login&orgId={rogue}"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(audit["events"][0]["reason"], "sso_account_not_linked");

    // A domain another org holds stays pending for the rogue org (issue 28: a claim is only a
    // claim), and a platform admin cannot hand it over.
    app.create_org_with_domains("Acme", &["acme.example"]).await;
    let mut claim = config.clone();
    claim["emailDomains"] = json!(["acme.example"]);
    let response = app
        .send(reqwest::Method::PUT, &path, Some(&boss), Some(&claim))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(response).await["pendingDomains"],
        json!(["acme.example"])
    );
    let response = app
        .send(
            reqwest::Method::PUT,
            &path,
            Some(&app.admin_token),
            Some(&claim),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    provider.stop().await;
}

#[tokio::test]
async fn a_platform_admin_signed_in_through_sso_holds_no_platform_power() {
    let app = TestApp::spawn().await;
    let provider = start_provider(&app, free_port(), "k1").await;
    let config = json!({"issuer": provider.issuer, "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET, "emailDomains": ["example.com"],
        "allowPassword": true, "redirectAllowList": [RETURN_TO]});
    let response = app
        .send(
            reqwest::Method::PUT,
            "/admin/orgs/1/sso",
            Some(&app.admin_token),
            Some(&config),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let url = link_url(&app, &app.admin_token, 1, None).await;
    let landing = sign_in(&app, &browser(), &url, ADMIN_EMAIL, false).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    let token = landing.body["token"].as_str().unwrap();
    let me = body(app.me(token).await).await;
    assert_eq!(me["isPlatformAdmin"], false);
    assert_eq!(me["isAdmin"], true, "still the admin of org 1");
    let response = app
        .post("/admin/orgs", Some(token), &json!({"name": "Other"}))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    provider.stop().await;
}

#[tokio::test]
async fn an_account_with_a_second_factor_answers_it_after_single_sign_on() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    app.create_user("alice@acme.example", org, "member").await;
    let token = app.login_ok("alice@acme.example", PASSWORD).await.token;
    let (secret, _) = app.enrol_totp(&token).await;
    let provider = start_provider(&app, free_port(), "k1").await;
    configure(&app, org, &provider.issuer, false).await;
    let url = link_url(&app, &token, org, None).await;
    let landing = sign_in(&app, &browser(), &url, "alice@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.body["mfaRequired"], true);
    let pending = landing.body["token"].as_str().unwrap().to_owned();

    // Good for nothing but the code: not even enrolling another second factor.
    for response in [
        app.me(&pending).await,
        app.post("/user/mfa/totp/enroll", Some(&pending), &json!({}))
            .await,
        app.renew(&pending).await,
    ] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(response).await["error"], "mfa_required");
    }
    let wrong = app
        .post(
            "/user/mfa/verify",
            Some(&pending),
            &json!({"code": "000000"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    app.advance(Duration::from_secs(30));
    let verified = app
        .post(
            "/user/mfa/verify",
            Some(&pending),
            &json!({"code": app.totp_code(&secret, 0)}),
        )
        .await;
    assert_eq!(verified.status(), StatusCode::OK);
    let fresh = body(verified).await["token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&fresh).await.status(), StatusCode::OK);
    assert_eq!(
        app.me(&pending).await.status(),
        StatusCode::OK,
        "the session is complete"
    );
    let again = app
        .post(
            "/user/mfa/verify",
            Some(&fresh),
            &json!({"code": app.totp_code(&secret, 0)}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    provider.stop().await;
}

#[tokio::test]
async fn people_the_org_cannot_accept_are_told_why() {
    let (app, org, provider) = acme_with_provider(false).await;
    for (login, code) in [
        ("newcomer@acme.example", "sso_no_account"),
        ("unverified@acme.example", "sso_email_unverified"),
        ("other@elsewhere.example", "sso_domain_mismatch"),
    ] {
        // A new browser each time: the provider's own session would sign the last one in.
        let browser = browser();
        let url = start_url(&app, &browser, org, None).await;
        let landing = sign_in(&app, &browser, &url, login, false).await;
        assert_eq!(landing.status, StatusCode::FORBIDDEN, "{login}");
        assert_eq!(landing.body["error"], code, "{login}");
    }
    let audit = body(
        app.get("/admin/audit?event=sso.login", Some(&app.admin_token))
            .await,
    )
    .await;
    let reasons: Vec<_> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        vec![
            json!("sso_domain_mismatch"),
            json!("sso_email_unverified"),
            json!("sso_no_account")
        ]
    );
    provider.stop().await;
}

#[tokio::test]
async fn cancelling_at_the_provider_is_a_denied_sign_in() {
    let (app, org, provider) = acme_with_provider(true).await;
    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", true).await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    assert_eq!(landing.body["error"], "sso_denied");
    provider.stop().await;
}

#[tokio::test]
async fn a_wrong_nonce_fails_verification() {
    let (app, org, provider) = acme_with_provider(true).await;
    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    // Tamper with the login in flight, as an attacker replaying another login's token would.
    app.execute_sql("UPDATE sso_logins SET nonce = 'not-the-nonce-that-was-sent'")
        .await;
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(landing.body["error"], "sso_invalid_token");
    provider.stop().await;
}

#[tokio::test]
async fn a_provider_key_rotation_is_followed() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let port = free_port();
    let provider = start_provider(&app, port, "first-key").await;
    configure(&app, org, &provider.issuer, true).await;
    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    assert_eq!(
        sign_in(&app, &browser, &url, "newcomer@acme.example", false)
            .await
            .status,
        StatusCode::OK
    );
    provider.stop().await;

    // The provider comes back signing with a new key coreauth has not seen.
    let rotated = start_provider(&app, port, "second-key").await;
    let browser = self::browser();
    let url = start_url(&app, &browser, org, None).await;
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(rotated.port, port);
    rotated.stop().await;
}

#[tokio::test]
async fn a_sign_in_that_took_too_long_is_refused_as_expired() {
    let (app, org, provider) = acme_with_provider(true).await;
    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    // Ten minutes pass between the start and the callback.
    app.advance(Duration::from_secs(11 * 60));
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::BAD_REQUEST);
    assert_eq!(landing.body["error"], "sso_state_expired");
    provider.stop().await;
}

#[tokio::test]
async fn a_callback_completes_only_in_the_browser_that_started_the_sign_in() {
    let (app, org, provider) = acme_with_provider(true).await;

    // The attacker starts a sign-in as themselves and hands the callback URL to a victim
    // (login CSRF): in the victim's browser, without the starting browser's cookie, it fails.
    let attacker = browser();
    let url = start_url(&app, &attacker, org, None).await;
    let callback = reach_callback(&app, &attacker, &url, "newcomer@acme.example", false).await;
    let victim = browser();
    let landing = land(&victim, &callback).await;
    assert_eq!(landing.status, StatusCode::BAD_REQUEST);
    assert_eq!(landing.body["error"], "sso_browser_mismatch");
    let audit = body(
        app.get("/admin/audit?event=sso.login", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(audit["events"][0]["reason"], "sso_browser_mismatch");

    // The cookie is HttpOnly, SameSite=Lax and only sent to the callback.
    let response = browser()
        .get(format!(
            "{}/user/authenticate/sso/start?org={org}",
            app.address
        ))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        cookie.contains("Path=/user/authenticate/sso/callback"),
        "{cookie}"
    );

    // The starting browser completes as before.
    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    provider.stop().await;
}

#[tokio::test]
async fn used_and_expired_sign_ins_in_flight_are_pruned() {
    let (app, org, provider) = acme_with_provider(true).await;
    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::OK);
    for _ in 0..2 {
        start_url(&app, &self::browser(), org, None).await; // abandoned at the provider
    }
    let sso = &app.state.sso;
    assert_eq!(sso.prune(app.clock_now()).await.unwrap(), 1, "the used one");
    app.advance(Duration::from_secs(11 * 60));
    assert_eq!(
        sso.prune(app.clock_now()).await.unwrap(),
        2,
        "the expired ones"
    );
    assert_eq!(sso.prune(app.clock_now()).await.unwrap(), 0);
    provider.stop().await;
}

/// An org without just-in-time accounts lets in, through its provider, the addresses it
/// invited, with the invitation's role; the invitation is then accepted and its link dead.
#[tokio::test]
async fn an_invited_address_signs_in_through_the_provider_with_the_invitations_role() {
    let (app, org, provider) = acme_with_provider(false).await;
    let invited = app
        .post(
            &format!("/admin/orgs/{org}/invitations"),
            Some(&app.admin_token),
            &json!({"email": "newcomer@acme.example", "role": "admin"}),
        )
        .await;
    assert_eq!(invited.status(), StatusCode::CREATED);
    let browser = browser();
    let url = start_url(&app, &browser, org, None).await;
    let landing = sign_in(&app, &browser, &url, "newcomer@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.body["user"]["role"], "admin");
    let listed = body(
        app.get(
            &format!("/admin/orgs/{org}/invitations"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    // (Without the invitation the same address is refused: `people_the_org_cannot_accept_…`.)
    assert_eq!(listed[0]["state"], "accepted");
    provider.stop().await;
}
