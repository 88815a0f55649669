//! The SCIM provisioning figure (`--scim`): how many users a directory provisions per second
//! through `/scim/v2/Users` the way Entra ID does it (a lookup by `userName`, then the create),
//! 10,000 of them over 16 connections, and how many it then deactivates per second (`PATCH`
//! of `active`); beside password logins measured in the same run on the same database, whose
//! ratio is the figure (bench/README.md). Any answer but the expected one fails the run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use tokio::sync::Mutex;

use crate::api::{admin_token, post};
use crate::load::Workload;
use crate::soak::{Soak, login_capacity};
use crate::{Args, backend_of, commit, login_bodies, machine, now_text, say, seed, small_database};

const USERS: usize = 10_000;
const CONNECTIONS: usize = 16;
const DOMAIN: &str = "directory.bench.example";

pub async fn scim_run(args: &Args, coreauth: &Path, workdir: &Path) -> anyhow::Result<Soak> {
    let backend = backend_of(args);
    let database = backend.describe().await?;
    say(&format!("database: {database}"));
    let hash = seed::password_hash()?;
    let small = small_database(args, &backend, coreauth, workdir, &hash).await?;
    let admin_user = small.users[0];
    seed::make_platform_admin(&small.url, admin_user).await?;
    let base = format!("http://{}", small.server.addr);
    let http = reqwest::Client::new();
    let admin = admin_token(&http, &base, &seed::email(admin_user)).await?;
    let org = post(
        &http,
        &format!("{base}/admin/orgs"),
        &admin,
        &json!({"name": "Directory", "emailDomains": [DOMAIN]}),
    )
    .await?["id"]
        .as_i64()
        .context("org id")?;
    let token = post(
        &http,
        &format!("{base}/admin/orgs/{org}/scim/tokens"),
        &admin,
        &json!({"name": "bench"}),
    )
    .await?["token"]
        .as_str()
        .context("SCIM token")?
        .to_owned();

    say("password logins: 16 connections, 10 s");
    let login = Workload::post_json(
        small.server.addr,
        "/user/authenticate",
        &login_bodies(&small.users),
    )?;
    let logins = login_capacity(&small.server, &login, args.generator_threads)?;

    say(&format!(
        "SCIM: {USERS} users looked up and created, {CONNECTIONS} connections"
    ));
    let scim = Directory {
        http: http.clone(),
        users: format!("{base}/scim/v2/Users"),
        token,
        errors: AtomicU64::new(0),
    };
    let scim = Arc::new(scim);
    let ids = Arc::new(Mutex::new(Vec::with_capacity(USERS)));
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (scim, next, ids) = (scim.clone(), next.clone(), ids.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= USERS {
                    break;
                }
                if let Some(id) = scim.provision(n).await {
                    ids.lock().await.push(id);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let provisioned = USERS as f64 / started.elapsed().as_secs_f64();

    say(&format!("SCIM: {USERS} users deactivated"));
    let ids: Vec<String> = ids.lock().await.clone();
    let ids = Arc::new(ids);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    for _ in 0..CONNECTIONS {
        let (scim, next, ids) = (scim.clone(), next.clone(), ids.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(n) else {
                    break;
                };
                scim.deactivate(id).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let deactivated = ids.len() as f64 / started.elapsed().as_secs_f64();

    small.server.stop()?;
    backend.remove("coreauth_bench_small").await?;
    let errors = scim.errors.load(Ordering::Relaxed);
    let markdown = format!(
        "## {} — commit `{}` — {database} — SCIM provisioning\n\n{}\n\n\
         | load | connections | per second | errors |\n\
         |---|---:|---:|---:|\n\
         | password login (argon2id) | 16 | {logins:.1} | |\n\
         | SCIM user provisioned (lookup by userName, then create) | {CONNECTIONS} | {provisioned:.1} | {errors} |\n\
         | SCIM user deactivated (PATCH active) | {CONNECTIONS} | {deactivated:.1} | |\n\n\
         Users provisioned per password login: **{:.2}** ({USERS} users, {:.1} s).\n",
        now_text()?,
        commit(),
        machine(std::thread::available_parallelism().map_or(1, usize::from)),
        provisioned / logins,
        USERS as f64 / provisioned,
    );
    Ok(Soak { markdown, errors })
}

/// The bench as a directory: Entra ID's requests, counting any unexpected answer.
struct Directory {
    http: reqwest::Client,
    users: String,
    token: String,
    errors: AtomicU64,
}

impl Directory {
    /// Looks user `n` up by userName, creates them, and answers their id.
    async fn provision(&self, n: usize) -> Option<String> {
        let user_name = format!("user{n}@{DOMAIN}");
        let lookup = self
            .http
            .get(&self.users)
            .query(&[("filter", format!("userName eq \"{user_name}\""))])
            .bearer_auth(&self.token)
            .send()
            .await;
        if !lookup.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let body = json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            ],
            "externalId": format!("oid-{n}"),
            "userName": user_name,
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": user_name}],
            "name": {"givenName": "User", "familyName": format!("Number {n}")},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Bench"},
        });
        let created = self
            .http
            .post(&self.users)
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await;
        match created {
            Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                let created: serde_json::Value = r.json().await.ok()?;
                created["id"].as_str().map(str::to_owned)
            }
            _ => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    async fn deactivate(&self, id: &str) {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        });
        let patched = self
            .http
            .patch(format!("{}/{id}", self.users))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await;
        if !patched.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
