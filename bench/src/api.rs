//! The few admin calls the SAML and SCIM figures make to set their server up, before the clock.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::seed;

/// A session token of the seeded user `email` (the bench's shared password).
pub async fn admin_token(
    http: &reqwest::Client,
    base: &str,
    email: &str,
) -> anyhow::Result<String> {
    let answer: Value = http
        .post(format!("{base}/user/authenticate"))
        .json(&json!({"email": email, "password": seed::PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["token"].as_str().context("admin token")?.to_owned())
}

/// `POST url` with `body` as `token`; the answer's JSON, or the failure with its body.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = http.post(url).bearer_auth(token).json(body).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}
