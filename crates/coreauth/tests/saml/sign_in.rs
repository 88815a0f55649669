//! What a user and an admin see of a SAML connection that works.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;
use crate::helpers::*;

#[tokio::test]
async fn an_sp_initiated_sign_in_lands_in_a_session_with_the_mapped_role() {
    let acme = acme_with_idp().await;
    let app = &acme.app;
    let strategy = body(
        app.post(
            "/user/authenticate/strategy",
            None,
            &json!({"email": "alice@acme.example"}),
        )
        .await,
    )
    .await;
    assert_eq!(strategy["strategy"], "sso");
    assert_eq!(strategy["provider"], "saml");
    assert_eq!(strategy["connectionId"], acme.connection["id"]);
    assert_eq!(acme.connection["protocol"], "saml");
    assert_eq!(acme.connection["issuer"], IDP_ISSUER);
    assert_eq!(
        acme.connection["saml"]["certificates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (posted, landing) = sign_in(&acme, &ALICE).await;
    assert!(
        posted.xml().contains("InResponseTo=\"id-"),
        "answers coreauth's request"
    );
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.body["user"]["email"], "alice@acme.example");
    assert_eq!(
        landing.body["user"]["role"], "admin",
        "the admins group maps to admin"
    );
    let token = landing.body["token"].as_str().unwrap();
    let me = app.me(token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me = body(me).await;
    assert_eq!(me["email"], "alice@acme.example");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["first"], "alice-first");
    assert_eq!(me["last"], "alice-last");

    let bob = Person {
        email: "bob@acme.example",
        groups: "staff",
    };
    let (_, landing) = sign_in(&acme, &bob).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(
        landing.body["user"]["role"], "member",
        "no mapped group: the default"
    );

    let audit = body(
        app.get("/admin/audit?event=login.succeeded", Some(&app.admin_token))
            .await,
    )
    .await;
    assert_eq!(audit["events"][0]["details"]["method"], "sso");
    assert_eq!(audit["events"][0]["client"], "portal");
}

#[tokio::test]
async fn the_sp_metadata_names_the_entity_id_and_the_acs() {
    let acme = acme_with_idp().await;
    let id = acme.connection["id"].as_i64().unwrap();
    let response = acme
        .app
        .get(&format!("/user/authenticate/saml/{id}/metadata"), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/samlmetadata+xml"
    );
    let xml = response.text().await.unwrap();
    let entity_id = acme.connection["saml"]["spEntityId"].as_str().unwrap();
    assert_eq!(
        entity_id,
        acme.app
            .url(&format!("/user/authenticate/saml/{id}/metadata"))
    );
    assert!(xml.contains(&format!("entityID=\"{entity_id}\"")), "{xml}");
    assert!(
        xml.contains(&format!(
            "Location=\"{}\"",
            acme.app.url("/user/authenticate/saml/acs")
        )),
        "{xml}"
    );
    assert!(xml.contains("WantAssertionsSigned=\"true\""), "{xml}");
    // An OpenID connection, or none, has no SAML metadata.
    let missing = acme
        .app
        .get("/user/authenticate/saml/999999/metadata", None)
        .await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn return_to_gets_the_token_in_the_fragment() {
    let acme = acme_with_idp().await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, Some(RETURN_TO)).await;
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |_| {}).await;
    let landing = post_to_acs(&acme.app, &browser, &posted).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER);
    let location = landing.location.unwrap();
    let token = location
        .strip_prefix(&format!("{RETURN_TO}#token="))
        .expect(&location)
        .split('&')
        .next()
        .unwrap();
    assert_eq!(acme.app.me(token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn during_a_key_rollover_both_certificates_are_trusted() {
    let acme = acme_with(|idp| {
        json!({
            "entityId": IDP_ISSUER,
            "ssoUrl": format!("{}/saml/sso", idp.url),
            "certificates": [other_certificate("next"), idp.keys.pem],
        })
    })
    .await;
    assert_eq!(
        acme.connection["saml"]["certificates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, landing) = sign_in(&acme, &ALICE).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
}

#[tokio::test]
async fn a_browser_without_its_cookie_is_given_the_form_again_from_coreauth() {
    let acme = acme_with_idp().await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |_| {}).await;
    // The IdP's cross-site POST carries no SameSite=Lax cookie: the answer is a page that
    // posts the same form from coreauth's origin.
    let stranger = reqwest::Client::new();
    let page = stranger
        .post(acme.app.url("/user/authenticate/saml/acs"))
        .form(&[
            ("SAMLResponse", posted.saml_response.as_str()),
            ("RelayState", posted.relay_state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"action="/user/authenticate/saml/acs""#),
        "{html}"
    );
    assert!(html.contains(r#"name="bound" value="1""#), "{html}");
    assert_eq!(field(&html, "SAMLResponse"), posted.saml_response);
    // Posted again without the cookie, it is another browser's sign-on.
    let again = stranger
        .post(acme.app.url("/user/authenticate/saml/acs"))
        .form(&[
            ("SAMLResponse", posted.saml_response.as_str()),
            ("RelayState", posted.relay_state.as_str()),
            ("bound", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_error(again, StatusCode::BAD_REQUEST, "sso_browser_mismatch").await;
    // And the sign-on is used up: the right browser cannot finish it either.
    let landing = post_to_acs(&acme.app, &browser, &posted).await;
    assert_eq!(landing.status, StatusCode::BAD_REQUEST, "{}", landing.body);
    assert_eq!(landing.body["error"], "saml_unknown_request");
}

#[tokio::test]
async fn connections_that_could_verify_nothing_are_refused() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let idp = start_idp(&app).await;
    let sso_url = format!("{}/saml/sso", idp.url);
    let metadata = reqwest::get(format!("{}/metadata", idp.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cases = [
        json!({"entityId": IDP_ISSUER, "ssoUrl": sso_url}),
        json!({"entityId": IDP_ISSUER, "ssoUrl": sso_url, "certificates": []}),
        json!({"entityId": IDP_ISSUER, "ssoUrl": sso_url, "certificates": ["bm90IGEgY2VydA=="]}),
        json!({"entityId": IDP_ISSUER, "ssoUrl": "ftp://idp/", "certificates": [idp.keys.pem]}),
        json!({"ssoUrl": sso_url, "certificates": [idp.keys.pem]}),
        json!({"metadataXml": format!("<!DOCTYPE x [<!ENTITY e \"e\">]>{metadata}")}),
        json!({"metadataXml": metadata, "metadataUrl": format!("{}/metadata", idp.url)}),
        json!({"metadataXml": metadata, "clockSkewSeconds": 3600}),
    ];
    for saml in cases {
        let response = app
            .post(
                &format!("/admin/orgs/{org}/sso/connections"),
                Some(&app.admin_token),
                &json!({"name": "adfs", "emailDomains": ["acme.example"], "saml": saml}),
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // OpenID fields beside SAML ones are a mistake, not a choice.
    let response = app
        .post(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(&app.admin_token),
            &json!({"name": "adfs", "emailDomains": ["acme.example"], "clientId": "x",
                "saml": {"metadataXml": metadata}}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Pasted metadata works.
    let response = app
        .post(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(&app.admin_token),
            &json!({"name": "adfs", "emailDomains": ["acme.example"],
                "saml": {"metadataXml": metadata}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = body(response).await;
    assert_eq!(created["saml"]["ssoUrl"], sso_url);
}

#[tokio::test]
async fn another_orgs_admin_cannot_add_or_read_saml_connections() {
    let acme = acme_with_idp().await;
    let app = &acme.app;
    let beta = app.create_org("Beta").await;
    app.create_user("boss@beta.example", beta, "admin").await;
    let beta_admin = app.login_ok("boss@beta.example", PASSWORD).await.token;
    let response = app
        .post(
            &format!("/admin/orgs/{}/sso/connections", acme.org),
            Some(&beta_admin),
            &json!({"name": "evil", "emailDomains": ["acme.example"],
                "saml": {"metadataUrl": format!("{}/metadata", acme.idp.url)}}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let id = acme.connection["id"].as_i64().unwrap();
    let response = app
        .get(
            &format!("/admin/orgs/{}/sso/connections/{id}", acme.org),
            Some(&beta_admin),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

/// Has the IdP encrypt its assertions to the connection's key (from its SP certificate).
async fn encrypt_to(acme: &Acme, connection: &serde_json::Value) {
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        connection["saml"]["spCertificate"].as_str().unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let der_path = dir.path().join("sp.der");
    std::fs::write(&der_path, der).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(&der_path)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let cert = openssl(&["x509", "-inform", "DER"]);
    let public_key = openssl(&["x509", "-inform", "DER", "-pubkey", "-noout"]);
    acme.idp
        .set(&[
            ("encryptAssertion", "true"),
            ("encryptionCert", &cert),
            ("encryptionPublicKey", &public_key),
        ])
        .await;
}

#[tokio::test]
async fn an_encrypted_assertion_is_decrypted_and_signs_in() {
    let acme = acme_with_idp().await;
    encrypt_to(&acme, &acme.connection).await;
    let (posted, landing) = sign_in(&acme, &ALICE).await;
    let xml = posted.xml();
    assert!(xml.contains("EncryptedAssertion"), "{xml}");
    assert!(
        !xml.contains("alice@acme.example"),
        "nothing of Alice in the clear"
    );
    assert!(
        xml.contains("aes256-cbc"),
        "the IdP's AES-256, as ADFS and Entra use"
    );
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    assert_eq!(landing.body["user"]["email"], "alice@acme.example");
    assert_eq!(landing.body["user"]["role"], "admin");

    // The SP metadata offers the key; a change of the connection keeps it.
    let id = acme.connection["id"].as_i64().unwrap();
    let metadata = acme
        .app
        .get(&format!("/user/authenticate/saml/{id}/metadata"), None)
        .await
        .text()
        .await
        .unwrap();
    let certificate = acme.connection["saml"]["spCertificate"].as_str().unwrap();
    assert!(metadata.contains("use=\"encryption\""), "{metadata}");
    assert!(metadata.contains(certificate), "{metadata}");
    let changed = acme
        .app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{}/sso/connections/{id}", acme.org),
            Some(&acme.app.admin_token),
            Some(
                &json!({"name": "adfs", "emailDomains": ["acme.example"], "allowJit": true,
                "claims": {"roleMapping": {"admins": "admin"}},
                "saml": {"metadataUrl": format!("{}/metadata", acme.idp.url),
                    "wantAssertionsSigned": false}}),
            ),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let changed = body(changed).await;
    assert_eq!(changed["saml"]["spCertificate"], certificate);

    // Only the response signed, over the ciphertext: enough once it verifies, when the
    // connection does not require a signed assertion.
    acme.idp
        .set(&[("signResponse", "true"), ("signAssertion", "false")])
        .await;
    let (_, landing) = sign_in(&acme, &ALICE).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
}

#[tokio::test]
async fn a_changed_ciphertext_is_refused_before_it_is_decrypted() {
    let acme = acme_with_idp().await;
    encrypt_to(&acme, &acme.connection).await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |_| {}).await;
    let xml = posted.xml();
    // One base64 character of the content's ciphertext changed.
    let data = xml.rfind("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 40;
    let original = &xml[data..data + 1];
    let replacement = if original == "A" { "B" } else { "A" };
    let changed = format!("{}{replacement}{}", &xml[..data], &xml[data + 1..]);
    let landing = post_to_acs(&acme.app, &browser, &posted.with_xml(&changed)).await;
    assert_eq!(landing.status, StatusCode::UNAUTHORIZED, "{}", landing.body);
    assert_eq!(landing.body["error"], "saml_signature_invalid");
}

#[tokio::test]
async fn an_idp_initiated_sign_in_is_taken_when_the_connection_allows_it() {
    let acme = acme_with(
        |idp| json!({"metadataUrl": format!("{}/metadata", idp.url), "allowIdpInitiated": true}),
    )
    .await;
    assert_eq!(acme.connection["saml"]["allowIdpInitiated"], true);
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    // The IdP's own start page: no request, and where to go as RelayState.
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |request| {
        let request = request.as_object_mut().unwrap();
        request.remove("id");
        request.insert("relayState".into(), RETURN_TO.into());
    })
    .await;
    assert!(!posted.xml().contains("InResponseTo"));
    assert_eq!(posted.relay_state, RETURN_TO);
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let landing = post_to_acs(&acme.app, &stranger, &posted).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    let location = landing.location.unwrap();
    let token = location
        .strip_prefix(&format!("{RETURN_TO}#token="))
        .expect(&location)
        .split('&')
        .next()
        .unwrap();
    let me = body(acme.app.me(token).await).await;
    assert_eq!(me["email"], "alice@acme.example");
    // Without a request to consume, the replay cache is what refuses it a second time.
    let again = post_to_acs(&acme.app, &stranger, &posted).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
    assert_eq!(again.body["error"], "saml_replayed");
}
