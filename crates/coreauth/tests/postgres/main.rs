//! PostgreSQL only: several instances on one database, the real binary on PostgreSQL, and what
//! only a shared database can get wrong (instances starting together, migrations from a newer
//! coreauth, throttling, one-time codes, key caps, password changes and the audit export raced
//! across instances).
//!
//! Needs `COREAUTH_TEST_POSTGRES_URL` (a server URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`) and fails without it rather than passing
//! without testing. Plain `cargo test` does not build this target (`test = false` in Cargo.toml);
//! `./scripts/test` starts a throwaway server and runs it with `cargo test --test postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use coreauth::config::Settings;
use helpers::*;

mod binary;
mod caches;
mod faults;
mod killed;
mod processes;
mod races;
mod scim;
mod signing_keys;
mod startup;

/// Within a second, by the spec; what is measured is how long the copy on another instance
/// outlives the change.
const ACROSS_INSTANCES: Duration = Duration::from_secs(1);

/// Three instances on one fresh PostgreSQL database, started one after the other.
async fn three_instances() -> (TestApp, TestApp, TestApp) {
    three_instances_with(|_| {}).await
}

async fn three_instances_with(configure: fn(&mut Settings)) -> (TestApp, TestApp, TestApp) {
    let database = Arc::new(TestDatabase::postgres().await);
    let a = TestApp::spawn_on(&database, configure).await;
    let b = TestApp::spawn_on(&database, configure).await;
    let c = TestApp::spawn_on(&database, configure).await;
    (a, b, c)
}

/// Without the session cache (`COREAUTH_SESSION_CACHE_TTL=0s`), every instance reads each
/// session's state from the database, so a change made through one is seen by the others at
/// once rather than within milliseconds: for operators who need that.
fn without_cache(settings: &mut Settings) {
    settings.session_cache_ttl = Duration::ZERO;
}

/// Two instances on one fresh PostgreSQL database, their clocks moved together by `advance`.
async fn two_instances() -> (Arc<TestApp>, Arc<TestApp>) {
    let database = Arc::new(TestDatabase::postgres().await);
    let a = TestApp::spawn_on(&database, |_| {}).await;
    let b = TestApp::spawn_on(&database, |_| {}).await;
    (Arc::new(a), Arc::new(b))
}

/// Statuses of `count` copies of one request, sent all at once, alternately to each instance.
async fn burst(
    instances: &[Arc<TestApp>],
    count: usize,
    path: &str,
    request: &serde_json::Value,
) -> Vec<StatusCode> {
    let sent: Vec<_> = (0..count)
        .map(|n| {
            let app = &instances[n % instances.len()];
            let request = app.client.post(app.url(path)).json(request);
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for response in sent {
        statuses.push(response.await.unwrap());
    }
    statuses
}

fn count(statuses: &[StatusCode], wanted: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == wanted).count()
}
