//! `coreauth login`: with the account's password (asked on the terminal or read from standard
//! input), or with `--sso` through the org's identity provider, device-style: the command
//! prints a URL and a short code, the person opens the URL in any browser (on this machine or
//! another), checks the code and signs in there, and the command, polling meanwhile, stores the
//! session as a password login does. An account with TOTP then answers its one-time code here.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use coreauth::domain::clock::{from_millis, iso8601};
use coreauth_client::{Client, Error, Login, SecretString};

use super::session_file::SessionFile;
use super::{DEFAULT_SERVER, ServerArg, ask_secret, client_builder, stored_session};

/// Wrong one-time codes a person may type before the command gives up.
const CODE_ATTEMPTS: u32 = 3;

#[derive(Args)]
pub struct LoginArgs {
    #[arg(long)]
    email: String,
    /// Sign in through your org's identity provider (single sign-on): open the printed URL in
    /// any browser, check that it shows the printed code, and sign in there; the command waits.
    #[arg(long, conflicts_with_all = ["password_stdin", "org"])]
    sso: bool,
    /// Read the password from standard input instead of asking for it.
    #[arg(long)]
    password_stdin: bool,
    /// The org to log in to (see `GET /user/orgs`); default: your first. With --sso, the org
    /// is the one whose provider your email's domain signs in through.
    #[arg(long)]
    org: Option<i64>,
    /// The one-time code of an account with MFA (asked for when needed on a terminal).
    #[arg(long)]
    mfa_code: Option<String>,
    #[command(flatten)]
    server: ServerArg,
}

pub async fn login(file: &SessionFile, args: LoginArgs) -> anyhow::Result<()> {
    let server = args
        .server
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let client = if args.sso {
        sso_login(&server, &args).await?
    } else {
        password_login(&server, &args).await?
    };
    let stored = stored_session(&client).await?;
    file.save(&stored)?;
    let user = client.user();
    let (email, org, role) = user
        .map(|u| (u.email, u.org_id, u.role))
        .unwrap_or_else(|| (args.email, 0, String::new()));
    println!(
        "logged in to {} as {email} (org {org}, {role}); the token expires at {}, renewed by \
         every command; session kept in {}",
        client.server(),
        iso8601(from_millis(stored.expires_at)),
        file.path().display()
    );
    if client.mfa_enrollment_required() {
        eprintln!(
            "your org requires a second factor that this account has not set up: enrol one \
             (POST /user/mfa/totp/enroll, then /user/mfa/totp/confirm); until then only that, \
             whoami and logout work"
        );
    }
    Ok(())
}

async fn password_login(server: &str, args: &LoginArgs) -> anyhow::Result<Client> {
    let password = if args.password_stdin {
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        SecretString::from(text.trim_end_matches(['\r', '\n']))
    } else {
        ask_secret(&format!("Password for {}: ", args.email))?
    };
    let mut login = Login::new(args.email.clone(), password);
    if let Some(org) = args.org {
        login = login.org(org);
    }
    let builder = || client_builder(server);
    let client = match &args.mfa_code {
        Some(code) => builder().login(login.mfa_code(code.as_str().into())).await,
        None => match builder().login(login.clone()).await {
            Err(e) if e.code() == Some("mfa_required") => {
                if args.password_stdin || !std::io::stdin().is_terminal() {
                    bail!("this account needs a one-time code: add --mfa-code");
                }
                let code = ask_secret("One-time code: ")?;
                builder().login(login.mfa_code(code)).await
            }
            other => other,
        },
    };
    client.map_err(|e| match e {
        Error::Api { message, .. } => anyhow::anyhow!("login refused: {message}"),
        other => other.into(),
    })
}

async fn sso_login(server: &str, args: &LoginArgs) -> anyhow::Result<Client> {
    let sign_in = client_builder(server)
        .sso_device(args.email.as_str())
        .await
        .map_err(|e| match e {
            Error::Api { status: 404, .. } => anyhow::anyhow!(
                "{server} does not offer single sign-on from the command line (POST \
                 /user/authenticate/sso/device answered 404)"
            ),
            Error::Api { message, .. } => anyhow::anyhow!("login refused: {message}"),
            other => other.into(),
        })?;
    eprint!(
        "{}",
        instructions(
            sign_in.verification_uri_complete(),
            sign_in.verification_uri(),
            sign_in.user_code(),
            sign_in.expires_in(),
        )
    );
    let client = sign_in.wait().await.map_err(|e| match e {
        Error::SignInExpired => anyhow::anyhow!(
            "the sign-in was not finished in time, or the code was used already: run \
             `coreauth login --sso` again"
        ),
        Error::Api { code, message, .. } => {
            anyhow::anyhow!("sign-in refused: {message} ({code})")
        }
        other => other.into(),
    })?;
    if client.mfa_required() {
        answer_second_factor(&client, args.mfa_code.as_deref()).await?;
    }
    Ok(client)
}

/// What the person is told to do, on standard error. A test (or a script) reads the URL and
/// the code from the lines `open: <URL>` and `code: <code>`, which are printed as they are.
fn instructions(complete: &str, uri: &str, user_code: &str, expires_in: Duration) -> String {
    format!(
        "Open {complete} in a browser and check that it shows the code {user_code}\n\
         (or open {uri} and type the code), then sign in at your organisation's identity \
         provider.\n\
         open: {complete}\n\
         code: {user_code}\n\
         Waiting for the sign-in; the code expires in {}.\n",
        spoken(expires_in)
    )
}

/// `10 minutes`, `90 seconds`.
fn spoken(d: Duration) -> String {
    match d.as_secs() {
        1 => "1 second".into(),
        60 => "1 minute".into(),
        s if s >= 120 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

/// The one-time code of a single sign-on whose account has TOTP: `--mfa-code`, or asked on
/// the terminal (again after a wrong code, a few times).
async fn answer_second_factor(client: &Client, given: Option<&str>) -> anyhow::Result<()> {
    let refused = |e: Error| match e {
        Error::Api { message, .. } => anyhow::anyhow!("one-time code refused: {message}"),
        other => other.into(),
    };
    if let Some(code) = given {
        return client.verify_mfa(code.into()).await.map_err(refused);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "signed in, but this account also needs its one-time code: run again with \
             --mfa-code"
        );
    }
    let mut attempt = 1;
    loop {
        let code = ask_secret("One-time code: ")?;
        match client.verify_mfa(code).await {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some("mfa_invalid") && attempt < CODE_ATTEMPTS => {
                eprintln!("that code is wrong or was used already; try again");
                attempt += 1;
            }
            Err(e) => return Err(refused(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::ClientCommand;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<LoginArgs, clap::Error> {
        let args = ["coreauth", "login"].iter().chain(args);
        match Cli::try_parse_from(args)?.command {
            ClientCommand::Login(login) => Ok(login),
            _ => unreachable!("parsed as login"),
        }
    }

    #[test]
    fn sso_takes_no_password_and_no_org() {
        let args = parse(&["--sso", "--email", "dev@corp.example"]).unwrap();
        assert!(args.sso && !args.password_stdin);
        assert_eq!(args.email, "dev@corp.example");
        let args = parse(&["--sso", "--email", "d@c.example", "--mfa-code", "123456"]).unwrap();
        assert_eq!(args.mfa_code.as_deref(), Some("123456"));
        for conflicting in [["--password-stdin"].as_slice(), &["--org", "3"]] {
            let mut args = vec!["--sso", "--email", "dev@corp.example"];
            args.extend_from_slice(conflicting);
            let e = parse(&args).err().unwrap();
            assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
        }
        assert!(!parse(&["--email", "a@b.example"]).unwrap().sso);
    }

    #[test]
    fn the_url_and_code_are_on_lines_of_their_own() {
        let text = instructions(
            "https://auth.corp.example/device?code=WDJB-MJHT",
            "https://auth.corp.example/device",
            "WDJB-MJHT",
            Duration::from_secs(600),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"open: https://auth.corp.example/device?code=WDJB-MJHT"));
        assert!(lines.contains(&"code: WDJB-MJHT"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("open: ")).count(), 1);
        assert_eq!(lines.iter().filter(|l| l.starts_with("code: ")).count(), 1);
        assert!(text.starts_with(
            "Open https://auth.corp.example/device?code=WDJB-MJHT in a browser and check that \
             it shows the code WDJB-MJHT\n"
        ));
        assert!(text.contains("open https://auth.corp.example/device and type the code"));
        assert!(
            text.ends_with("the code expires in 10 minutes.\n"),
            "{text}"
        );
    }

    #[test]
    fn durations_are_spoken() {
        assert_eq!(spoken(Duration::from_secs(600)), "10 minutes");
        assert_eq!(spoken(Duration::from_secs(60)), "1 minute");
        assert_eq!(spoken(Duration::from_secs(90)), "90 seconds");
        assert_eq!(spoken(Duration::from_secs(1)), "1 second");
    }
}
