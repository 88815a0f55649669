//! SCIM groups (Okta's group push, Entra's member patches) and the roles they give, and what a
//! token of one org can reach of another's: nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;
use crate::scim::{
    GROUP_SCHEMA, PATCH_OP, USER_SCHEMA, assert_scim_error, entra_user, filter, percent_encode,
    scim, scim_token,
};

#[tokio::test]
async fn okta_provisions_with_put_and_pushes_groups_that_give_roles() {
    let app = TestApp::spawn().await;
    let org = app
        .create_org_with_domains("Initech", &["initech.example"])
        .await;
    let token = scim_token(&app, org).await;
    let mapped = app
        .send(
            Method::PUT,
            &format!("/admin/orgs/{org}/group-roles"),
            Some(&app.admin_token),
            Some(&json!({"groups": {"Initech Admins": "admin"}})),
        )
        .await;
    assert_eq!(mapped.status(), StatusCode::OK);

    // Okta's documented create.
    let (status, peter) = scim(
        &app,
        Method::POST,
        "/Users",
        &token,
        Some(json!({
            "schemas": [USER_SCHEMA],
            "userName": "peter@initech.example",
            "name": {"givenName": "Peter", "familyName": "Gibbons"},
            "emails": [{"primary": true, "value": "peter@initech.example", "type": "work"}],
            "displayName": "Peter Gibbons",
            "locale": "en-US",
            "externalId": "00u1",
            "groups": [],
            "password": "never-kept-1",
            "active": true,
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{peter}");
    assert!(peter.get("password").is_none());
    let peter_id = peter["id"].as_str().unwrap().to_owned();
    // Milton was made by an admin, with a password: the directory finds him by userName.
    app.create_user("milton@initech.example", org, "member")
        .await;
    let (_, milton) = scim(
        &app,
        Method::GET,
        &filter(r#"userName eq "milton@initech.example""#),
        &token,
        None,
    )
    .await;
    let milton_id = milton["Resources"][0]["id"].as_str().unwrap().to_owned();

    // Okta's profile push: a PUT of the whole user.
    let (status, replaced) = scim(&app, Method::PUT, &format!("/Users/{peter_id}"), &token, Some(json!({
        "schemas": [USER_SCHEMA], "id": peter_id, "userName": "peter@initech.example",
        "name": {"givenName": "Pete", "familyName": "Gibbons"}, "active": true, "locale": "en-GB",
    }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced["name"]["givenName"], "Pete");
    assert_eq!(replaced["locale"], "en-GB");
    assert!(
        replaced.get("displayName").is_none(),
        "a PUT replaces the resource"
    );

    // Okta's group push: create with members, then add and remove members by PATCH.
    let (status, group) = scim(
        &app,
        Method::POST,
        "/Groups",
        &token,
        Some(json!({
            "schemas": [GROUP_SCHEMA], "displayName": "Initech Admins",
            "members": [{"value": peter_id, "display": "peter@initech.example"}],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    let role_of = |email: &'static str| {
        let app = &app;
        async move { app.login_to(email, PASSWORD, org).await.user.role }
    };
    assert_eq!(role_of("milton@initech.example").await, "member");

    let (status, _) = scim(&app, Method::PATCH, &format!("/Groups/{group_id}"), &token, Some(json!({
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": milton_id, "display": "milton"}]}],
    }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(role_of("milton@initech.example").await, "admin");
    let (status, after) = scim(
        &app,
        Method::PATCH,
        &format!("/Groups/{group_id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "remove", "path": format!("members[value eq \"{milton_id}\"]")}],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        after["members"],
        json!([{"value": peter_id, "$ref": peter["meta"]["location"]}])
    );
    assert_eq!(role_of("milton@initech.example").await, "member");

    // Entra's form of the same.
    let (status, after) = scim(
        &app,
        Method::PATCH,
        &format!("/Groups/{group_id}"),
        &token,
        Some(json!({
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "Add", "path": "members", "value": [{"value": milton_id}]},
                {"op": "Remove", "path": "members", "value": [{"value": peter_id}]},
            ],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["members"][0]["value"], milton_id.as_str());
    assert_eq!(role_of("milton@initech.example").await, "admin");

    let (_, user) = scim(
        &app,
        Method::GET,
        &format!("/Users/{milton_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(user["groups"][0]["value"], group_id.as_str());
    let (_, listed) = scim(
        &app,
        Method::GET,
        "/Groups?excludedAttributes=members",
        &token,
        None,
    )
    .await;
    assert_eq!(listed["totalResults"], 1);
    assert!(listed["Resources"][0].get("members").is_none());
    let (_, by_name) = scim(
        &app,
        Method::GET,
        &format!(
            "/Groups?filter={}",
            percent_encode(r#"displayName eq "initech admins""#)
        ),
        &token,
        None,
    )
    .await;
    assert_eq!(by_name["totalResults"], 1);

    let (status, _) = scim(
        &app,
        Method::DELETE,
        &format!("/Groups/{group_id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(role_of("milton@initech.example").await, "member");
}

#[tokio::test]
async fn a_token_reaches_its_own_org_only_and_is_revocable() {
    let app = TestApp::spawn().await;
    let contoso = app
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    let fabrikam = app
        .create_org_with_domains("Fabrikam", &["fabrikam.example"])
        .await;
    let contoso_token = scim_token(&app, contoso).await;
    let fabrikam_token = scim_token(&app, fabrikam).await;
    let (_, alice) = scim(
        &app,
        Method::POST,
        "/Users",
        &contoso_token,
        Some(entra_user("alice@contoso.example", "a")),
    )
    .await;
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    let (_, group) = scim(
        &app,
        Method::POST,
        "/Groups",
        &contoso_token,
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "Staff"})),
    )
    .await;
    let group_id = group["id"].as_str().unwrap().to_owned();

    // Fabrikam's directory sees none of Contoso's users or groups, by id, list or filter.
    for path in [format!("/Users/{alice_id}"), format!("/Groups/{group_id}")] {
        assert_scim_error(
            &scim(&app, Method::GET, &path, &fabrikam_token, None).await,
            StatusCode::NOT_FOUND,
            None,
        );
        assert_scim_error(
            &scim(&app, Method::DELETE, &path, &fabrikam_token, None).await,
            StatusCode::NOT_FOUND,
            None,
        );
    }
    let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_scim_error(
        &scim(
            &app,
            Method::PATCH,
            &format!("/Users/{alice_id}"),
            &fabrikam_token,
            Some(patch),
        )
        .await,
        StatusCode::NOT_FOUND,
        None,
    );
    let (_, listed) = scim(&app, Method::GET, "/Users", &fabrikam_token, None).await;
    assert_eq!(listed["totalResults"], 0);
    let (_, groups) = scim(&app, Method::GET, "/Groups", &fabrikam_token, None).await;
    assert_eq!(groups["totalResults"], 0);
    // Nor can it put Contoso's user in its group, or create users in Contoso's domain.
    let (_, own_group) = scim(
        &app,
        Method::POST,
        "/Groups",
        &fabrikam_token,
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "Mine"})),
    )
    .await;
    let add = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": alice_id}]}]});
    let refused = scim(
        &app,
        Method::PATCH,
        &format!("/Groups/{}", own_group["id"].as_str().unwrap()),
        &fabrikam_token,
        Some(add),
    )
    .await;
    assert_scim_error(&refused, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let squat = scim(
        &app,
        Method::POST,
        "/Users",
        &fabrikam_token,
        Some(entra_user("carol@contoso.example", "c")),
    )
    .await;
    assert_scim_error(&squat, StatusCode::FORBIDDEN, None);

    // An org admin of Fabrikam cannot make or list Contoso's tokens.
    let admin = app
        .create_user("admin@fabrikam.example", fabrikam, "admin")
        .await;
    let _ = admin;
    let fabrikam_admin = app
        .login_to("admin@fabrikam.example", PASSWORD, fabrikam)
        .await
        .token;
    for response in [
        app.post(
            &format!("/admin/orgs/{contoso}/scim/tokens"),
            Some(&fabrikam_admin),
            &json!({"name": "x"}),
        )
        .await,
        app.get(
            &format!("/admin/orgs/{contoso}/scim/tokens"),
            Some(&fabrikam_admin),
        )
        .await,
        app.get(
            &format!("/admin/orgs/{contoso}/group-roles"),
            Some(&fabrikam_admin),
        )
        .await,
    ] {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    // Revoked, a token is refused at once; without one, or with another kind, nothing answers.
    let tokens = body(
        app.get(
            &format!("/admin/orgs/{contoso}/scim/tokens"),
            Some(&app.admin_token),
        )
        .await,
    )
    .await;
    assert!(!tokens.to_string().contains(&contoso_token));
    let token_id = tokens[0]["id"].as_str().unwrap();
    let revoked = app
        .delete(
            &format!("/admin/orgs/{contoso}/scim/tokens/{token_id}"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    for credential in [
        contoso_token.as_str(),
        app.admin_token.as_str(),
        "scim_forged",
    ] {
        let refused = scim(&app, Method::GET, "/Users", credential, None).await;
        assert_scim_error(&refused, StatusCode::UNAUTHORIZED, None);
    }
    let response = app
        .client
        .get(app.url("/scim/v2/ServiceProviderConfig"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
