//! The IdP process, its certificates, and a browser that signs in through it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::*;

pub const IDP_ISSUER: &str = "urn:coreauth-test:idp";
pub const RETURN_TO: &str = "https://app.acme.example/after-login";

pub fn idp_dir() -> String {
    std::env::var("COREAUTH_TEST_SAML_IDP_DIR").expect(
        "COREAUTH_TEST_SAML_IDP_DIR must name the directory with saml-idp's node_modules \
         (scripts/test sets it up)",
    )
}

/// An RSA key pair and its self-signed certificate, made by the `openssl` command.
pub struct KeyPair {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// The certificate, PEM.
    pub pem: String,
}

pub fn key_pair(dir: &Path, name: &str) -> KeyPair {
    let key = dir.join(format!("{name}-key.pem"));
    let cert = dir.join(format!("{name}-cert.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(made.success(), "openssl made a certificate");
    let pem = std::fs::read_to_string(&cert).unwrap();
    KeyPair { key, cert, pem }
}

/// A running saml-idp. Its user and settings are global to the process: one per test.
pub struct Idp {
    /// Killed when dropped.
    _child: Child,
    pub url: String,
    pub keys: KeyPair,
    _dir: tempfile::TempDir,
}

pub async fn start_idp(app: &TestApp) -> Idp {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_pair(dir.path(), "idp");
    let port = free_port();
    let child = Command::new("node")
        .arg("node_modules/saml-idp/bin/run.js")
        .current_dir(idp_dir())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--cert")
        .arg(&keys.cert)
        .arg("--key")
        .arg(&keys.key)
        .args(["--issuer", IDP_ISSUER])
        .args(["--acsUrl", &app.url("/user/authenticate/saml/acs")])
        // Set to the connection's entity id once the connection exists (`Idp::set`).
        .args(["--audience", "urn:coreauth-test:unset"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs saml-idp");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(r) = client.get(format!("{url}/metadata")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "saml-idp answers on {url} within 30 s");
    Idp {
        _child: child,
        url,
        keys,
        _dir: dir,
    }
}

impl Idp {
    /// Changes the IdP's live settings (`signResponse`, `audience`, `lifetimeInSeconds`, …).
    pub async fn set(&self, settings: &[(&str, &str)]) {
        let response = reqwest::Client::new()
            .post(format!("{}/settings", self.url))
            .form(settings)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success() || response.status().is_redirection());
    }
}

/// A SAML connection of `org` reading the IdP's metadata from its URL, with the `admins`
/// group mapped to admin and accounts made on first sign-in; answers the connection.
pub async fn add_saml_connection(app: &TestApp, org: i64, saml: Value) -> Value {
    let response = app
        .post(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(&app.admin_token),
            &json!({
                "name": "adfs",
                "emailDomains": ["acme.example"],
                "allowJit": true,
                "redirectAllowList": [RETURN_TO],
                "claims": {"roleMapping": {"admins": "admin"}},
                "saml": saml,
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body(response).await
}

/// An app with org Acme (`acme.example`) signing in through a fresh IdP.
pub struct Acme {
    pub app: TestApp,
    pub org: i64,
    pub idp: Idp,
    pub connection: Value,
}

pub async fn acme_with_idp() -> Acme {
    acme_with(|idp| json!({"metadataUrl": format!("{}/metadata", idp.url)})).await
}

/// As `acme_with_idp`, the connection's `saml` settings made by `saml` from the IdP; the IdP
/// is told the connection's entity id as its audience.
pub async fn acme_with(saml: impl FnOnce(&Idp) -> Value) -> Acme {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let idp = start_idp(&app).await;
    let connection = add_saml_connection(&app, org, saml(&idp)).await;
    let audience = connection["saml"]["spEntityId"]
        .as_str()
        .unwrap()
        .to_owned();
    idp.set(&[("audience", &audience)]).await;
    Acme {
        app,
        org,
        idp,
        connection,
    }
}

/// The PEM of a new certificate the IdP does not sign with.
pub fn other_certificate(name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    key_pair(dir.path(), name).pem
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Who signs in at the IdP.
pub struct Person<'a> {
    pub email: &'a str,
    pub groups: &'a str,
}

pub const ALICE: Person<'static> = Person {
    email: "alice@acme.example",
    groups: "admins,staff",
};

/// The form the IdP's page posts to coreauth's ACS.
#[derive(Debug, Clone)]
pub struct Posted {
    pub saml_response: String,
    pub relay_state: String,
}

impl Posted {
    pub fn xml(&self) -> String {
        String::from_utf8(STANDARD.decode(&self.saml_response).unwrap()).unwrap()
    }

    pub fn with_xml(&self, xml: &str) -> Self {
        Self {
            saml_response: STANDARD.encode(xml),
            relay_state: self.relay_state.clone(),
        }
    }
}

/// The value of the form field `name` in `page`.
pub fn field(page: &str, name: &str) -> String {
    let after = page
        .split(&format!("name=\"{name}\""))
        .nth(1)
        .or_else(|| page.split(&format!("name='{name}'")).nth(1))
        .unwrap_or_else(|| panic!("no field {name} in {page}"));
    let value = after.split("value=").nth(1).unwrap();
    let quote = value.chars().next().unwrap();
    let value = value[1..].split(quote).next().unwrap();
    value
        .replace("&#x3D;", "=")
        .replace("&#x2F;", "/")
        .replace("&#x2B;", "+")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Starts a sign-on at coreauth (`GET /user/authenticate/sso/start`): the IdP URL it sends
/// the browser to.
pub async fn start(
    app: &TestApp,
    browser: &reqwest::Client,
    org: i64,
    return_to: Option<&str>,
) -> String {
    let mut url = app.url(&format!(
        "/user/authenticate/sso/start?org={org}&client=portal"
    ));
    if let Some(target) = return_to {
        url.push_str(&format!("&returnTo={target}"));
    }
    let response = browser.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("SAMLRequest="), "{location}");
    location
}

/// Signs in at the IdP as `person` from its redirect `url`, `tamper` changing the request
/// the IdP's page carries (the IdP trusts it as sent); answers what its page would post.
pub async fn sign_in_at_idp(
    browser: &reqwest::Client,
    url: &str,
    person: &Person<'_>,
    tamper: impl FnOnce(&mut Value),
) -> Posted {
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page_url = page.url().clone();
    let page = page.text().await.unwrap();
    let mut request: Value =
        serde_json::from_slice(&STANDARD.decode(field(&page, "_authnRequest")).unwrap()).unwrap();
    tamper(&mut request);
    let local = person.email.split('@').next().unwrap();
    let answer = browser
        .post(page_url.join("/signin").unwrap())
        .form(&[
            ("_authnRequest", STANDARD.encode(request.to_string())),
            ("userName", person.email.to_owned()),
            ("email", person.email.to_owned()),
            ("firstName", format!("{local}-first")),
            ("lastName", format!("{local}-last")),
            ("groups", person.groups.to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let page = answer.text().await.unwrap();
    Posted {
        saml_response: field(&page, "SAMLResponse"),
        relay_state: field(&page, "RelayState"),
    }
}

/// What the browser gets at the ACS.
pub struct Landing {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: Value,
}

pub async fn post_to_acs(app: &TestApp, browser: &reqwest::Client, posted: &Posted) -> Landing {
    let form = [
        ("SAMLResponse", posted.saml_response.as_str()),
        ("RelayState", posted.relay_state.as_str()),
    ];
    let mut response = browser
        .post(app.url("/user/authenticate/saml/acs"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let is_page = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.to_str().unwrap().starts_with("text/html"));
    if is_page {
        // coreauth's page that posts the form again from its own origin: as a browser runs it.
        let page = response.text().await.unwrap();
        assert!(page.contains("saml-repost"), "{page}");
        response = browser
            .post(app.url("/user/authenticate/saml/acs"))
            .form(&[
                ("SAMLResponse", field(&page, "SAMLResponse")),
                ("RelayState", field(&page, "RelayState")),
                ("bound", field(&page, "bound")),
            ])
            .send()
            .await
            .unwrap();
    }
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    Landing {
        status,
        location,
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// A whole sign-on as `person`: start, the IdP, the ACS.
pub async fn sign_in(acme: &Acme, person: &Person<'_>) -> (Posted, Landing) {
    let browser = browser();
    let url = start(&acme.app, &browser, acme.org, None).await;
    let posted = sign_in_at_idp(&browser, &url, person, |_| {}).await;
    let landing = post_to_acs(&acme.app, &browser, &posted).await;
    (posted, landing)
}

/// The newest `sso.login` refusal of the org: its reason, and its details.
pub async fn last_refusal(app: &TestApp) -> (String, Value) {
    let audit = body(
        app.get("/admin/audit?event=sso.login", Some(&app.admin_token))
            .await,
    )
    .await;
    let event = &audit["events"][0];
    (
        event["reason"].as_str().unwrap_or_default().to_owned(),
        event["details"].clone(),
    )
}
