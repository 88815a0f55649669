//! The client commands of the `coreauth` binary — `login` (in `login`: with a password, or with
//! `--sso` through the org's identity provider, from any browser), `whoami`, `token`, `keys`,
//! `logout` — built on `coreauth-client`. The session lives in the user's config directory
//! (`session_file`); each command renews the stored token first when less than a third of its
//! life is left, so `coreauth token` always prints one a script can use for a while.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use coreauth_client::{
    Client, EndReason, Error, ExposeSecret, RenewalPolicy, SecretString, SessionStatus,
};
use coreauth_proto::SecretText;

mod login;
mod session_file;

use login::{LoginArgs, login};
use session_file::{SessionFile, StoredSession};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Args)]
pub struct ServerArg {
    /// coreauth's URL (COREAUTH_SERVER). Default: the stored session's server; for `login`,
    /// http://127.0.0.1:8080.
    #[arg(long, env = "COREAUTH_SERVER", global = true)]
    server: Option<String>,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Log in with a password, or with --sso through your org's identity provider, and keep
    /// the session (in ~/.config/coreauth/session.json, mode 0600).
    Login(LoginArgs),
    /// Show who the stored session is.
    Whoami(ServerArg),
    /// Print a token for scripts (renewed first when less than a third of its life is left):
    /// curl -H "Authorization: Bearer $(coreauth token)" …
    Token(ServerArg),
    /// Add, list or delete your API keys (in the org of the session).
    Keys {
        #[command(flatten)]
        server: ServerArg,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// End the session at the server and forget it.
    Logout(ServerArg),
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// Create a key; it is printed this once.
    Add { name: String },
    /// List your keys (only a prefix of each is shown).
    List,
    /// Delete a key by its id.
    Delete { id: String },
}

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    let file = SessionFile::in_config_dir()?;
    match command {
        ClientCommand::Login(args) => login(&file, args).await,
        ClientCommand::Whoami(server) => {
            let session = Stored::open(&file, server)?;
            let me = session.client.whoami().await.map_err(explain)?;
            session.keep(&file).await?;
            let admin = if me.is_platform_admin {
                ", platform admin"
            } else {
                ""
            };
            println!("{} ({} {}), user {}", me.email, me.first, me.last, me.id);
            println!(
                "org {} \"{}\", role {}{admin}",
                me.org_id, me.org_name, me.role
            );
            match me.session_expires_at {
                Some(ends) => {
                    println!("authenticated by a session that ends at {ends} at the latest")
                }
                None => println!("authenticated by {}", me.auth_method),
            }
            Ok(())
        }
        ClientCommand::Token(server) => {
            let session = Stored::open(&file, server)?;
            let token = session.client.token().await.map_err(explain)?;
            session.keep(&file).await?;
            println!("{}", token.expose_secret());
            Ok(())
        }
        ClientCommand::Keys { server, action } => {
            let session = Stored::open(&file, server)?;
            let client = &session.client;
            match action {
                KeysAction::Add { name } => {
                    let key = client.add_api_key(&name).await.map_err(explain)?;
                    eprintln!(
                        "API key {:?} created (id {}); it is shown only now:",
                        key.name, key.id
                    );
                    println!("{}", key.token);
                }
                KeysAction::List => {
                    let keys = client.api_keys().await.map_err(explain)?;
                    println!(
                        "{:<36}  {:<12}  {:<24}  {:<24}  NAME",
                        "ID", "KEY", "CREATED", "LAST USED"
                    );
                    for key in keys {
                        let last_used = key.last_used.as_deref().unwrap_or("never");
                        println!(
                            "{:<36}  {:<12}  {:<24}  {:<24}  {}",
                            key.id, key.token, key.created, last_used, key.name
                        );
                    }
                }
                KeysAction::Delete { id } => {
                    client.delete_api_key(&id).await.map_err(explain)?;
                    println!("API key {id} deleted");
                }
            }
            session.keep(&file).await
        }
        ClientCommand::Logout(server) => {
            let Some(session) = Stored::open_if_any(&file, server)? else {
                println!("not logged in");
                return Ok(());
            };
            session.client.logout().await.map_err(|e| {
                anyhow::anyhow!(
                    "{e}; the session is still stored in {} — try again, or delete the file",
                    file.path().display()
                )
            })?;
            file.remove()?;
            println!("logged out of {}", session.stored.server);
            Ok(())
        }
    }
}

/// A CLI is short-lived: no background task, and a renewal exactly when a third is left.
fn client_builder(server: &str) -> coreauth_client::ClientBuilder {
    Client::builder(server)
        .background_renewal(false)
        .client_name("coreauth-cli")
        .renewal_policy(RenewalPolicy {
            jitter: 0.0,
            ..RenewalPolicy::default()
        })
}

/// The stored session and a client resumed from it.
struct Stored {
    stored: StoredSession,
    client: Client,
}

impl Stored {
    fn open(file: &SessionFile, server: ServerArg) -> anyhow::Result<Self> {
        Self::open_if_any(file, server)?
            .context("not logged in: run `coreauth login --email …` first")
    }

    fn open_if_any(file: &SessionFile, server: ServerArg) -> anyhow::Result<Option<Self>> {
        let Some(stored) = file.load()? else {
            return Ok(None);
        };
        if let Some(asked) = server.server
            && asked.trim_end_matches('/') != stored.server.trim_end_matches('/')
        {
            bail!(
                "the stored session is for {}, not {asked}: run `coreauth login --server {asked}`",
                stored.server
            );
        }
        let token = SecretString::from(stored.token.expose());
        let client = client_builder(&stored.server).resume(token, stored.expires_at)?;
        Ok(Some(Self { stored, client }))
    }

    /// Stores the token again if a command renewed it.
    async fn keep(&self, file: &SessionFile) -> anyhow::Result<()> {
        let current = stored_session(&self.client).await?;
        if current.token.expose() != self.stored.token.expose() {
            file.save(&current)?;
        }
        Ok(())
    }
}

async fn stored_session(client: &Client) -> anyhow::Result<StoredSession> {
    let token = client.token().await.map_err(explain)?;
    let SessionStatus::Active {
        expires_at: Some(expires_at),
        ..
    } = client.status()
    else {
        bail!("the session ended");
    };
    Ok(StoredSession {
        server: client.server().to_owned(),
        token: SecretText::new(token.expose_secret()),
        expires_at,
    })
}

/// A client error as a person should read it.
fn explain(e: Error) -> anyhow::Error {
    match e {
        Error::SessionEnded(EndReason::LoggedOut) => anyhow::anyhow!("logged out"),
        Error::SessionEnded(reason) => {
            anyhow::anyhow!("the session has ended ({reason}): run `coreauth login` again")
        }
        Error::Api {
            status, message, ..
        } => anyhow::anyhow!("coreauth answered {status}: {message}"),
        other => other.into(),
    }
}

/// Asks on the terminal without echoing what is typed.
fn ask_secret(prompt: &str) -> anyhow::Result<SecretString> {
    let text = rpassword::prompt_password(prompt)
        .context("no terminal to ask on: use --password-stdin")?;
    Ok(SecretString::from(text))
}
