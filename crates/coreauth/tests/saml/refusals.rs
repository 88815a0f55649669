//! Each response coreauth must refuse, with its own code and audit event: produced by the real
//! IdP (its settings changed, or the request its page carries forged), or its real response
//! tampered with on the way.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;
use crate::helpers::*;

/// Signs in as Alice with the IdP as it is set, `change` editing the response's XML on the
/// way to the ACS; answers the landing.
async fn post_changed(acme: &Acme, change: impl FnOnce(String) -> String) -> Landing {
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |_| {}).await;
    let changed = posted.with_xml(&change(posted.xml()));
    post_to_acs(&acme.app, &browser, &changed).await
}

/// The landing is refused with `status` and `code`, audited as a failed `sso.login` with it,
/// and no session was opened.
async fn assert_refused(acme: &Acme, landing: &Landing, status: StatusCode, code: &str) -> Value {
    assert_eq!(landing.status, status, "{}", landing.body);
    assert_eq!(landing.body["error"], code, "{}", landing.body);
    let (reason, details) = last_refusal(&acme.app).await;
    assert_eq!(reason, code);
    assert_eq!(details["protocol"], "saml");
    let signed_in = body(
        acme.app
            .get(
                "/admin/audit?event=login.succeeded",
                Some(&acme.app.admin_token),
            )
            .await,
    )
    .await;
    let sso_logins = signed_in["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["method"] == "sso")
        .count();
    assert_eq!(sso_logins, 0, "no SSO session was opened");
    details
}

/// The signed assertion, as the IdP wrote it.
fn assertion_of(xml: &str) -> String {
    let start = xml.find("<saml:Assertion").expect(xml);
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    xml[start..end].to_owned()
}

#[tokio::test]
async fn an_unsigned_response_is_refused() {
    let acme = acme_with_idp().await;
    acme.idp
        .set(&[("signResponse", "false"), ("signAssertion", "false")])
        .await;
    let (_, landing) = sign_in(&acme, &ALICE).await;
    assert_refused(&acme, &landing, StatusCode::UNAUTHORIZED, "saml_unsigned").await;
}

#[tokio::test]
async fn a_response_signed_only_outside_the_assertion_is_refused_when_the_assertion_must_be() {
    let acme = acme_with_idp().await;
    acme.idp
        .set(&[("signResponse", "true"), ("signAssertion", "false")])
        .await;
    let (_, landing) = sign_in(&acme, &ALICE).await;
    assert_refused(&acme, &landing, StatusCode::UNAUTHORIZED, "saml_unsigned").await;
}

#[tokio::test]
async fn a_signature_by_an_unknown_certificate_is_refused() {
    // The connection trusts another certificate than the one the IdP signs with.
    let acme = acme_with(|idp| {
        serde_json::json!({
            "entityId": IDP_ISSUER,
            "ssoUrl": format!("{}/saml/sso", idp.url),
            "certificates": [other_certificate("stranger")],
        })
    })
    .await;
    let (_, landing) = sign_in(&acme, &ALICE).await;
    assert_refused(
        &acme,
        &landing,
        StatusCode::UNAUTHORIZED,
        "saml_untrusted_certificate",
    )
    .await;
}

#[tokio::test]
async fn a_tampered_assertion_is_refused() {
    let acme = acme_with_idp().await;
    let landing = post_changed(&acme, |xml| {
        xml.replacen("alice@acme.example", "mallory@acme.example", 1)
    })
    .await;
    assert_refused(
        &acme,
        &landing,
        StatusCode::UNAUTHORIZED,
        "saml_signature_invalid",
    )
    .await;
}

#[tokio::test]
async fn a_signed_assertion_with_an_injected_unsigned_one_is_refused() {
    let acme = acme_with_idp().await;
    // Signature wrapping: the signed assertion stays, an unsigned copy for Mallory with its
    // own ID goes before it, where a careless reader takes the first assertion.
    let landing = post_changed(&acme, |xml| {
        let signed = assertion_of(&xml);
        let signature_start = signed
            .find("<Signature")
            .or_else(|| signed.find("<ds:Signature"))
            .unwrap();
        let signature_end = signed
            .find("</Signature>")
            .map(|i| i + "</Signature>".len())
            .or_else(|| {
                signed
                    .find("</ds:Signature>")
                    .map(|i| i + "</ds:Signature>".len())
            })
            .unwrap();
        let evil = format!("{}{}", &signed[..signature_start], &signed[signature_end..])
            .replace("alice@acme.example", "mallory@acme.example")
            .replacen("ID=\"", "ID=\"evil", 1);
        xml.replacen(&signed, &format!("{evil}{signed}"), 1)
    })
    .await;
    assert_refused(&acme, &landing, StatusCode::UNAUTHORIZED, "saml_wrapping").await;
}

#[tokio::test]
async fn an_assertion_for_another_audience_is_refused() {
    let acme = acme_with_idp().await;
    acme.idp
        .set(&[("audience", "https://other.example/sp")])
        .await;
    let (_, landing) = sign_in(&acme, &ALICE).await;
    assert_refused(&acme, &landing, StatusCode::UNAUTHORIZED, "saml_audience").await;
}

#[tokio::test]
async fn an_expired_assertion_is_refused() {
    let acme = acme_with_idp().await;
    acme.idp.set(&[("lifetimeInSeconds", "30")]).await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |_| {}).await;
    // 30 s of validity and 120 s of allowed skew are over on coreauth's clock; the sign-on
    // itself (10 minutes) is not.
    acme.app.advance(Duration::from_secs(5 * 60));
    let landing = post_to_acs(&acme.app, &browser, &posted).await;
    assert_refused(&acme, &landing, StatusCode::UNAUTHORIZED, "saml_expired").await;
}

#[tokio::test]
async fn a_replayed_assertion_is_refused_here_and_on_another_instance() {
    let acme = acme_with_idp().await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |_| {}).await;
    let first = post_to_acs(&acme.app, &browser, &posted).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let again = post_to_acs(&acme.app, &browser, &posted).await;
    let details = assert_refused_after_success(&acme, &again, "saml_replayed").await;
    assert_eq!(
        details["assertionId"].as_str().map(str::is_empty),
        Some(false)
    );
    // Another instance on the same database (PostgreSQL under scripts/test) knows it too.
    let other = TestApp::spawn_on(&acme.app.database, |_| {}).await;
    let elsewhere = post_to_acs(&other, &browser, &posted).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        elsewhere.body
    );
    assert_eq!(elsewhere.body["error"], "saml_replayed");
}

/// As `assert_refused`, for a refusal after one successful sign-in.
async fn assert_refused_after_success(acme: &Acme, landing: &Landing, code: &str) -> Value {
    assert_eq!(landing.status, StatusCode::UNAUTHORIZED, "{}", landing.body);
    assert_eq!(landing.body["error"], code);
    let (reason, details) = last_refusal(&acme.app).await;
    assert_eq!(reason, code);
    details
}

#[tokio::test]
async fn a_response_to_a_request_never_made_is_refused() {
    let acme = acme_with_idp().await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    // The IdP answers whatever request id its page carries: a validly signed response to a
    // request coreauth never sent.
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |request| {
        request["id"] = "id-0123456789abcdef0123456789abcdef".into();
    })
    .await;
    let landing = post_to_acs(&acme.app, &browser, &posted).await;
    assert_refused(
        &acme,
        &landing,
        StatusCode::BAD_REQUEST,
        "saml_unknown_request",
    )
    .await;
}

#[tokio::test]
async fn an_idp_initiated_response_is_refused() {
    let acme = acme_with_idp().await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |request| {
        request.as_object_mut().unwrap().remove("id");
    })
    .await;
    assert!(!posted.xml().contains("InResponseTo"), "{}", posted.xml());
    let landing = post_to_acs(&acme.app, &browser, &posted).await;
    assert_refused(&acme, &landing, StatusCode::FORBIDDEN, "saml_idp_initiated").await;
}

#[tokio::test]
async fn a_response_with_a_doctype_is_refused() {
    let acme = acme_with_idp().await;
    let landing = post_changed(&acme, |xml| {
        let body = xml.trim_start_matches(|c| c != '<');
        let body = match body.strip_prefix("<?xml") {
            Some(rest) => &rest[rest.find("?>").unwrap() + 2..],
            None => body,
        };
        format!("<!DOCTYPE r [<!ENTITY who \"alice@acme.example\">]>{body}")
    })
    .await;
    assert_refused(&acme, &landing, StatusCode::BAD_REQUEST, "saml_doctype").await;
}

#[tokio::test]
async fn a_response_addressed_to_another_service_is_refused() {
    let acme = acme_with_idp().await;
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    // The IdP addresses its answer (Destination, Recipient) to the ACS the request names.
    let posted = sign_in_at_idp(&browser, &url, &ALICE, |request| {
        request["acsUrl"] = "https://elsewhere.example/saml/acs".into();
    })
    .await;
    assert!(
        posted
            .xml()
            .contains("Destination=\"https://elsewhere.example/saml/acs\"")
    );
    let landing = post_to_acs(&acme.app, &browser, &posted).await;
    assert_refused(
        &acme,
        &landing,
        StatusCode::UNAUTHORIZED,
        "saml_destination",
    )
    .await;
}

#[tokio::test]
async fn an_assertion_from_another_issuer_is_refused() {
    let acme = acme_with_idp().await;
    acme.idp
        .set(&[("issuer", "urn:coreauth-test:other-idp")])
        .await;
    let (_, landing) = sign_in(&acme, &ALICE).await;
    assert_refused(&acme, &landing, StatusCode::UNAUTHORIZED, "saml_issuer").await;
}
