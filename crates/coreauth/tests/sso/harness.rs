//! The provider process and a browser that signs in through it.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::*;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const CLIENT_ID: &str = "coreauth-test";
pub const CLIENT_SECRET: &str = "coreauth-test-client-secret";
pub const RETURN_TO: &str = "https://app.acme.example/after-login";

/// A running oidc-provider.
pub struct Provider {
    pub child: Child,
    pub issuer: String,
    pub port: u16,
}

pub fn provider_dir() -> String {
    std::env::var("COREAUTH_TEST_OIDC_DIR").expect(
        "COREAUTH_TEST_OIDC_DIR must name the directory with provider.mjs and its node_modules \
         (scripts/test sets it up)",
    )
}

pub async fn start_provider(app: &TestApp, port: u16, key_id: &str) -> Provider {
    // Once in CI a provider had not printed "ready" after 30 s on a loaded machine: a second
    // process on the same port gets another chance before the test fails.
    for attempt in 1..=2 {
        if let Some(provider) = try_start_provider(app, port, key_id).await {
            return provider;
        }
        eprintln!("the provider on port {port} was not ready in 30 s (attempt {attempt})");
    }
    panic!("the provider did not start");
}

/// A provider process, once it says it is ready within 30 s; `None` (and no process) if not.
async fn try_start_provider(app: &TestApp, port: u16, key_id: &str) -> Option<Provider> {
    let dir = provider_dir();
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env(
            "REDIRECT_URI",
            format!("{}/user/authenticate/sso/callback", app.address),
        )
        .env("KEY_ID", key_id)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs provider.mjs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(issuer) = line.strip_prefix("ready ") {
                return issuer.to_owned();
            }
        }
        panic!("the provider exited before it was ready");
    })
    .await;
    let Ok(issuer) = ready else {
        let _ = child.kill().await;
        let _ = child.wait().await;
        return None;
    };
    // Keep reading what it prints: a closed pipe would make node fail on its next notice.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Provider {
        child,
        issuer,
        port,
    })
}

impl Provider {
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

pub async fn configure(app: &TestApp, org: i64, issuer: &str, allow_jit: bool) {
    let config = json!({"issuer": issuer, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
        "emailDomains": ["acme.example"], "allowJit": allow_jit, "redirectAllowList": [RETURN_TO]});
    let response = app
        .send(
            reqwest::Method::PUT,
            &format!("/admin/orgs/{org}/sso"),
            Some(&app.admin_token),
            Some(&config),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// An app with org Acme (`acme.example`) signing in through a fresh provider, with or without
/// just-in-time accounts.
pub async fn acme_with_provider(allow_jit: bool) -> (TestApp, i64, Provider) {
    let app = TestApp::spawn().await;
    let org = app.create_org("Acme").await;
    let provider = start_provider(&app, free_port(), "k1").await;
    configure(&app, org, &provider.issuer, allow_jit).await;
    (app, org, provider)
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// What the browser ends with at coreauth's callback.
pub struct Landing {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: Value,
    pub callback_url: String,
}

/// The `action` of the first form in a page, and the value of its hidden `prompt`.
pub fn form_of(page: &str) -> (String, String) {
    let action = page
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let prompt = page
        .split("name=\"prompt\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    (action.replace("&amp;", "&"), prompt.to_owned())
}

/// Follows redirects from `url`, signing in at the provider as `login` (and consenting, or
/// cancelling when `deny`), until the browser is sent to coreauth's callback, and lands there.
pub async fn sign_in(
    app: &TestApp,
    browser: &reqwest::Client,
    url: &str,
    login: &str,
    deny: bool,
) -> Landing {
    let callback = reach_callback(app, browser, url, login, deny).await;
    land(browser, &callback).await
}

/// What `browser` gets at coreauth's callback URL.
pub async fn land(browser: &reqwest::Client, callback_url: &str) -> Landing {
    let response = browser.get(callback_url).send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Landing {
        status,
        location,
        body,
        callback_url: callback_url.to_owned(),
    }
}

/// The sign-in at the provider, up to (not into) coreauth's callback: its URL.
pub async fn reach_callback(
    app: &TestApp,
    browser: &reqwest::Client,
    url: &str,
    login: &str,
    deny: bool,
) -> String {
    let callback_prefix = format!("{}/user/authenticate/sso/callback", app.address);
    let mut next = url.to_owned();
    for _ in 0..20 {
        if next.starts_with(&callback_prefix) {
            return next;
        }
        let response = browser.get(&next).send().await.unwrap();
        let base = response.url().clone();
        if let Some(location) = response.headers().get("location") {
            next = base.join(location.to_str().unwrap()).unwrap().to_string();
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "at {next}");
        let page = response.text().await.unwrap();
        let (action, prompt) = form_of(&page);
        if deny {
            let abort = page
                .split("href=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap();
            next = base.join(abort).unwrap().to_string();
            continue;
        }
        let form: Vec<(&str, &str)> = match prompt.as_str() {
            "login" => vec![
                ("prompt", "login"),
                ("login", login),
                ("password", "any password"),
            ],
            _ => vec![("prompt", prompt.as_str())],
        };
        let posted = browser
            .post(base.join(&action).unwrap())
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = posted.headers()["location"].to_str().unwrap().to_owned();
        next = base.join(&location).unwrap().to_string();
    }
    panic!("the sign-in did not come back to coreauth");
}

pub async fn start_url(
    app: &TestApp,
    browser: &reqwest::Client,
    org: i64,
    return_to: Option<&str>,
) -> String {
    let mut url = format!(
        "{}/user/authenticate/sso/start?org={org}&client=portal",
        app.address
    );
    if let Some(target) = return_to {
        url.push_str(&format!("&returnTo={}", url_encode(target)));
    }
    let response = browser.get(&url).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "start redirects to the provider"
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("code_challenge_method=S256"),
        "PKCE S256: {location}"
    );
    assert!(
        location.contains("state=") && location.contains("nonce="),
        "{location}"
    );
    location
}

pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn link_url(app: &TestApp, token: &str, org: i64, return_to: Option<&str>) -> String {
    let response = app
        .post(
            "/user/authenticate/sso/link",
            Some(token),
            &json!({"orgId": org, "returnTo": return_to}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let url = body(response).await["redirectUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    url
}

/// The token in a landing's `returnTo#token=…` fragment.
pub fn fragment_token(landing: &Landing) -> String {
    let location = landing.location.clone().unwrap();
    let fragment = location
        .strip_prefix(&format!("{RETURN_TO}#token="))
        .expect(&location);
    fragment.split('&').next().unwrap().to_owned()
}

/// Adds a connection to `org` as `token`'s holder; answers the response.
pub async fn add_connection(app: &TestApp, token: &str, org: i64, connection: &Value) -> Value {
    let response = app
        .post(
            &format!("/admin/orgs/{org}/sso/connections"),
            Some(token),
            connection,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body(response).await
}
