//! Enterprise identities against the real provider: Entra- and ADFS-shaped tokens (no
//! `email_verified`; `preferred_username`, `oid`, `tid`, `groups`; `upn`, `unique_name`, `group`)
//! through presets and claim mapping, several connections in one org, a provider's MFA, and no
//! org taking over another's people.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;
use crate::helpers::*;

pub(crate) const ENTRA_ADMINS: &str = "a1b2c3d4-0000-0000-0000-0000000000ad";
const ENTRA_STAFF: &str = "a1b2c3d4-0000-0000-0000-000000000057";

fn entra(issuer: &str) -> Value {
    json!({"name": "staff", "preset": "entra", "issuer": issuer, "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET, "emailDomains": ["contoso.example"], "allowJit": true,
        "claims": {"roleMapping": {ENTRA_ADMINS: "admin", ENTRA_STAFF: "member"},
                   "defaultRole": "none"}})
}

fn adfs(issuer: &str) -> Value {
    json!({"name": "subsidiary", "preset": "adfs", "issuer": issuer, "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET, "emailDomains": ["fabrikam.example"], "allowJit": true,
        "claims": {"roleMapping": {"Coreauth Admins": "admin"}}})
}

/// Where `strategy` sends `email`'s browser; asserts it is SSO through `connection`.
pub(crate) async fn strategy_start(app: &TestApp, email: &str, connection: i64) -> String {
    let answer = body(
        app.post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": email}),
        )
        .await,
    )
    .await;
    assert_eq!(answer["strategy"], "sso", "{email}: {answer}");
    assert_eq!(answer["connectionId"], connection, "{email}: {answer}");
    answer["redirectUrl"].as_str().unwrap().to_owned()
}

/// Signs in through the start URL `strategy` gave, as `login` at the provider.
pub(crate) async fn sign_in_from(app: &TestApp, start: &str, login: &str) -> Landing {
    let browser = browser();
    let response = browser.get(start).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let url = response.headers()["location"].to_str().unwrap().to_owned();
    sign_in(app, &browser, &url, login, false).await
}

#[tokio::test]
async fn entra_and_adfs_tokens_sign_in_through_two_connections_of_one_org_in_the_right_roles() {
    let app = TestApp::spawn().await;
    // A platform admin created the org with both domains: they count at once.
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example", "fabrikam.example"])
        .await;
    let provider = start_provider(&app, free_port(), "k1").await;
    let staff = add_connection(&app, &app.admin_token, org, &entra(&provider.issuer)).await;
    let subsidiary = add_connection(&app, &app.admin_token, org, &adfs(&provider.issuer)).await;
    assert_eq!(staff["emailDomains"], json!(["contoso.example"]));
    assert_eq!(staff["claims"]["trustUnverifiedEmail"], true);
    assert_eq!(
        subsidiary["claims"]["emailClaims"],
        json!(["email", "upn", "unique_name"])
    );
    let (staff, subsidiary) = (
        staff["id"].as_i64().unwrap(),
        subsidiary["id"].as_i64().unwrap(),
    );
    let listed = body(
        app.get(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Entra: no email, no email_verified; preferred_username is the address, groups the role.
    let start = strategy_start(&app, "erin@contoso.example", staff).await;
    let erin = sign_in_from(&app, &start, "erin@contoso.example").await;
    assert_eq!(erin.status, StatusCode::OK, "{}", erin.body);
    assert_eq!(erin.body["user"]["email"], "erin@contoso.example");
    assert_eq!(erin.body["user"]["role"], "admin", "{}", erin.body);
    assert_eq!(erin.body["user"]["first"], "Erin");
    let sam = sign_in_from(&app, &start, "sam@contoso.example").await;
    assert_eq!(sam.body["user"]["role"], "member", "{}", sam.body);
    // No group maps and the connection has no default: refused, and audited with the reason.
    let guest = sign_in_from(&app, &start, "guest@contoso.example").await;
    assert_eq!(guest.status, StatusCode::FORBIDDEN);
    assert_eq!(guest.body["error"], "sso_no_role");

    // ADFS: upn (or unique_name) is the address, `group` the role.
    let start = strategy_start(&app, "bob@fabrikam.example", subsidiary).await;
    let bob = sign_in_from(&app, &start, "FABRIKAM\\bob").await;
    assert_eq!(bob.status, StatusCode::OK, "{}", bob.body);
    assert_eq!(bob.body["user"]["email"], "bob@fabrikam.example");
    assert_eq!(bob.body["user"]["role"], "admin");
    let carol = sign_in_from(&app, &start, "FABRIKAM\\carol").await;
    assert_eq!(carol.status, StatusCode::OK, "{}", carol.body);
    assert_eq!(carol.body["user"]["email"], "carol@fabrikam.example");
    assert_eq!(carol.body["user"]["role"], "member", "the default role");

    // An Entra-shaped identity through the ADFS connection: none of the claims it reads.
    let wrong = sign_in_from(&app, &start, "erin@contoso.example").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.body["error"], "sso_email_missing");

    // The groups decide the role at every sign-in: Erin leaves the admins' group.
    let mut fewer = entra(&provider.issuer);
    fewer["claims"]["roleMapping"] = json!({ENTRA_STAFF: "member"});
    let response = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/sso/connections/{staff}"),
            Some(&app.admin_token),
            Some(&fewer),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let start = strategy_start(&app, "erin@contoso.example", staff).await;
    let again = sign_in_from(&app, &start, "erin@contoso.example").await;
    assert_eq!(again.body["user"]["role"], "member", "{}", again.body);

    let audit = body(
        app.get(
            &format!("/admin/audit?event=sso.login&orgId={org}"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    let reasons: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"sso_no_role"), "{audit}");
    assert!(reasons.contains(&"sso_email_missing"), "{audit}");
    provider.stop().await;
}

#[tokio::test]
async fn the_generic_preset_refuses_what_entra_and_adfs_send_without_a_mapping() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let provider = start_provider(&app, free_port(), "k1").await;
    let mut generic = entra(&provider.issuer);
    generic["preset"] = json!("generic");
    generic["claims"] = json!({});
    let id = add_connection(&app, &app.admin_token, org, &generic).await["id"]
        .as_i64()
        .unwrap();
    let start = strategy_start(&app, "erin@contoso.example", id).await;
    let erin = sign_in_from(&app, &start, "erin@contoso.example").await;
    assert_eq!(erin.status, StatusCode::FORBIDDEN);
    assert_eq!(erin.body["error"], "sso_email_missing");

    // Reading preferred_username without trusting it is not enough either.
    generic["claims"] = json!({"emailClaims": ["email", "preferred_username"]});
    app.send(
        reqwest::Method::PUT,
        &format!("/admin/orgs/{org}/sso/connections/{id}"),
        Some(&app.admin_token),
        Some(&generic),
    )
    .await;
    let erin = sign_in_from(&app, &start, "erin@contoso.example").await;
    assert_eq!(erin.body["error"], "sso_email_unverified");
    provider.stop().await;
}

#[tokio::test]
async fn a_provider_that_asserts_mfa_satisfies_the_orgs_second_factor_rule() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let provider = start_provider(&app, free_port(), "k1").await;
    let mut connection = entra(&provider.issuer);
    connection["claims"]["defaultRole"] = json!("member");
    let id = add_connection(&app, &app.admin_token, org, &connection).await["id"]
        .as_i64()
        .unwrap();
    let policy = json!({"minLength": 12, "maxAgeDays": 0, "historyCount": 0,
        "rejectCommon": false, "requireMfa": true});
    let response = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/password-policy"),
            Some(&app.admin_token),
            Some(&policy),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let start = strategy_start(&app, "mfa@contoso.example", id).await;
    let strong = sign_in_from(&app, &start, "mfa@contoso.example").await;
    assert_eq!(strong.status, StatusCode::OK, "{}", strong.body);
    assert!(strong.body.get("mfaEnrollmentRequired").is_none());
    let token = strong.body["token"].as_str().unwrap();
    assert_eq!(
        app.get("/user/orgs", Some(token)).await.status(),
        StatusCode::OK,
        "a full session"
    );

    // amr without `mfa`: coreauth's own second factor is asked for.
    let weak = sign_in_from(&app, &start, "sam@contoso.example").await;
    assert_eq!(weak.status, StatusCode::OK);
    assert_eq!(weak.body["mfaEnrollmentRequired"], true, "{}", weak.body);
    provider.stop().await;
}

#[tokio::test]
async fn an_org_cannot_take_over_another_orgs_people_by_claiming_their_domain() {
    let app = TestApp::spawn().await;
    // Org A holds acme.example (set by a platform admin); Alice signs in there with a password.
    let acme = app.create_org_with_domains("Acme", &["acme.example"]).await;
    app.create_user("alice@acme.example", acme, "member").await;
    // Org B's admin runs an identity provider of their own.
    let rogue = app
        .create_org_with_domains("Rogue", &["rogue.example"])
        .await;
    app.create_user("boss@rogue.example", rogue, "admin").await;
    let boss = app.login_ok("boss@rogue.example", PASSWORD).await.token;
    let provider = start_provider(&app, free_port(), "k1").await;

    let mut grab = entra(&provider.issuer);
    grab["emailDomains"] = json!(["acme.example", "rogue.example"]);
    grab["claims"] = json!({"defaultRole": "admin"});
    let saved = add_connection(&app, &boss, rogue, &grab).await;
    assert_eq!(saved["emailDomains"], json!(["rogue.example"]));
    assert_eq!(saved["pendingDomains"], json!(["acme.example"]));
    let claims = body(
        app.get(&format!("/admin/orgs/{rogue}/domains"), Some(&boss))
            .await,
    )
    .await;
    let acme_claim = claims
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["domain"] == "acme.example")
        .unwrap();
    assert_eq!(acme_claim["status"], "pending");

    let strategy = body(
        app.post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": "alice@acme.example"}),
        )
        .await,
    )
    .await;
    assert_eq!(strategy, json!({"strategy": "password"}), "still org A's");

    // B's provider asserts Alice: no session as Alice, in any org.
    let attacker = browser();
    let url = start_url(&app, &attacker, rogue, None).await;
    let landing = sign_in(&app, &attacker, &url, "alice@acme.example", false).await;
    assert_eq!(landing.status, StatusCode::FORBIDDEN);
    assert_eq!(landing.body["error"], "sso_domain_mismatch");
    let audit = body(
        app.get(
            &format!("/admin/audit?event=sso.login&orgId={rogue}"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    let refused = &audit["events"][0];
    assert_eq!(refused["outcome"], "failure");
    assert_eq!(refused["reason"], "sso_domain_mismatch");
    assert_eq!(refused["details"]["email"], "alice@acme.example");

    // B's admin cannot get the domain verified either: it is org A's.
    let response = app
        .post(
            &format!("/admin/orgs/{rogue}/domains/acme.example/approve"),
            Some(&boss),
            &json!({}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app
        .post(
            &format!("/admin/orgs/{rogue}/domains/acme.example/approve"),
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;

    // Nor reach org A's settings.
    for path in [
        format!("/admin/orgs/{acme}/domains"),
        format!("/admin/orgs/{acme}/sso/connections"),
    ] {
        assert_error(
            app.get(&path, Some(&boss)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let alice = app.login_ok("alice@acme.example", PASSWORD).await;
    let orgs = body(app.get("/user/orgs", Some(&alice.token)).await).await;
    assert_eq!(orgs.as_array().unwrap().len(), 1, "not pulled into Rogue");
    provider.stop().await;
}

#[tokio::test]
async fn a_platform_admin_links_an_existing_account_so_its_first_sso_sign_in_finds_it() {
    let (app, org, provider) = acme_with_provider(false).await;
    let alice = app.create_user("alice@acme.example", org, "member").await;
    app.create_user("it@acme.example", org, "admin").await;
    // Acme's admin keeps a password (the connection allows both) but is no platform admin.
    let both = json!({"issuer": provider.issuer, "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET, "emailDomains": ["acme.example"],
        "allowPassword": true, "redirectAllowList": [RETURN_TO]});
    let response = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/sso"),
            Some(&app.admin_token),
            Some(&both),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let org_admin = app.login_ok("it@acme.example", PASSWORD).await.token;
    let connection = body(
        app.get(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await[0]["id"]
        .as_i64()
        .unwrap();
    let sign_in_as_alice = || async {
        let browser = browser();
        let url = start_url(&app, &browser, org, None).await;
        sign_in(&app, &browser, &url, "alice@acme.example", false).await
    };
    let refused = sign_in_as_alice().await;
    assert_eq!(refused.body["error"], "sso_account_not_linked");

    let path = format!("/admin/users/{alice}/sso-identities");
    let link = json!({"connectionId": connection, "subject": "alice@acme.example"});
    let response = app.post(&path, Some(&org_admin), &link).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.post(&path, Some(&app.admin_token), &link).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let again = app.post(&path, Some(&app.admin_token), &link).await;
    assert_error(again, StatusCode::CONFLICT, "conflict").await;
    let linked = body(app.get(&path, Some(&app.admin_token)).await).await;
    assert_eq!(linked[0]["subject"], "alice@acme.example");
    assert_eq!(linked[0]["orgId"], org);

    let landing = sign_in_as_alice().await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.body["user"]["id"], alice);

    let response = app
        .send(
            reqwest::Method::DELETE,
            &path,
            Some(&app.admin_token),
            Some(&link),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let refused = sign_in_as_alice().await;
    assert_eq!(refused.body["error"], "sso_account_not_linked");
    let audit = body(
        app.get(
            &format!("/admin/audit?event=sso.linked&userId={alice}"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert_eq!(audit["events"][0]["details"]["via"], "platform-admin");
    provider.stop().await;
}
