//! People a directory provisions through SCIM, signing in through the org's provider: the
//! provider's identity links to the account the directory made, and the org's groups → role
//! table gives their role where the connection maps no groups of its own.

use reqwest::StatusCode;
use serde_json::json;

use crate::enterprise::{ENTRA_ADMINS, sign_in_from, strategy_start};
use crate::harness::*;
use crate::helpers::*;

#[tokio::test]
async fn provisioned_people_sign_in_in_the_role_the_orgs_group_table_gives() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let provider = start_provider(&app, free_port(), "k1").await;
    // No just-in-time accounts: only the people the directory provisioned sign in.
    let connection = json!({"name": "staff", "preset": "entra", "issuer": provider.issuer,
        "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
        "emailDomains": ["contoso.example"], "allowJit": false,
        "claims": {"defaultRole": "member"}});
    let id = add_connection(&app, &app.admin_token, org, &connection).await["id"]
        .as_i64()
        .unwrap();
    let table = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/group-roles"),
            Some(&app.admin_token),
            Some(&json!({"groups": {ENTRA_ADMINS: "admin"}})),
        )
        .await;
    assert_eq!(table.status(), StatusCode::OK);
    let token = body(
        app.post(
            &format!("/admin/orgs/{org}/scim/tokens"),
            Some(&app.admin_token),
            &json!({"name": "Entra ID"}),
        )
        .await,
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (email, first) in [
        ("erin@contoso.example", "Erin"),
        ("sam@contoso.example", "Sam"),
    ] {
        let created = app
            .client
            .post(app.url("/scim/v2/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(json!({"userName": email, "name": {"givenName": first}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
    }

    let start = strategy_start(&app, "erin@contoso.example", id).await;
    let erin = sign_in_from(&app, &start, "erin@contoso.example").await;
    assert_eq!(erin.status, StatusCode::OK, "{}", erin.body);
    assert_eq!(erin.body["user"]["role"], "admin", "{}", erin.body);
    let sam = sign_in_from(&app, &start, "sam@contoso.example").await;
    assert_eq!(sam.status, StatusCode::OK, "{}", sam.body);
    assert_eq!(sam.body["user"]["role"], "member", "{}", sam.body);
    let guest = sign_in_from(&app, &start, "guest@contoso.example").await;
    assert_eq!(guest.status, StatusCode::FORBIDDEN, "{}", guest.body);
    // An account with a password is its owner's to link, even when the directory manages it.
    app.create_user("mfa@contoso.example", org, "member").await;
    let found = app
        .client
        .get(app.url("/scim/v2/Users"))
        .query(&[("filter", r#"userName eq "mfa@contoso.example""#)])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mfa_id = body(found).await["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let replaced = app
        .client
        .put(app.url(&format!("/scim/v2/Users/{mfa_id}")))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(json!({"userName": "mfa@contoso.example", "externalId": "mfa-oid"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let mfa = sign_in_from(&app, &start, "mfa@contoso.example").await;
    assert_eq!(mfa.status, StatusCode::FORBIDDEN, "{}", mfa.body);
    assert_eq!(mfa.body["error"], "sso_account_not_linked");
    provider.stop().await;
}
