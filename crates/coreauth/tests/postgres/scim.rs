//! SCIM deprovisioning across instances: a directory deactivates a member through one
//! instance, and another instance that holds the member's session and key in memory refuses
//! both within a second.

use super::*;

/// `PATCH /scim/v2/Users/{id}` with one operation, through `app`.
async fn scim_patch(app: &TestApp, token: &str, id: &str, operation: serde_json::Value) {
    let response = app
        .client
        .patch(app.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(token)
        .header("content-type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [operation],
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_deprovisioned_on_one_instance_is_refused_on_another_within_a_second() {
    let (a, b, _c) = three_instances().await;
    let org = a
        .create_org_with_domains("Contoso", &["contoso.example"])
        .await;
    a.create_user("bob@contoso.example", org, "member").await;
    let session = b.login_to("bob@contoso.example", PASSWORD, org).await.token;
    let (_, key) = b.add_key(&session, "bob's script").await;
    // Both are in B's memory now.
    for _ in 0..2 {
        assert_eq!(b.me(&session).await.status(), StatusCode::OK);
        assert_eq!(
            b.get("/authheader/list", Some(&key)).await.status(),
            StatusCode::OK
        );
    }
    let created = a
        .post(
            &format!("/admin/orgs/{org}/scim/tokens"),
            Some(&a.admin_token),
            &json!({"name": "Entra ID"}),
        )
        .await;
    let token = body(created).await["token"].as_str().unwrap().to_owned();
    let found = a
        .client
        .get(a.url("/scim/v2/Users"))
        .query(&[("filter", r#"userName eq "bob@contoso.example""#)])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let id = body(found).await["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    scim_patch(
        &a,
        &token,
        &id,
        json!({"op": "Replace", "path": "active", "value": "False"}),
    )
    .await;
    let since = Instant::now();
    refused_within(&b, &session, since, ACROSS_INSTANCES).await;
    while b.get("/authheader/list", Some(&key)).await.status() == StatusCode::OK {
        assert!(
            since.elapsed() < ACROSS_INSTANCES,
            "the deprovisioned member's key outlived a second on another instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("refused on the other instance after {:?}", since.elapsed());
}
