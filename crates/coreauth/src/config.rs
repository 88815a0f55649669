//! One `Settings` struct, layered: command-line flags, then `COREAUTH_*` environment variables,
//! then an optional `coreauth.toml`, then the defaults below. With nothing set, coreauth listens
//! on 127.0.0.1:8080 with an SQLite file `coreauth.db` in the working directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `COREAUTH_LISTEN`: address and port to listen on.
    pub listen: String,
    /// `COREAUTH_DATABASE_URL`: `sqlite://…` (default `sqlite://coreauth.db`) or
    /// `postgres://…` / `postgresql://…`.
    pub database_url: String,
    /// `COREAUTH_TOKEN_TTL`: lifetime of one session token.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// `COREAUTH_SESSION_MAX`: absolute lifetime of a session from its login.
    #[serde(with = "humantime_serde")]
    pub session_max: Duration,
    /// `COREAUTH_SIGNING_KEY_ROTATION`: a new signing key this long after the last one started
    /// signing (`0s`: only by hand, `coreauth admin signing-keys rotate`).
    #[serde(with = "humantime_serde")]
    pub signing_key_rotation: Duration,
    /// `COREAUTH_SIGNING_KEY_PUBLISH_AHEAD`: how long a new key is in the JWKS before it signs.
    #[serde(with = "humantime_serde")]
    pub signing_key_publish_ahead: Duration,
    /// `COREAUTH_LOG`: a tracing filter such as `info` or `coreauth=debug,tower_http=info`.
    pub log: String,
    /// `COREAUTH_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `COREAUTH_PUBLIC_URL`: the address browsers and identity providers reach coreauth at
    /// (SSO redirect URI, strategy answers). Default: `http://` + the listening address.
    pub public_url: Option<String>,
    /// `COREAUTH_SSO_ALLOWED_NETWORKS`: comma-separated CIDRs of non-public networks identity
    /// providers and remote integrations' endpoints may be on (an on-premises ADFS); others
    /// than public addresses are refused. A loopback address listed may be called over plain
    /// `http` (the tests' local servers).
    pub sso_allowed_networks: Option<String>,
    /// `COREAUTH_DNS_SERVERS`: comma-separated `ip:port` of DNS servers to look up
    /// domain-verification TXT records with. Default: the system's resolver.
    pub dns_servers: Option<String>,
    /// `COREAUTH_METRICS_TOKEN`: `/metrics` on the main listener answers to
    /// `Authorization: Bearer <this>` only.
    #[serde(deserialize_with = "secret_text")]
    pub metrics_token: Option<SecretString>,
    /// `COREAUTH_METRICS_LISTEN`: serve `/metrics`, without a token, on this address of its own
    /// (a port only the scraper reaches) instead of the main listener. With neither setting
    /// `/metrics` answers nobody.
    pub metrics_listen: Option<String>,
    /// `COREAUTH_ISSUER`: the `iss` of issued tokens.
    pub issuer: String,
    /// `COREAUTH_BOOTSTRAP_ADMIN_EMAIL` / `_PASSWORD`: the first admin, created on an empty
    /// database only. The password may also come from `COREAUTH_BOOTSTRAP_ADMIN_PASSWORD_FILE`.
    pub bootstrap_admin_email: Option<String>,
    #[serde(deserialize_with = "secret_text")]
    pub bootstrap_admin_password: Option<SecretString>,
    pub bootstrap_admin_password_file: Option<PathBuf>,
    /// `COREAUTH_SECRET_KEY`: the key (32 bytes, base64) that seals secrets at rest, such as
    /// TOTP seeds. Without it the key is read from `COREAUTH_SECRET_KEY_FILE` (default
    /// `coreauth-secret.key`), which is created with mode 0600 on first start. Several instances
    /// must share it.
    #[serde(deserialize_with = "secret_text")]
    pub secret_key: Option<SecretString>,
    pub secret_key_file: PathBuf,
    /// `COREAUTH_PREVIOUS_SECRET_KEYS`: comma-separated keys that still open values sealed
    /// before a rotation (they are re-sealed with the current key when next used).
    pub previous_secret_keys: Option<String>,
    /// `COREAUTH_SMTP_URL`: the SMTP server mail goes through: `smtp://host:port` (no TLS),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (TLS), with
    /// `user:password@` if it asks for them. May come from `COREAUTH_SMTP_URL_FILE`. Without
    /// it, messages are written to the outbox folder and their links logged.
    #[serde(deserialize_with = "secret_text")]
    pub smtp_url: Option<SecretString>,
    pub smtp_url_file: Option<PathBuf>,
    /// `COREAUTH_SMTP_PASSWORD` (or `…_FILE`): the password for the URL's user, instead of one
    /// in the URL.
    #[serde(deserialize_with = "secret_text")]
    pub smtp_password: Option<SecretString>,
    pub smtp_password_file: Option<PathBuf>,
    /// `COREAUTH_EMAIL_FROM`: the sender of every message, `Name <address>`; an org's email
    /// settings may change the name.
    pub email_from: String,
    /// `COREAUTH_OUTBOX_DIR`: where messages go without an SMTP server. Default: `outbox/`
    /// beside the SQLite database file, or in the working directory.
    pub outbox_dir: Option<PathBuf>,
    /// Apply migrations at start (`serve --no-migrate` turns it off).
    pub migrate: bool,
    pub database_max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub database_acquire_timeout: Duration,
    /// argon2id cost; the defaults are OWASP's (19 MiB, 2 passes, 1 lane).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// `COREAUTH_SESSION_CACHE_TTL`: how long a session's or API key's state read from the
    /// database may be reused for later requests (0 turns the cache off). Changes made through
    /// this instance apply at once whatever it is. Changes made elsewhere are heard sooner: on
    /// PostgreSQL through the triggers' notices (`store::pg_changes`, milliseconds), on SQLite
    /// through the file's `data_version` (within a second); the TTL bounds what a missed notice
    /// could cost.
    #[serde(with = "humantime_serde")]
    pub session_cache_ttl: Duration,
    /// Hashes running at once (0: one per core) and hashes allowed to wait.
    pub hash_concurrency: usize,
    pub hash_queue: usize,
    /// `COREAUTH_HASH_NICENESS`: how much lower than request handling the hashing threads run
    /// (Linux `nice`, 0–19), so that a flood of logins takes only the CPU token checks leave.
    pub hash_niceness: i32,
    /// Throttling of guesses (logins, codes, password changes): failed attempts allowed per
    /// account and per address within each window, after which callers get 429 until it ends.
    pub login_attempts_per_account: u32,
    pub login_attempts_per_address: u32,
    /// All sign-in attempts (right or wrong, and SSO starts) allowed per address per window;
    /// also the budget of strategy look-ups.
    pub login_traffic_per_address: u32,
    /// Messages (forgotten passwords, resent invitations) asked for one address per window.
    pub mails_per_recipient: u32,
    #[serde(with = "humantime_serde")]
    pub throttle_window: Duration,
    /// How long audit events are kept (pruned hourly); `0s` keeps them forever.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    /// `COREAUTH_AUDIT_EXPORT`: also write every audit event as a JSON line to `stdout` or to
    /// this file (appended), for log shippers.
    pub audit_export: Option<String>,
    /// Requests in flight at once; past it callers get 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// The longest a request may take (slow clients included); then 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `COREAUTH_BODY_TIMEOUT`: the longest reading a request body may take, before the
    /// request counts as in flight; then 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// `COREAUTH_BODY_MIN_RATE`: bytes per second a body must keep arriving at after its first
    /// second, or 408 (0: no minimum).
    pub body_min_rate: u64,
    /// `COREAUTH_HEADER_TIMEOUT`: how long a connection has to send a complete request head,
    /// from its opening or from the first byte of a later request; then it is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// `COREAUTH_IDLE_TIMEOUT`: how long a connection may wait silent for its next request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// `COREAUTH_MAX_CONNECTIONS`: connections open at once (lowered to what the open-file
    /// limit allows); past it the one idle the longest is closed.
    pub max_connections: usize,
    /// `COREAUTH_CORS_ALLOWED_ORIGINS`: comma-separated origins that browsers may call from
    /// (e.g. `https://app.example.com`). CORS is off without it.
    pub cors_allowed_origins: Option<String>,
    /// `COREAUTH_TRUSTED_PROXIES`: comma-separated CIDRs of the proxies (load balancers) in
    /// front of coreauth. Only from those peers is the client's address taken from `Forwarded`
    /// or `X-Forwarded-For`; without it the socket's address is the client's.
    pub trusted_proxies: Option<String>,
    /// How long SIGTERM waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://coreauth.db".into(),
            token_ttl: Duration::from_secs(15 * 60),
            session_max: Duration::from_secs(12 * 3600),
            signing_key_rotation: Duration::from_secs(30 * 24 * 3600),
            signing_key_publish_ahead: Duration::from_secs(24 * 3600),
            log: "info".into(),
            log_format: LogFormat::Text,
            public_url: None,
            sso_allowed_networks: None,
            dns_servers: None,
            metrics_token: None,
            metrics_listen: None,
            issuer: "coreauth".into(),
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
            bootstrap_admin_password_file: None,
            secret_key: None,
            secret_key_file: PathBuf::from("coreauth-secret.key"),
            previous_secret_keys: None,
            smtp_url: None,
            smtp_url_file: None,
            smtp_password: None,
            smtp_password_file: None,
            email_from: "coreauth <noreply@localhost>".into(),
            outbox_dir: None,
            migrate: true,
            database_max_connections: 8,
            database_acquire_timeout: Duration::from_secs(5),
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            session_cache_ttl: Duration::from_secs(60),
            hash_concurrency: 0,
            hash_queue: 256,
            hash_niceness: 10,
            login_attempts_per_account: 10,
            login_attempts_per_address: 100,
            login_traffic_per_address: 3000,
            mails_per_recipient: 5,
            throttle_window: Duration::from_secs(15 * 60),
            audit_retention: Duration::from_secs(365 * 24 * 3600),
            audit_export: None,
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 500,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            cors_allowed_origins: None,
            trusted_proxies: None,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrate: Option<bool>,
}

/// A setting that lists networks (`COREAUTH_SSO_ALLOWED_NETWORKS`, `COREAUTH_TRUSTED_PROXIES`):
/// comma-separated CIDRs (`10.20.0.0/16, 127.0.0.1/32`), a bare address a network of one.
pub fn parse_networks(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("'{item}' is not a network (CIDR) or an address"))
        })
        .collect()
}

/// figment reads an all-digit environment value as a number; a password is text whatever it
/// looks like.
fn secret_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
    }
    let text = Option::<Scalar>::deserialize(d)?.map(|scalar| match scalar {
        Scalar::Text(s) => s,
        Scalar::Unsigned(n) => n.to_string(),
        Scalar::Signed(n) => n.to_string(),
        Scalar::Float(n) => n.to_string(),
    });
    Ok(text.map(SecretString::from))
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Reads the layers. `file` is the TOML file to read; without one, `coreauth.toml` in the
    /// working directory is read if it exists.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = file.map_or_else(|| PathBuf::from("coreauth.toml"), Path::to_path_buf);
        let env = Env::prefixed("COREAUTH_").map(|k| k.as_str().to_ascii_lowercase().into());
        let mut settings: Settings = Figment::new()
            .merge(Toml::file(file))
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        // A `_FILE` variant fills its setting when the setting itself is not given.
        for (value, file) in [
            (
                &mut settings.bootstrap_admin_password,
                &settings.bootstrap_admin_password_file,
            ),
            (&mut settings.smtp_url, &settings.smtp_url_file),
            (&mut settings.smtp_password, &settings.smtp_password_file),
        ] {
            if let (None, Some(path)) = (&value, file) {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
                *value = Some(SecretString::from(
                    text.trim_end_matches(['\r', '\n']).to_owned(),
                ));
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// `_FILE` settings fill their setting (without the file's last line break); a setting
    /// given outright wins over its file.
    #[test]
    fn secrets_come_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("smtp-url");
        let password_file = dir.path().join("smtp-password");
        std::fs::write(&url_file, "smtps://bot@mail.example:465\n").unwrap();
        std::fs::write(&password_file, "p4ss word\r\n").unwrap();
        let toml = dir.path().join("coreauth.toml");
        std::fs::write(
            &toml,
            format!(
                "smtp_url_file = {:?}\nsmtp_password_file = {:?}\n\
                 email_from = \"Acme <auth@acme.example>\"\n",
                url_file.display().to_string(),
                password_file.display().to_string()
            ),
        )
        .unwrap();
        let settings = Settings::load(Some(&toml), &Overrides::default()).unwrap();
        let exposed = |s: &Option<SecretString>| s.as_ref().unwrap().expose_secret().to_owned();
        assert_eq!(exposed(&settings.smtp_url), "smtps://bot@mail.example:465");
        assert_eq!(exposed(&settings.smtp_password), "p4ss word");
        assert_eq!(settings.email_from, "Acme <auth@acme.example>");

        std::fs::write(
            &toml,
            format!(
                "smtp_url = \"smtp://127.0.0.1:25\"\nsmtp_url_file = {:?}\n",
                url_file.display().to_string()
            ),
        )
        .unwrap();
        let settings = Settings::load(Some(&toml), &Overrides::default()).unwrap();
        assert_eq!(exposed(&settings.smtp_url), "smtp://127.0.0.1:25");
        assert!(settings.smtp_password.is_none());
    }
}
