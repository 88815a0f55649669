//! SCIM 2.0 provisioning of users, with the request sequences Entra ID and Okta send (their
//! documented creates, `replace` of `active`, lookups by `userName`), and the refusals:
//! malformed filters, unknown attributes, conflicts. Groups and other orgs' tokens are in
//! `scim_groups.rs`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A new SCIM token of `org`, made by the platform admin.
pub(crate) async fn scim_token(app: &TestApp, org: i64) -> String {
    let response = app
        .post(
            &format!("/admin/orgs/{org}/scim/tokens"),
            Some(&app.admin_token),
            &json!({"name": "directory"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = body(response).await;
    assert!(created["baseUrl"].as_str().unwrap().ends_with("/scim/v2"));
    created["token"].as_str().unwrap().to_owned()
}

pub(crate) async fn scim(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .request(method, app.url(&format!("/scim/v2{path}")))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/scim+json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    if status != StatusCode::NO_CONTENT {
        assert_eq!(
            response.headers()["content-type"],
            "application/scim+json",
            "{path}"
        );
    }
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, value)
}

pub(crate) fn assert_scim_error(
    answer: &(StatusCode, Value),
    status: StatusCode,
    scim_type: Option<&str>,
) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(
        answer.1["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(answer.1["status"], status.as_u16().to_string());
    if let Some(scim_type) = scim_type {
        assert_eq!(answer.1["scimType"], scim_type, "{}", answer.1);
    }
}

pub(crate) fn filter(text: &str) -> String {
    format!("/Users?filter={}", percent_encode(text))
}

pub(crate) fn percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Entra ID's documented create (the provisioning service's test sequence).
pub(crate) fn entra_user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Alice Smith", "familyName": "Smith", "givenName": "Alice"},
        "roles": [],
        ENTERPRISE: {"department": "Engineering", "employeeNumber": "E-7"},
    })
}

#[tokio::test]
async fn entra_id_creates_looks_up_updates_deactivates_and_deletes_a_user() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let token = scim_token(&app, org).await;

    // Entra looks the user up by userName before it creates them.
    let (status, list) = scim(
        &app,
        Method::GET,
        &filter(r#"userName eq "alice@contoso.example""#),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["totalResults"], 0);
    assert_eq!(
        list["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );

    let (status, created) = scim(
        &app,
        Method::POST,
        "/Users",
        &token,
        Some(entra_user("alice@contoso.example", "0a21f0f2-8d2a-4f8e")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["userName"], "alice@contoso.example");
    assert_eq!(created["externalId"], "0a21f0f2-8d2a-4f8e");
    assert_eq!(created["active"], true);
    assert_eq!(created["name"]["givenName"], "Alice");
    assert_eq!(created[ENTERPRISE]["department"], "Engineering");
    assert!(
        created["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{id}"))
    );

    let (_, found) = scim(
        &app,
        Method::GET,
        &filter(r#"userName eq "Alice@Contoso.example""#),
        &token,
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["id"], id.as_str());
    let (_, by_external) = scim(
        &app,
        Method::GET,
        &filter(r#"externalId eq "0a21f0f2-8d2a-4f8e""#),
        &token,
        None,
    )
    .await;
    assert_eq!(by_external["totalResults"], 1);

    // Entra's update: capitalised ops, paths with filters, the extension by its URN.
    let (status, patched) = scim(&app, Method::PATCH, &format!("/Users/{id}"), &token, Some(json!({
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "Replace", "path": "name.givenName", "value": "Alicia"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "alice@contoso.example"},
            {"op": "Add", "path": "title", "value": "Engineer"},
            {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Platform"},
        ],
    }))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"]["givenName"], "Alicia");
    assert_eq!(patched["title"], "Engineer");
    assert_eq!(patched[ENTERPRISE]["department"], "Platform");
    assert_eq!(patched[ENTERPRISE]["employeeNumber"], "E-7");

    // Deprovisioning: Entra replaces active with the string "False".
    let (status, disabled) = scim(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(disabled["active"], false);
    let (_, fetched) = scim(&app, Method::GET, &format!("/Users/{id}"), &token, None).await;
    assert_eq!(fetched["active"], false);
    assert_eq!(fetched["title"], "Engineer");

    let (status, _) = scim(&app, Method::DELETE, &format!("/Users/{id}"), &token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = scim(&app, Method::GET, &format!("/Users/{id}"), &token, None).await;
    assert_scim_error(&gone, StatusCode::NOT_FOUND, None);

    let audit = body(
        app.get(&format!("/admin/audit?orgId={org}"), Some(&app.admin_token))
            .await,
    )
    .await;
    let events: Vec<&str> = audit
        .as_array()
        .or_else(|| audit["events"].as_array())
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| e.starts_with("scim.user"))
        .collect();
    for expected in [
        "scim.user.created",
        "scim.user.updated",
        "scim.user.deactivated",
        "scim.user.removed",
    ] {
        assert!(events.contains(&expected), "{expected} in {events:?}");
    }
    let text = audit.to_string();
    assert!(
        !text.contains(&token),
        "the token is never in the audit trail"
    );
    assert!(
        text.contains("scimToken"),
        "the token that made a change is named"
    );
}

#[tokio::test]
async fn deprovisioning_ends_the_members_sessions_and_keys_in_the_org_at_once() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    app.create_user("bob@contoso.example", org, "member").await;
    let session = app
        .login_to("bob@contoso.example", PASSWORD, org)
        .await
        .token;
    let (_, key) = app.add_key(&session, "bob's script").await;
    let token = scim_token(&app, org).await;

    // A member an admin made is in the directory's view; Entra matches and links them.
    let (_, found) = scim(
        &app,
        Method::GET,
        &filter(r#"userName eq "bob@contoso.example""#),
        &token,
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1);
    let id = found["Resources"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = scim(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Add", "path": "externalId", "value": "bob-oid"}],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.me(&session).await.status(), StatusCode::OK);

    // Okta's deactivation: a replace without a path.
    let (status, _) = scim(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "value": {"active": false}}],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.me(&session).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/authheader/list", Some(&key)).await.status(),
        StatusCode::FORBIDDEN
    );

    // Reactivated, the key works again (it was stopped, not deleted); the session stays ended.
    let (status, _) = scim(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "active", "value": true}],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.get("/authheader/list", Some(&key)).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.me(&session).await.status(), StatusCode::FORBIDDEN);

    // Deleted: the membership, and the key with it.
    let (status, _) = scim(&app, Method::DELETE, &format!("/Users/{id}"), &token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/authheader/list", Some(&key)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_ne!(
        app.login("bob@contoso.example", PASSWORD, org)
            .await
            .status(),
        StatusCode::OK
    );
    let gone = scim(&app, Method::GET, &format!("/Users/{id}"), &token, None).await;
    assert_scim_error(&gone, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn bad_requests_get_scim_errors_with_their_types() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let token = scim_token(&app, org).await;
    let (status, _) = scim(
        &app,
        Method::POST,
        "/Users",
        &token,
        Some(entra_user("alice@contoso.example", "a")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let again = scim(
        &app,
        Method::POST,
        "/Users",
        &token,
        Some(entra_user("ALICE@contoso.example", "b")),
    )
    .await;
    assert_scim_error(&again, StatusCode::CONFLICT, Some("uniqueness"));
    let (_, _) = scim(
        &app,
        Method::POST,
        "/Groups",
        &token,
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "Staff"})),
    )
    .await;
    let twin = scim(
        &app,
        Method::POST,
        "/Groups",
        &token,
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "staff"})),
    )
    .await;
    assert_scim_error(&twin, StatusCode::CONFLICT, Some("uniqueness"));

    for bad in [
        r#"userName eq"#,
        r#"userName xx "a""#,
        r#"((userName eq "a")"#,
    ] {
        assert_scim_error(
            &scim(&app, Method::GET, &filter(bad), &token, None).await,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        );
    }
    let unknown = scim(
        &app,
        Method::GET,
        &filter(r#"shoeSize eq "9""#),
        &token,
        None,
    )
    .await;
    assert_scim_error(&unknown, StatusCode::BAD_REQUEST, Some("invalidFilter"));
    assert!(unknown.1["detail"].as_str().unwrap().contains("shoeSize"));

    let (_, list) = scim(&app, Method::GET, "/Users", &token, None).await;
    let id = list["Resources"][0]["id"].as_str().unwrap().to_owned();
    let unknown_path = scim(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "shoeSize", "value": 9}],
        })),
    )
    .await;
    assert_scim_error(&unknown_path, StatusCode::BAD_REQUEST, Some("invalidPath"));
    let no_target = scim(
        &app,
        Method::PATCH,
        &format!("/Users/{id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP], "Operations": [{"op": "remove"}],
        })),
    )
    .await;
    assert_scim_error(&no_target, StatusCode::BAD_REQUEST, Some("noTarget"));
    let not_json = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let no_name = scim(
        &app,
        Method::POST,
        "/Users",
        &token,
        Some(json!({"schemas": [USER_SCHEMA]})),
    )
    .await;
    assert_scim_error(&no_name, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let bad_active = scim(
        &app,
        Method::POST,
        "/Users",
        &token,
        Some(json!({"userName": "x@contoso.example", "active": "maybe"})),
    )
    .await;
    assert_scim_error(&bad_active, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let (_, after) = scim(&app, Method::GET, "/Users", &token, None).await;
    assert_eq!(after["totalResults"], 1, "nothing half-written");

    // The discovery documents.
    let (status, config) = scim(&app, Method::GET, "/ServiceProviderConfig", &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["patch"]["supported"], true);
    let (_, types) = scim(&app, Method::GET, "/ResourceTypes", &token, None).await;
    assert_eq!(types["totalResults"], 2);
    let (_, schema) = scim(
        &app,
        Method::GET,
        &format!("/Schemas/{USER_SCHEMA}"),
        &token,
        None,
    )
    .await;
    assert_eq!(schema["attributes"][0]["name"], "userName");
    let missing = scim(&app, Method::GET, "/Nothing", &token, None).await;
    assert_scim_error(&missing, StatusCode::NOT_FOUND, None);

    // Paging.
    for n in 0..4 {
        scim(
            &app,
            Method::POST,
            "/Users",
            &token,
            Some(json!({"userName": format!("p{n}@contoso.example")})),
        )
        .await;
    }
    let (_, page) = scim(
        &app,
        Method::GET,
        "/Users?startIndex=2&count=2",
        &token,
        None,
    )
    .await;
    assert_eq!(page["totalResults"], 5);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 2);
    assert_eq!(page["Resources"][0]["userName"], "p0@contoso.example");
    let (_, co) = scim(
        &app,
        Method::GET,
        &filter(r#"userName sw "p" and not (userName co "3")"#),
        &token,
        None,
    )
    .await;
    assert_eq!(co["totalResults"], 3);
}
