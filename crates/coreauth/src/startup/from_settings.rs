//! What the settings become: the HTTP and connection limits, the signing-key schedule, the
//! throttle's limits, and the key that seals secrets at rest (read, or made on first start).

use std::time::Duration;

use secrecy::ExposeSecret;

use super::StartupError;
use crate::config::Settings;
use crate::domain::secrets::SecretBox;
use crate::domain::signing_keys::KeySchedule;
use crate::domain::throttle::ThrottleLimits;
use crate::http::client_address::TrustedProxies;
use crate::http::{ConnectionLimits, HttpLimits};

pub fn http_limits(settings: &Settings) -> Result<HttpLimits, StartupError> {
    let trusted_proxies = TrustedProxies::parse(settings.trusted_proxies.as_deref().unwrap_or(""))
        .map_err(|e| StartupError::Setup(format!("COREAUTH_TRUSTED_PROXIES: {e}")))?;
    Ok(HttpLimits {
        max_concurrent_requests: settings.max_concurrent_requests,
        request_timeout: settings.request_timeout,
        body_timeout: settings.body_timeout,
        body_min_rate: settings.body_min_rate,
        cors_allowed_origins: settings
            .cors_allowed_origins
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect(),
        trusted_proxies,
    })
}

pub fn connection_limits(settings: &Settings) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: settings.max_connections,
        header_timeout: settings.header_timeout,
        idle_timeout: settings.idle_timeout,
    }
}

/// How signing keys rotate under `settings`.
pub fn key_schedule(settings: &Settings) -> KeySchedule {
    let integration_max =
        Duration::from_secs(u64::from(crate::domain::integrations::MAX_LIFETIME_SECS));
    KeySchedule {
        rotate_every: settings.signing_key_rotation,
        publish_ahead: settings.signing_key_publish_ahead,
        longest_token: settings.token_ttl.max(integration_max),
    }
}

pub fn throttle_limits(settings: &Settings) -> ThrottleLimits {
    ThrottleLimits {
        per_account: settings.login_attempts_per_account,
        per_address: settings.login_attempts_per_address,
        traffic_per_address: settings.login_traffic_per_address,
        mails_per_recipient: settings.mails_per_recipient,
        window: settings.throttle_window,
    }
}

/// The key that seals secrets at rest: from the settings, or from its file (created on first
/// start, readable by the owner only).
pub fn load_secret_box(settings: &Settings) -> Result<SecretBox, StartupError> {
    let setup =
        |e: crate::domain::error::DomainError| StartupError::Setup(format!("secret key: {e}"));
    let primary = match &settings.secret_key {
        Some(key) => key.expose_secret().to_owned(),
        None => read_or_create_key_file(&settings.secret_key_file)?,
    };
    let previous: Vec<String> = settings
        .previous_secret_keys
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    SecretBox::from_base64(&primary, &previous).map_err(setup)
}

fn read_or_create_key_file(path: &std::path::Path) -> Result<String, StartupError> {
    use std::io::Write;
    let failed = |e: std::io::Error| StartupError::Setup(format!("{}: {e}", path.display()));
    let read = || {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(failed)
    };
    if path.exists() {
        return read();
    }
    // Written whole under a private name, then linked into place: the link either creates
    // the file complete or fails because another instance got there first, so nobody ever
    // reads a half-written key.
    let key = SecretBox::generate_key().map_err(|e| StartupError::Setup(e.to_string()))?;
    let staging = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&staging).and_then(|mut file| {
        file.write_all(key.as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&staging, path));
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new secret key; back it up with the database");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// Instances starting together on one working directory all end up with the same, whole key.
    #[test]
    fn racing_instances_share_one_complete_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coreauth-secret.key");
        let keys: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| super::read_or_create_key_file(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            keys.iter().all(|k| k == &keys[0] && k.len() == 44),
            "{keys:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), keys[0]);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no staging file is left behind");
    }
}
