//! The SAML sign-in figure (`--saml`, with the `saml` feature): how many SAML sign-ins the
//! assertion consumer service finishes per second, beside password logins measured in the same
//! run on the same database (the ratio is the figure; bench/README.md).
//!
//! The IdP is the bench itself, through samael's IdP side: a key and certificate made for the
//! run, and before the measurement one response per sign-in, each answering a request coreauth
//! issued (`GET /user/authenticate/sso/start`), signed over the whole response (xmlsec), for a
//! seeded user whose identity is linked to the connection. Minting happens before the clock
//! starts, so the figure is coreauth's work alone: the shape checks, xmlsec's verification, the
//! request and assertion consumed, the session opened. Every response is used once; any answer
//! but 2xx is an error and fails the run.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::{Crypto, CryptoProvider};
use samael::idp::response_builder::build_response_template;
use samael::idp::{CertificateParams, IdentityProvider, KeyType, Rsa};
use samael::traits::ToXml;
use serde_json::json;

use crate::api::{admin_token, post};
use crate::load::{self, Load, LoadSettings, Workload};
use crate::soak::{Soak, login_capacity};
use crate::{Args, backend_of, commit, login_bodies, machine, now_text, say, seed, small_database};

const IDP_ENTITY_ID: &str = "urn:coreauth-bench:idp";
const CONNECTIONS: usize = 16;
/// Responses minted: each connection of the load uses its own share once, so this bounds the
/// rate measurable over warm-up and window (about 2,400 sign-ins per second).
const RESPONSES: usize = 12_000;

pub async fn saml_run(args: &Args, coreauth: &Path, workdir: &Path) -> anyhow::Result<Soak> {
    let backend = backend_of(args);
    let database = backend.describe().await?;
    say(&format!("database: {database}"));
    let hash = seed::password_hash()?;
    let small = small_database(args, &backend, coreauth, workdir, &hash).await?;
    // The first user, made a platform admin, links the others' identities; it signs in only
    // after the change.
    let admin_user = small.users[0];
    seed::make_platform_admin(&small.url, admin_user).await?;
    let base = format!("http://{}", small.server.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    say("SAML: an IdP key, a connection, the users' identities linked");
    let idp = IdentityProvider::generate_new(KeyType::Rsa(Rsa::Rsa2048))
        .map_err(|e| anyhow::anyhow!("IdP key: {e:?}"))?;
    let certificate = idp
        .create_certificate(&CertificateParams {
            common_name: "coreauth bench IdP",
            issuer_name: "coreauth bench IdP",
            days_until_expiration: 2,
        })
        .map_err(|e| anyhow::anyhow!("IdP certificate: {e:?}"))?;
    let admin = admin_token(&http, &base, &seed::email(admin_user)).await?;
    let connection = post(
        &http,
        &format!("{base}/admin/orgs/{}/sso/connections", seed::ORG_ID),
        &admin,
        &json!({
            "name": "bench",
            "emailDomains": ["bench.example"],
            // The same people log in with their passwords too, for the ratio.
            "allowPassword": true,
            "saml": {
                "entityId": IDP_ENTITY_ID,
                "ssoUrl": "https://idp.bench.invalid/sso",
                "certificates": [STANDARD.encode(certificate.der_data())],
                "wantAssertionsSigned": false,
                "wantResponseSigned": true,
            },
        }),
    )
    .await?;
    let connection_id = connection["id"].as_i64().context("connection id")?;
    let audience = connection["saml"]["spEntityId"]
        .as_str()
        .context("entity id")?;
    let acs_url = connection["saml"]["acsUrl"].as_str().context("ACS URL")?;
    for &user in &small.users {
        post(
            &http,
            &format!("{base}/admin/users/{user}/sso-identities"),
            &admin,
            &json!({"connectionId": connection_id, "subject": seed::email(user)}),
        )
        .await?;
    }

    say(&format!("SAML: {RESPONSES} sign-ins started and answered"));
    let key = idp
        .export_private_key_der()
        .map_err(|e| anyhow::anyhow!("IdP key: {e:?}"))?;
    let mut forms = Vec::with_capacity(RESPONSES + 1);
    for n in 0..=RESPONSES {
        let user = small.users[n % small.users.len()];
        let started = http
            .get(format!(
                "{base}/user/authenticate/sso/start?org={}&connection={connection_id}",
                seed::ORG_ID
            ))
            .send()
            .await?;
        if started.status() != reqwest::StatusCode::SEE_OTHER {
            bail!("the SAML start answered {}", started.status());
        }
        let cookie = started
            .headers()
            .get("set-cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .context("the binding cookie")?
            .to_owned();
        let location =
            url::Url::parse(started.headers()["location"].to_str().context("location")?)?;
        let request_id = location
            .query_pairs()
            .find(|(k, _)| k == "RelayState")
            .map(|(_, v)| v.into_owned())
            .context("RelayState")?;
        let xml = mint(
            &certificate,
            &key,
            &seed::email(user),
            audience,
            acs_url,
            &request_id,
        )?;
        let body = format!(
            "SAMLResponse={}&RelayState={request_id}",
            url_encoded(&STANDARD.encode(xml))
        );
        forms.push((cookie, body));
    }

    // One sign-in by hand first: a response coreauth refuses would make the figure meaningless.
    let (cookie, body) = &forms[0];
    let answer = http
        .post(format!("{base}/user/authenticate/saml/acs"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!("a minted response was refused: {}", answer.text().await?);
    }
    let requests: Vec<Vec<u8>> = forms[1..]
        .iter()
        .map(|(cookie, body)| {
            format!(
                "POST /user/authenticate/saml/acs HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                small.server.addr,
                body.len()
            )
            .into_bytes()
        })
        .collect();

    say("password logins: 16 connections, 10 s");
    let addr = small.server.addr;
    let login = Workload::post_json(addr, "/user/authenticate", &login_bodies(&small.users))?;
    let logins = login_capacity(&small.server, &login, args.generator_threads)?;
    say("SAML sign-ins: 16 connections, 4 s");
    let measured = load::run(
        addr,
        vec![Load {
            workload: Workload::new(requests)?,
            connections: CONNECTIONS,
        }],
        LoadSettings {
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(4),
            threads: args.generator_threads,
        },
    )?;
    small.server.stop()?;
    backend.remove("coreauth_bench_small").await?;
    let saml = measured.into_iter().next().context("a measurement")?;
    let errors = saml.completed - saml.ok;
    let signins = saml.throughput();
    let markdown = format!(
        "## {} — commit `{}` — {database} — SAML sign-ins\n\n{}\n\n\
         | load | connections | per second | p50 ms | p99 ms | errors |\n\
         |---|---:|---:|---:|---:|---|\n\
         | password login (argon2id) | 16 | {logins:.1} | | | |\n\
         | SAML sign-in at the ACS | {CONNECTIONS} | {signins:.1} | {:.2} | {:.2} | {} |\n\n\
         SAML sign-ins per password login: **{:.2}**. Each response signed over the whole \
         response (RSA-2048, SHA-256), for one of {} users linked to the connection, minted \
         before the measurement.\n",
        now_text()?,
        commit(),
        machine(std::thread::available_parallelism().map_or(1, usize::from)),
        saml.p50_ms(),
        saml.p99_ms(),
        saml.errors_text(),
        signins / logins,
        small.users.len(),
    );
    Ok(Soak { markdown, errors })
}

/// A signed response to `request_id` for `email`, valid for five minutes.
fn mint(
    certificate: &samael::crypto::CertificateDer,
    key_der: &[u8],
    email: &str,
    audience: &str,
    acs_url: &str,
    request_id: &str,
) -> anyhow::Result<String> {
    let mut response = build_response_template(
        certificate,
        email,
        audience,
        IDP_ENTITY_ID,
        acs_url,
        request_id,
        &[],
    );
    // samael's template leaves the bearer confirmation without an end, which its own SP
    // side (rightly) refuses.
    let until = chrono::Utc::now() + chrono::Duration::minutes(5);
    if let Some(assertion) = response.assertion.as_mut() {
        for confirmation in assertion
            .subject
            .iter_mut()
            .flat_map(|s| s.subject_confirmations.iter_mut().flatten())
        {
            if let Some(data) = confirmation.subject_confirmation_data.as_mut() {
                data.not_on_or_after = Some(until);
            }
        }
    }
    // And it digests with SHA-1, which coreauth refuses (SHA-2 only).
    for reference in response
        .signature
        .iter_mut()
        .flat_map(|s| s.signed_info.reference.iter_mut())
    {
        reference.digest_method.algorithm = samael::signature::DigestAlgorithm::Sha256;
    }
    let unsigned = response
        .to_string()
        .map_err(|e| anyhow::anyhow!("response: {e}"))?;
    Crypto::sign_xml(unsigned.as_str(), key_der).map_err(|e| anyhow::anyhow!("signing: {e:?}"))
}

fn url_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
