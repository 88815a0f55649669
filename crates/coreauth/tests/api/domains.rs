//! Claims to email domains and their proof by DNS, against a real authoritative DNS server on
//! loopback (`dns_server::TestDns`, hickory-server in-process): a claim stays pending until its
//! TXT record is published, one org at most has a domain verified, a platform admin may approve
//! one, and only a verified domain makes `strategy` answer SSO.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dns_server::TestDns;
use crate::helpers::*;

/// An app whose domain lookups go to `dns`.
async fn app_with(dns: &TestDns) -> TestApp {
    let servers = dns.servers();
    TestApp::spawn_with(|settings| settings.dns_servers = Some(servers)).await
}

async fn claim(app: &TestApp, token: &str, org: i64, domain: &str) -> reqwest::Response {
    app.post(
        &format!("/admin/orgs/{org}/domains"),
        Some(token),
        &json!({"domain": domain}),
    )
    .await
}

async fn verify(app: &TestApp, token: &str, org: i64, domain: &str) -> reqwest::Response {
    app.post(
        &format!("/admin/orgs/{org}/domains/{domain}/verify"),
        Some(token),
        &json!({}),
    )
    .await
}

async fn strategy(app: &TestApp, email: &str) -> Value {
    body(
        app.post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": email}),
        )
        .await,
    )
    .await
}

/// An org with an admin who is no platform admin: their token.
async fn org_admin(app: &TestApp, org_name: &str, email: &str) -> (i64, String) {
    let org = app.create_org(org_name).await;
    app.create_user(email, org, "admin").await;
    (org, app.login_ok(email, PASSWORD).await.token)
}

/// An SSO connection serving `domain`, set by the org's admin (so the domain waits for proof).
async fn connect(app: &TestApp, token: &str, org: i64, domain: &str) {
    let connection = json!({"name": "staff", "preset": "entra",
        "issuer": "http://127.0.0.1:9", "clientId": "c", "clientSecret": "s",
        "emailDomains": [domain]});
    let response = app
        .post(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(token),
            &connection,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(body(response).await["pendingDomains"], json!([domain]));
}

#[tokio::test]
async fn a_domain_counts_once_its_txt_record_is_published() {
    let dns = TestDns::start(&["acme.example"]).await;
    let app = app_with(&dns).await;
    let (org, admin) = org_admin(&app, "Acme", "it@acme.example").await;
    connect(&app, &admin, org, "acme.example").await;
    assert_eq!(
        strategy(&app, "ann@acme.example").await["strategy"],
        "password"
    );

    let response = claim(&app, &admin, org, "acme.example").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the connection claimed it"
    );
    let pending = body(response).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["verificationRecord"]["type"], "TXT");
    assert_eq!(pending["verificationRecord"]["name"], "acme.example");
    let record = pending["verificationRecord"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(record.starts_with("coreauth-verification="), "{record}");

    // Absent, then wrong: the claim stays pending.
    let absent = verify(&app, &admin, org, "acme.example").await;
    assert_error(absent, StatusCode::CONFLICT, "domain_not_verified").await;
    dns.set_txt(
        "acme.example",
        &["v=spf1 -all", "coreauth-verification=not-ours"],
    )
    .await;
    let wrong = verify(&app, &admin, org, "acme.example").await;
    assert_error(wrong, StatusCode::CONFLICT, "domain_not_verified").await;
    let listed = body(
        app.get(&format!("/admin/orgs/{org}/domains"), Some(&admin))
            .await,
    )
    .await;
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(
        strategy(&app, "ann@acme.example").await["strategy"],
        "password"
    );

    // Present (beside other records): verified, and the domain signs in through SSO.
    dns.set_txt("acme.example", &["v=spf1 -all", &record]).await;
    let response = verify(&app, &admin, org, "acme.example").await;
    assert_eq!(response.status(), StatusCode::OK);
    let verified = body(response).await;
    assert_eq!(verified["status"], "verified");
    assert_eq!(verified["verifiedBy"], "dns");
    let answer = strategy(&app, "ann@acme.example").await;
    assert_eq!(answer["strategy"], "sso");
    assert_eq!(answer["orgId"], org);

    let audit = body(
        app.get(
            &format!("/admin/audit?event=domain.verified&orgId={org}"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    let outcomes: Vec<(&str, Option<&str>)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["outcome"].as_str().unwrap(), e["reason"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("success", None),
            ("failure", Some("domain_not_verified")),
            ("failure", Some("domain_not_verified")),
        ]
    );

    // Withdrawn: the domain does nothing again.
    let response = app
        .delete(
            &format!("/admin/orgs/{org}/domains/acme.example"),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        strategy(&app, "ann@acme.example").await["strategy"],
        "password"
    );
}

#[tokio::test]
async fn a_domain_verified_by_one_org_cannot_be_verified_by_another() {
    let dns = TestDns::start(&["acme.example"]).await;
    let app = app_with(&dns).await;
    let (acme, acme_admin) = org_admin(&app, "Acme", "it@acme.example").await;
    let (rogue, rogue_admin) = org_admin(&app, "Rogue", "boss@rogue.example").await;
    let acme_claim = body(claim(&app, &acme_admin, acme, "acme.example").await).await;
    let acme_record = acme_claim["verificationRecord"]["value"].as_str().unwrap();
    let response = claim(&app, &rogue_admin, rogue, "acme.example").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rogue_claim = body(response).await;
    let rogue_record = rogue_claim["verificationRecord"]["value"].as_str().unwrap();
    assert_ne!(acme_record, rogue_record, "each claim its own token");

    dns.set_txt("acme.example", &[acme_record]).await;
    assert_eq!(
        verify(&app, &acme_admin, acme, "acme.example")
            .await
            .status(),
        StatusCode::OK
    );
    // Even with its own record published too, the second org is refused.
    dns.set_txt("acme.example", &[acme_record, rogue_record])
        .await;
    let response = verify(&app, &rogue_admin, rogue, "acme.example").await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    let listed = body(
        app.get(&format!("/admin/orgs/{rogue}/domains"), Some(&rogue_admin))
            .await,
    )
    .await;
    assert_eq!(listed[0]["status"], "pending");
    connect(&app, &rogue_admin, rogue, "acme.example").await;
    assert_eq!(
        strategy(&app, "ann@acme.example").await["strategy"],
        "password"
    );

    // A platform admin cannot approve it for the second org either.
    let response = app
        .post(
            &format!("/admin/orgs/{rogue}/domains/acme.example/approve"),
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn only_a_platform_admin_approves_a_domain_and_org_admins_reach_only_their_orgs_claims() {
    let dns = TestDns::start(&["acme.example"]).await;
    let app = app_with(&dns).await;
    let (acme, acme_admin) = org_admin(&app, "Acme", "it@acme.example").await;
    let (_, rogue_admin) = org_admin(&app, "Rogue", "boss@rogue.example").await;
    let path = format!("/admin/orgs/{acme}/domains/acme.example/approve");
    let response = app.post(&path, Some(&acme_admin), &json!({})).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    // Another org's admin reaches nothing of Acme's claims.
    claim(&app, &acme_admin, acme, "acme.example").await;
    let refused = [
        app.get(&format!("/admin/orgs/{acme}/domains"), Some(&rogue_admin))
            .await,
        claim(&app, &rogue_admin, acme, "other.example").await,
        verify(&app, &rogue_admin, acme, "acme.example").await,
        app.delete(
            &format!("/admin/orgs/{acme}/domains/acme.example"),
            Some(&rogue_admin),
        )
        .await,
    ];
    for response in refused {
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }

    let response = app.post(&path, Some(&app.admin_token), &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let approved = body(response).await;
    assert_eq!(approved["status"], "verified");
    assert_eq!(approved["verifiedBy"], "platform-admin");

    // Bad input is a 4xx with the spec's body.
    let response = claim(&app, &acme_admin, acme, "not a domain").await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = verify(&app, &acme_admin, acme, "unclaimed.example").await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_unreachable_dns_is_a_bad_gateway_and_the_claim_stays_pending() {
    // A UDP socket that never answers, and nothing listening for TCP on its port.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let servers = silent.local_addr().unwrap().to_string();
    let app = TestApp::spawn_with(|settings| settings.dns_servers = Some(servers)).await;
    let (org, admin) = org_admin(&app, "Acme", "it@acme.example").await;
    claim(&app, &admin, org, "acme.example").await;
    let response = verify(&app, &admin, org, "acme.example").await;
    assert_error(response, StatusCode::BAD_GATEWAY, "dns_unreachable").await;
    let listed = body(
        app.get(&format!("/admin/orgs/{org}/domains"), Some(&admin))
            .await,
    )
    .await;
    assert_eq!(listed[0]["status"], "pending");
}

#[tokio::test]
async fn an_org_admin_reaches_no_other_orgs_connections_even_by_id() {
    let dns = TestDns::start(&["acme.example"]).await;
    let app = app_with(&dns).await;
    let (acme, acme_admin) = org_admin(&app, "Acme", "it@acme.example").await;
    let (rogue, rogue_admin) = org_admin(&app, "Rogue", "boss@rogue.example").await;
    connect(&app, &acme_admin, acme, "acme.example").await;
    let listed = body(
        app.get(
            &format!("/admin/orgs/{acme}/sso/connections"),
            Some(&acme_admin),
        )
        .await,
    )
    .await;
    let id = listed[0]["id"].as_i64().unwrap();
    let replacement = json!({"name": "mine", "issuer": "http://127.0.0.1:9", "clientId": "c",
        "clientSecret": "s", "emailDomains": ["rogue.example"]});

    // Through Acme's path: not an admin there.
    let path = format!("/admin/orgs/{acme}/sso/connections/{id}");
    for response in [
        app.get(&path, Some(&rogue_admin)).await,
        app.send(
            reqwest::Method::PUT,
            &path,
            Some(&rogue_admin),
            Some(&replacement),
        )
        .await,
        app.delete(&path, Some(&rogue_admin)).await,
    ] {
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Through its own org's path with Acme's connection id: no such connection there.
    let path = format!("/admin/orgs/{rogue}/sso/connections/{id}");
    for response in [
        app.get(&path, Some(&rogue_admin)).await,
        app.send(
            reqwest::Method::PUT,
            &path,
            Some(&rogue_admin),
            Some(&replacement),
        )
        .await,
        app.delete(&path, Some(&rogue_admin)).await,
    ] {
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let still = body(
        app.get(
            &format!("/admin/orgs/{acme}/sso/connections/{id}"),
            Some(&acme_admin),
        )
        .await,
    )
    .await;
    assert_eq!(still["name"], "staff");
    assert_eq!(still["pendingDomains"], json!(["acme.example"]));

    // Two connections of one org cannot serve the same domain, nor share a name.
    let twin = json!({"name": "staff", "issuer": "http://127.0.0.1:9", "clientId": "c",
        "clientSecret": "s", "emailDomains": ["acme-labs.example"]});
    let response = app
        .post(
            &format!("/admin/orgs/{acme}/sso/connections"),
            Some(&acme_admin),
            &twin,
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    let overlap = json!({"name": "labs", "issuer": "http://127.0.0.1:9", "clientId": "c",
        "clientSecret": "s", "emailDomains": ["acme.example"]});
    let response = app
        .post(
            &format!("/admin/orgs/{acme}/sso/connections"),
            Some(&acme_admin),
            &overlap,
        )
        .await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
}
