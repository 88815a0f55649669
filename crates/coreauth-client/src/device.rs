//! Single sign-on from a device that cannot show the provider's pages itself (a CLI, a machine
//! over ssh), in the manner of OAuth's device authorization grant (RFC 8628): coreauth hands
//! out a secret device code and a short user code; the person opens the verification URI in any
//! browser, checks that it shows the same user code, and signs in at their org's provider,
//! while the device polls with its device code every `interval` seconds until coreauth answers
//! with the session.
//!
//! The waits run on the builder's `Clock`, so a test moves a `ManualClock` instead of sleeping.
//! The deadline is the device's own: `expiresIn` seconds after the start's answer arrived, on
//! the device's clock, never an instant of the server's.

use std::fmt;
use std::time::Duration;

use coreauth_proto as proto;
use secrecy::{ExposeSecret, SecretString};

use crate::client::{Client, ClientBuilder};
use crate::error::{Error, Result};
use crate::renewal::millis;
use crate::wire;

/// No server's `interval` makes the device poll more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How much longer the interval gets at each `429` or `slow_down` (RFC 8628 §3.5's 5 s).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The interval does not grow past this.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Network failures and `5xx` answers in a row that the poll rides out before giving up: a
/// server restarting must not throw away a sign-in the person is in the middle of.
const MAX_FAILURES: u32 = 3;

/// A device sign-in under way: what to show the person, and [`DeviceSignIn::wait`] for the
/// session. `Debug` never shows the device code.
pub struct DeviceSignIn {
    builder: ClientBuilder,
    http: reqwest::Client,
    server: String,
    device_code: SecretString,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: Duration,
    expires_at: i64,
    interval: Duration,
}

impl fmt::Debug for DeviceSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSignIn")
            .field("server", &self.server)
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_at", &self.expires_at)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Starts signing in through the SSO connection of `email`'s domain from a device that
    /// cannot show the provider's pages itself, such as a CLI (`POST
    /// /user/authenticate/sso/device`). Show the person [`DeviceSignIn::verification_uri_complete`]
    /// and [`DeviceSignIn::user_code`], then [`DeviceSignIn::wait`] for the session. An email
    /// that signs in with a password is refused with `400 invalid_request`.
    pub async fn sso_device(self, email: impl Into<String>) -> Result<DeviceSignIn> {
        DeviceSignIn::start(self, email.into()).await
    }
}

impl DeviceSignIn {
    /// `POST /user/authenticate/sso/device {email, client}`.
    pub(crate) async fn start(builder: ClientBuilder, email: String) -> Result<Self> {
        let (http, server) = builder.parts()?;
        let body = proto::SsoDeviceRequest {
            email,
            client: Some(builder.client_name_ref().to_owned()),
        };
        let response = http
            .post(format!("{server}/user/authenticate/sso/device"))
            .json(&body)
            .send()
            .await?;
        let start: proto::SsoDeviceStart = wire::answer(response).await?;
        let received = builder.clock_ref().now_millis();
        let expires_in = Duration::from_secs(start.expires_in);
        Ok(Self {
            user_code: printable("userCode", start.user_code)?,
            verification_uri: printable("verificationUri", start.verification_uri)?,
            verification_uri_complete: printable(
                "verificationUriComplete",
                start.verification_uri_complete,
            )?,
            device_code: SecretString::from(start.device_code.into_inner()),
            expires_in,
            expires_at: received.saturating_add(millis(expires_in)),
            interval: Duration::from_secs(start.interval).max(MIN_INTERVAL),
            builder,
            http,
            server,
        })
    }

    /// The short code the person compares with the one the verification page shows (or types
    /// there).
    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    /// The page to open in a browser, where the person types [`DeviceSignIn::user_code`].
    pub fn verification_uri(&self) -> &str {
        &self.verification_uri
    }

    /// The page to open with the user code already in it: the person only checks it.
    pub fn verification_uri_complete(&self) -> &str {
        &self.verification_uri_complete
    }

    /// How long the codes are good for, as coreauth said.
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// When [`DeviceSignIn::wait`] gives up: Unix epoch milliseconds on the builder's clock,
    /// `expires_in` after coreauth's answer arrived.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// How long the device waits between polls, as coreauth asked (at least a second).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Polls `POST /user/authenticate/sso/device/token` every `interval` until the person has
    /// signed in, then starts the session as a password login does (renewal included). A `429`
    /// (or `slow_down`) makes every later poll wait 5 s more, and the next at least its
    /// `Retry-After`; up to three network failures or `5xx` answers in a row are ridden out.
    ///
    /// Ends with `Error::SignInExpired` once the codes run out (or coreauth says
    /// `expired_token`), and with `Error::Api` when coreauth refused the sign-in (`403` with the
    /// reason as its code, e.g. `sso_account_not_linked`, `sso_domain_mismatch`). The session
    /// may still want a second factor: see [`Client::mfa_required`] and [`Client::verify_mfa`].
    pub async fn wait(self) -> Result<Client> {
        let clock = self.builder.clock_ref().clone();
        let mut pace = Pace::new(self.interval);
        let mut wait = self.interval;
        loop {
            let now = clock.now_millis();
            if now >= self.expires_at {
                return Err(Error::SignInExpired);
            }
            // The last poll is made as the codes run out, not skipped because an interval
            // would end after it.
            let poll_at = now.saturating_add(millis(wait)).min(self.expires_at);
            clock.sleep_until(poll_at).await;
            let (answer, retry_after) = self.poll().await;
            match pace.after(answer, retry_after)? {
                Next::SignedIn(answer) => {
                    return self.builder.start(self.http, self.server, (*answer).into());
                }
                Next::Poll(after) => wait = after,
            }
        }
    }

    async fn poll(&self) -> (Result<proto::AuthenticateResponse>, Option<Duration>) {
        let body = proto::SsoDeviceTokenRequest {
            device_code: proto::SecretText::new(self.device_code.expose_secret()),
        };
        let sent = self
            .http
            .post(format!(
                "{}/user/authenticate/sso/device/token",
                self.server
            ))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let retry_after = wire::retry_after(response.headers());
                (wire::answer(response).await, retry_after)
            }
            Err(e) => (Err(e.into()), None),
        }
    }
}

/// What to do after a poll.
#[derive(Debug)]
enum Next {
    SignedIn(Box<proto::AuthenticateResponse>),
    /// Poll again after this long.
    Poll(Duration),
}

/// The poll's pace: its interval, which throttling lengthens, and the failures in a row.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    failures: u32,
}

impl Pace {
    fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(MIN_INTERVAL),
            failures: 0,
        }
    }

    /// The next step after a poll's `answer` (with its `Retry-After`), or the error that ends
    /// the sign-in.
    fn after(
        &mut self,
        answer: Result<proto::AuthenticateResponse>,
        retry_after: Option<Duration>,
    ) -> Result<Next> {
        let error = match answer {
            Ok(answer) => return Ok(Next::SignedIn(Box::new(answer))),
            Err(error) => error,
        };
        let at_least = |wait: Duration| Next::Poll(wait.max(retry_after.unwrap_or_default()));
        match &error {
            Error::Api {
                status: 400, code, ..
            } if code == "authorization_pending" => {
                self.failures = 0;
                Ok(Next::Poll(self.interval))
            }
            Error::Api {
                status: 400, code, ..
            } if code == "expired_token" => Err(Error::SignInExpired),
            Error::Api {
                status: 400, code, ..
            } if code == "slow_down" => Ok(at_least(self.slow_down())),
            Error::Api { status: 429, .. } => Ok(at_least(self.slow_down())),
            Error::Network(_) | Error::Api { status: 500.., .. }
                if self.failures < MAX_FAILURES =>
            {
                self.failures += 1;
                Ok(at_least(self.interval))
            }
            _ => Err(error),
        }
    }

    fn slow_down(&mut self) -> Duration {
        self.failures = 0;
        self.interval = (self.interval + SLOW_DOWN_STEP).min(MAX_INTERVAL);
        self.interval
    }
}

/// `value` of the answer's `field`, which the device prints for the person: no control
/// characters (a terminal would act on an escape sequence).
fn printable(field: &str, value: String) -> Result<String> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(Error::Protocol(format!(
            "the device sign-in's {field} is empty or holds control characters"
        )));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
