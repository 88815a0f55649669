//! `Application::build`: the one way in, for `main` and for tests alike. It opens and migrates
//! the store, loads or creates the signing key, bootstraps the first admin if asked to, and
//! binds the listener (port 0 picks a free port, read back with `port()`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::audit_export::{AuditExport, ExportTarget};
use crate::cache::{self, CachedReads, SessionCache};
use crate::config::Settings;
use crate::dns::TxtResolver;
use crate::domain::admin::Admin;
use crate::domain::apikey::ApiKeys;
use crate::domain::audit::Audit;
use crate::domain::auth::{Auth, SessionPolicy};
use crate::domain::clock::Clock;
use crate::domain::credentials::Credentials;
use crate::domain::integrations::Integrations;
use crate::domain::invitations::Invitations;
use crate::domain::mail::delivery::{Delivery, DeliveryStats};
use crate::domain::mail::settings::MailSettings;
use crate::domain::mfa::Mfa;
use crate::domain::password::{HashCost, HashLimits, Password, PasswordHashing};
use crate::domain::recovery::PasswordRecovery;
use crate::domain::scim::Scim;
use crate::domain::service_accounts::ServiceAccounts;
use crate::domain::signing_keys::SigningKeys;
use crate::domain::sso::Sso;
use crate::domain::throttle::Throttle;
use crate::domain::tokens::{StoredSigningKey, TokenSigner};
use crate::domain::verification::EmailVerification;
use crate::http::{self, AppParts, AppState, ConnectionLimits, Metrics, MetricsAccess};
use crate::mail_transport;
use crate::oidc_client::NetworkPolicy;
use crate::remote_tokens::RemoteTokens;
use crate::store::Store;
use crate::store::pg_changes::{AbortOnDrop, ChangeFeed};
use crate::store::postgres::{PostgresSettings, PostgresStore};
use crate::store::sqlite::{SqliteSettings, SqliteStore};

mod from_settings;

pub use from_settings::{
    connection_limits, http_limits, key_schedule, load_secret_box, throttle_limits,
};

/// How long shutdown waits for the database connections to come back and close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The beat of the background work: pending renewals are written at every tick.
const TICK: Duration = Duration::from_secs(1);
/// Ticks between writes of API-key usage (`lastUsed`): often enough to be useful, rarely enough
/// that validating a key never waits on a write.
const USAGE_FLUSH_TICKS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(String),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// Opens the database named by `settings`, applying migrations when `migrate` is set. The URL's
/// scheme picks the backend; nothing past this point knows which one it got.
pub async fn open_store(
    settings: &Settings,
    migrate: bool,
) -> Result<Arc<dyn Store>, StartupError> {
    Ok(open_database(settings, migrate).await?.0)
}

/// `open_store`, with the feed of changes made by other instances when the backend has one.
async fn open_database(
    settings: &Settings,
    migrate: bool,
) -> Result<(Arc<dyn Store>, Option<ChangeFeed>), StartupError> {
    let url = settings.database_url.as_str();
    let database = |e: sqlx::Error| StartupError::Database(e.to_string());
    let migrations =
        |e: sqlx::migrate::MigrateError| StartupError::Database(format!("migrations: {e}"));
    match Backend::of(url) {
        Some(Backend::Sqlite) => {
            let store = SqliteStore::connect(&SqliteSettings {
                url: url.to_owned(),
                max_connections: settings.database_max_connections,
                acquire_timeout: settings.database_acquire_timeout,
            })
            .await
            .map_err(database)?;
            if migrate {
                store.migrate().await.map_err(migrations)?;
            }
            Ok((Arc::new(store), None))
        }
        Some(Backend::Postgres) => {
            let store = PostgresStore::connect(&PostgresSettings {
                url: url.to_owned(),
                max_connections: settings.database_max_connections,
                acquire_timeout: settings.database_acquire_timeout,
            })
            .await
            .map_err(database)?;
            if migrate {
                store.migrate().await.map_err(migrations)?;
            }
            let changes = store.change_feed();
            Ok((Arc::new(store), Some(changes)))
        }
        None => Err(StartupError::Database(
            "COREAUTH_DATABASE_URL must start with sqlite:, postgres: or postgresql:".into(),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, by its scheme (case-insensitive, as URL schemes are).
    fn of(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    connections: ConnectionLimits,
    state: AppState,
    audit_export: Option<ExportTarget>,
    /// The store, for tests and tools that look at the database itself.
    store: Arc<dyn Store>,
    /// The reads through the session cache, told every second to check for writes by other
    /// processes.
    cache: Arc<CachedReads>,
    /// On PostgreSQL, the task that hears other instances' changes (`store::pg_changes`),
    /// stopped when the application is dropped.
    change_feed: Option<AbortOnDrop>,
    /// `COREAUTH_METRICS_LISTEN`'s listener, serving `/metrics` alone.
    metrics_listener: Option<TcpListener>,
    /// The mail queue's worker, run in a task of its own: a slow mail server holds up nothing
    /// else.
    delivery: Arc<Delivery>,
}

impl Application {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let (store, changes) = open_database(&settings, settings.migrate).await?;
        // The cache hears every change the store makes, whoever made it.
        let cache = Arc::new(SessionCache::new(
            settings.session_cache_ttl,
            cache::DEFAULT_CAPACITY,
        ));
        store.changes().listen(cache.clone());
        // On PostgreSQL, changes other instances make are heard within milliseconds; until
        // they can be, nothing is cached.
        let change_feed = match changes {
            Some(feed) if !settings.session_cache_ttl.is_zero() => {
                Some(feed.start(cache.clone()).await)
            }
            _ => None,
        };
        let mail_stats = Arc::new(DeliveryStats::default());
        let metrics = Arc::new(Metrics::new(cache.clone(), mail_stats.clone()));
        let reads = Arc::new(CachedReads::new(store.clone(), cache));
        let signer = Arc::new(load_signer(store.as_ref(), &settings, clock.as_ref()).await?);
        let concurrent = match settings.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let hashing = Arc::new(
            PasswordHashing::new(
                HashCost {
                    memory_kib: settings.argon2_memory_kib,
                    iterations: settings.argon2_iterations,
                    parallelism: settings.argon2_parallelism,
                },
                HashLimits {
                    concurrent,
                    queued: settings.hash_queue,
                    niceness: settings.hash_niceness,
                },
            )
            .await
            .map_err(|e| StartupError::Setup(e.to_string()))?,
        );
        let secrets = Arc::new(load_secret_box(&settings)?);
        let delivery = Arc::new(Delivery::new(
            store.clone(),
            secrets.clone(),
            mail_transport::from_settings(&settings)
                .map_err(StartupError::Setup)?
                .into(),
            clock.clone(),
            mail_stats,
        ));
        tracing::info!("mail goes to {}", delivery.describe());
        let throttle = Arc::new(Throttle::new(store.clone(), throttle_limits(&settings)));
        let mfa = Arc::new(Mfa::new(
            store.clone(),
            secrets.clone(),
            hashing.clone(),
            throttle.clone(),
        ));
        let networks = NetworkPolicy::parse(settings.sso_allowed_networks.as_deref().unwrap_or(""))
            .map_err(|e| StartupError::Setup(format!("COREAUTH_SSO_ALLOWED_NETWORKS: {e}")))?;
        let integrations = Arc::new(Integrations::new(
            store.clone(),
            secrets.clone(),
            signer.clone(),
            RemoteTokens::new(networks.clone()).map_err(|e| StartupError::Setup(e.to_string()))?,
        ));
        let keys = Arc::new(ApiKeys::new(store.clone(), reads.clone()));
        let auth = Arc::new(Auth::new(
            reads.clone(),
            keys.clone(),
            mfa.clone(),
            throttle.clone(),
            hashing.clone(),
            signer.clone(),
            SessionPolicy {
                token_ttl: settings.token_ttl,
                session_max: settings.session_max,
            },
        ));
        let credentials = Arc::new(Credentials::new(
            store.clone(),
            reads.clone(),
            hashing.clone(),
            mfa.clone(),
            throttle.clone(),
        ));
        let admin = Arc::new(Admin::new(
            store.clone(),
            reads.clone(),
            hashing.clone(),
            credentials.clone(),
            mfa.clone(),
        ));
        bootstrap_from_settings(&admin, &settings, clock.as_ref()).await?;

        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| StartupError::Bind(settings.listen.clone(), e))?;
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => {
                let address = listener
                    .local_addr()
                    .map_err(|e| StartupError::Bind(settings.listen.clone(), e))?;
                format!("http://{address}")
            }
        };
        let dns = TxtResolver::new(settings.dns_servers.as_deref())
            .map_err(|e| StartupError::Setup(format!("COREAUTH_DNS_SERVERS: {e}")))?;
        let recovery = Arc::new(PasswordRecovery::new(
            reads.clone(),
            credentials.clone(),
            secrets.clone(),
            throttle.clone(),
            public_url.clone(),
        ));
        let verification = Arc::new(EmailVerification::new(
            store.clone(),
            secrets.clone(),
            throttle.clone(),
            public_url.clone(),
        ));
        let invitations = Arc::new(Invitations::new(
            reads.clone(),
            hashing.clone(),
            secrets.clone(),
            throttle.clone(),
            public_url.clone(),
        ));
        let scim = Arc::new(Scim::new(store.clone(), &public_url));
        let sso = Arc::new(
            Sso::new(
                store.clone(),
                secrets.clone(),
                auth.clone(),
                throttle.clone(),
                public_url,
                networks,
                dns,
            )
            .map_err(|e| StartupError::Setup(e.to_string()))?,
        );
        let metrics_listener = match &settings.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| StartupError::Bind(address.clone(), e))?,
            ),
            None => None,
        };
        let metrics_access = match (&metrics_listener, &settings.metrics_token) {
            (Some(_), _) => MetricsAccess::Elsewhere,
            (None, Some(token)) => MetricsAccess::Token(token.clone()),
            (None, None) => MetricsAccess::Closed,
        };
        let state = AppState::new(AppParts {
            auth,
            admin,
            service_accounts: Arc::new(ServiceAccounts::new(store.clone(), keys.clone())),
            recovery,
            invitations,
            verification,
            mail_settings: Arc::new(MailSettings::new(store.clone())),
            keys,
            audit: Arc::new(Audit::new(store.clone(), settings.audit_retention)),
            credentials,
            mfa,
            integrations,
            throttle,
            sso,
            scim,
            signing_keys: Arc::new(SigningKeys::new(
                store.clone(),
                signer.clone(),
                key_schedule(&settings),
            )),
            signer,
            clock,
            metrics,
            metrics_access,
        });
        Ok(Self {
            listener,
            router: http::router(state.clone(), &http_limits(&settings)?),
            connections: connection_limits(&settings),
            state,
            audit_export: settings.audit_export.as_deref().map(ExportTarget::parse),
            store,
            cache: reads,
            change_feed,
            metrics_listener,
            delivery,
        })
    }

    /// The store this application opened (tests read the database through it).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Where `COREAUTH_METRICS_LISTEN` listens, when set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish. Background work (writing renewals and API-key usage) runs alongside and is flushed at
    /// the end.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let mut export = match self.audit_export {
            Some(target) => match AuditExport::start(target, &state.audit).await {
                Ok(export) => Some(export),
                Err(e) => {
                    tracing::error!("the audit export cannot start: {e}");
                    None
                }
            },
            None => None,
        };
        let metrics_server = self.metrics_listener.map(|listener| {
            let router = http::ops::metrics_router(self.state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!("the metrics listener stopped: {e}");
                }
            })
        });
        let mail = tokio::spawn(self.delivery.clone().work());
        let cache = self.cache.clone();
        let flusher = tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            for tick in 0_u64.. {
                every.tick().await;
                if let Err(e) = state.auth.flush_renewals().await {
                    tracing::warn!("writing renewals: {e}");
                }
                if let Err(e) = cache.forget_foreign_writes().await {
                    tracing::warn!("checking for writes by other processes: {e}");
                }
                // Requests for mail accepted since the last tick, on whichever instance.
                if let Err(e) = state.recovery.process_requests(state.now()).await {
                    tracing::warn!("carrying out password-reset requests: {e}");
                }
                if let Err(e) = state.verification.process_requests(state.now()).await {
                    tracing::warn!("carrying out verification requests: {e}");
                }
                if tick % USAGE_FLUSH_TICKS != 0 {
                    continue;
                }
                if let Err(e) = state.keys.flush_usage().await {
                    tracing::warn!("writing API key usage: {e}");
                }
                if let Some(export) = export.as_mut()
                    && let Err(e) = export.run_once(&state.audit).await
                {
                    tracing::warn!("exporting audit events: {e}");
                }
                // Every 5 seconds, 5 minutes and hour (ticks are 1 s).
                if tick % 5 == 0
                    && let Err(e) = state.signing_keys.maintain(state.now()).await
                {
                    tracing::warn!("rotating signing keys: {e}");
                }
                if tick % 300 == 0
                    && let Err(e) = state.throttle.prune(state.now()).await
                {
                    tracing::warn!("pruning throttle counters: {e}");
                }
                if tick % 300 == 0
                    && let Err(e) = state.sso.prune(state.now()).await
                {
                    tracing::warn!("pruning SSO sign-ins in flight: {e}");
                }
                if tick % 3600 == 0
                    && let Err(e) = state.audit.prune(state.now()).await
                {
                    tracing::warn!("pruning the audit trail: {e}");
                }
            }
        });
        let served =
            http::connections::serve(self.listener, self.router, self.connections, shutdown).await;
        flusher.abort();
        // A send cut off here is taken again once its lease runs out (on any instance).
        mail.abort();
        if let Some(server) = metrics_server {
            server.abort();
        }
        drop(self.change_feed);
        if let Err(e) = self.state.auth.flush_renewals().await {
            tracing::warn!("writing renewals at shutdown: {e}");
        }
        if let Err(e) = self.state.keys.flush_usage().await {
            tracing::warn!("writing API key usage at shutdown: {e}");
        }
        if tokio::time::timeout(CLOSE_GRACE, self.store.close())
            .await
            .is_err()
        {
            tracing::warn!("a database connection was still in use at shutdown");
        }
        served
    }
}

/// The signing keys in the database, creating the first one on first start. Instances racing on
/// an empty database each offer a key, but only the first one offered is stored, so they agree.
pub async fn load_signer(
    store: &dyn Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<TokenSigner, StartupError> {
    fn setup(e: impl std::fmt::Display) -> StartupError {
        StartupError::Setup(e.to_string())
    }
    let mut keys = store.signing_keys().await.map_err(setup)?;
    if keys.is_empty() {
        let key = StoredSigningKey::generate(clock.now()).map_err(setup)?;
        store.insert_first_signing_key(&key).await.map_err(setup)?;
        keys = store.signing_keys().await.map_err(setup)?;
        if keys.iter().any(|stored| stored.kid == key.kid) {
            tracing::info!("generated a new signing key");
        }
    }
    TokenSigner::new(settings.issuer.clone(), keys).map_err(setup)
}

async fn bootstrap_from_settings(
    admin: &Admin,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<(), StartupError> {
    let (Some(email), Some(password)) = (
        settings.bootstrap_admin_email.as_deref(),
        settings.bootstrap_admin_password.as_ref(),
    ) else {
        return Ok(());
    };
    let password = Password::parse(password.expose_secret().to_owned())
        .map_err(|e| StartupError::Setup(format!("bootstrap admin password: {e}")))?;
    match admin.bootstrap(email, password, clock.now()).await {
        Ok(Some(user)) => {
            tracing::info!(user_id = user.id, "created the bootstrap admin and org 1");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(StartupError::Setup(format!("bootstrap admin: {e}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Backend;

    #[test]
    fn the_url_scheme_picks_the_backend() {
        assert_eq!(Backend::of("sqlite://coreauth.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of("postgres://u@db.example:5432/coreauth"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of("postgresql://u@localhost/coreauth?sslmode=disable"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of("POSTGRES://u@localhost/x"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of("mysql://u@localhost/x"), None);
        assert_eq!(Backend::of("coreauth.db"), None);
    }
}
