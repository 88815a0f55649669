//! The `coreauth` binary: `serve`, `migrate`, the `admin` commands, and the client commands
//! (`login`, `whoami`, `token`, `keys`, `logout`) of the `cli` module.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use coreauth::config::{LogFormat, Overrides, Settings};
use coreauth::domain::clock::SystemClock;
use coreauth::domain::password::Password;
use coreauth::startup::{Application, open_store};
use tokio::sync::watch;

mod admin;
mod cli;

/// mimalloc rather than glibc's allocator: a request allocates and frees a few dozen small
/// buffers across the runtime's threads, and glibc's arenas spent a measurable share of a token
/// check's CPU in `malloc`, `free` and their lock (the profile is in bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "coreauth",
    version,
    about = "Authentication and session-token service"
)]
struct Cli {
    /// A TOML settings file (default: ./coreauth.toml when it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Administrative commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Args)]
struct DatabaseArgs {
    /// Database URL (COREAUTH_DATABASE_URL), e.g. sqlite://coreauth.db or postgres://host/coreauth
    #[arg(long)]
    database: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (COREAUTH_LISTEN), e.g. 127.0.0.1:8080
    #[arg(long)]
    listen: Option<String>,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Do not apply migrations at start (for deployments that run `coreauth migrate`).
    #[arg(long)]
    no_migrate: bool,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create org 1 and its first admin (a platform admin) on an empty database.
    Bootstrap {
        #[arg(long)]
        email: String,
        /// Read the password from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The keys tokens are signed with: list them, add the next one, or retire one.
    SigningKeys {
        #[command(subcommand)]
        action: admin::KeyAction,
        /// Database URL (COREAUTH_DATABASE_URL), before or after the action.
        #[arg(long, global = true)]
        database: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen,
                database_url: args.database.database,
                migrate: args.no_migrate.then_some(false),
            };
            let settings = Settings::load(cli.config.as_deref(), &overrides)?;
            init_logging(&settings)?;
            serve(settings).await
        }
        Command::Migrate(args) => {
            let overrides = Overrides {
                database_url: args.database,
                ..Overrides::default()
            };
            let settings = Settings::load(cli.config.as_deref(), &overrides)?;
            init_logging(&settings)?;
            open_store(&settings, true).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Admin(AdminCommand::Bootstrap {
            email,
            password_stdin: _,
            database,
        }) => {
            let overrides = Overrides {
                database_url: database.database,
                ..Overrides::default()
            };
            let mut settings = Settings::load(cli.config.as_deref(), &overrides)?;
            init_logging(&settings)?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = Password::parse(password.trim_end_matches(['\r', '\n']).to_owned())?;
            settings.bootstrap_admin_email = None;
            admin::bootstrap(settings, &email, password).await
        }
        Command::Admin(AdminCommand::SigningKeys { action, database }) => {
            let overrides = Overrides {
                database_url: database,
                ..Overrides::default()
            };
            let settings = Settings::load(cli.config.as_deref(), &overrides)?;
            init_logging(&settings)?;
            admin::signing_keys(settings, action).await
        }
        Command::Client(command) => cli::run(command).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    #[cfg(unix)]
    match coreauth::http::connections::raise_open_file_limit() {
        Ok(files) => tracing::debug!(files, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let grace = settings.shutdown_grace;
    let app = Application::build(settings, Arc::new(SystemClock)).await?;
    let address = app.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%address, "coreauth listening");
    let (stopping_tx, mut stopping_rx) = watch::channel(false);
    let shutdown = async move {
        termination().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stopping_tx.send(true);
    };
    let server = app.run_until(shutdown);
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served.context("serving")?,
        () = deadline => tracing::warn!("in-flight requests did not finish within the grace period"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&settings.log)
        .with_context(|| format!("COREAUTH_LOG={:?} is not a valid filter", settings.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("logging: {e}"))
}
