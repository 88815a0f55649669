//! The `admin` commands: run against the database directly, with the service's settings, on a
//! machine that reaches it (no HTTP, no token): `bootstrap` on an empty database, and
//! `signing-keys`. Running instances take in a key change within seconds.

use std::sync::Arc;

use anyhow::bail;
use clap::Subcommand;
use coreauth::config::Settings;
use coreauth::domain::clock::{Clock, SystemClock};
use coreauth::domain::password::Password;
use coreauth::domain::signing_keys::SigningKeys;
use coreauth::startup::{key_schedule, load_signer, open_store};

#[derive(Subcommand)]
pub enum KeyAction {
    /// Every key with its state (next, active, previous, retired) and times.
    List,
    /// Add a key now: published at once, signing after COREAUTH_SIGNING_KEY_PUBLISH_AHEAD.
    Rotate,
    /// Stop publishing and accepting a key (and erase it); tokens it signed are refused.
    Retire { kid: String },
}

pub async fn signing_keys(settings: Settings, action: KeyAction) -> anyhow::Result<()> {
    let store = open_store(&settings, settings.migrate).await?;
    let clock = SystemClock;
    let signer = Arc::new(load_signer(store.as_ref(), &settings, &clock).await?);
    let keys = SigningKeys::new(store, signer, key_schedule(&settings));
    let now = clock.now();
    match action {
        KeyAction::List => {
            println!(
                "{:<18} {:<9} {:<22} {:<22} retired",
                "kid", "state", "created", "signs from"
            );
            for key in keys.list(now).await? {
                println!(
                    "{:<18} {:<9} {:<22} {:<22} {}",
                    key.kid,
                    key.state.as_str(),
                    rfc3339(key.created_at),
                    rfc3339(key.activates_at),
                    key.retired_at.map_or_else(|| "-".to_owned(), rfc3339),
                );
            }
        }
        KeyAction::Rotate => {
            let key = keys.rotate(now).await?;
            println!(
                "added {}: published now, signing from {}",
                key.kid,
                rfc3339(coreauth::domain::clock::from_millis(key.activates_at))
            );
        }
        KeyAction::Retire { kid } => {
            keys.retire(&kid, now).await?;
            println!("retired {kid}: tokens it signed are refused from now on");
        }
    }
    Ok(())
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

pub async fn bootstrap(settings: Settings, email: &str, password: Password) -> anyhow::Result<()> {
    use coreauth::domain::admin::Admin;
    use coreauth::domain::credentials::Credentials;
    use coreauth::domain::mfa::Mfa;
    use coreauth::domain::password::{HashCost, HashLimits, PasswordHashing};
    use coreauth::domain::throttle::Throttle;

    let store = open_store(&settings, settings.migrate).await?;
    let hashing = PasswordHashing::new(
        HashCost {
            memory_kib: settings.argon2_memory_kib,
            iterations: settings.argon2_iterations,
            parallelism: settings.argon2_parallelism,
        },
        HashLimits {
            concurrent: 1,
            queued: 1,
            niceness: 0,
        },
    )
    .await?;
    let hashing = Arc::new(hashing);
    let secrets = Arc::new(coreauth::startup::load_secret_box(&settings)?);
    let throttle = Arc::new(Throttle::new(
        store.clone(),
        coreauth::startup::throttle_limits(&settings),
    ));
    let mfa = Arc::new(Mfa::new(
        store.clone(),
        secrets,
        hashing.clone(),
        throttle.clone(),
    ));
    let reads = Arc::new(coreauth::cache::CachedReads::uncached(store.clone()));
    let credentials = Arc::new(Credentials::new(
        store.clone(),
        reads.clone(),
        hashing.clone(),
        mfa.clone(),
        throttle,
    ));
    let admin = Admin::new(store, reads, hashing, credentials, mfa);
    match admin.bootstrap(email, password, SystemClock.now()).await? {
        Some(user) => {
            println!(
                "created org 1 (Default) and admin {} (id {})",
                user.email, user.id
            );
            Ok(())
        }
        None => bail!("the database already has users; bootstrap changes nothing"),
    }
}
