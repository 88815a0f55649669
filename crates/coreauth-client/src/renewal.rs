//! The session behind a `Client`, and the task that keeps it alive.
//!
//! One `watch` channel holds the current token and when it is due for renewal. Callers read it
//! without waiting; the renewer task sleeps until the next renewal attempt (on the injected
//! clock) or until the state changes. Every renewal, whoever starts it, runs under one mutex
//! and is tied to the token generation it renews, so concurrent callers share one renewal and a
//! renewal that lands after a logout cannot bring the session back.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coreauth_proto::{AuthenticateResponse, SessionUser};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, watch};

use crate::clock::Clock;
use crate::error::{EndReason, Error, Result};
use crate::wire;

/// When and how a session token is renewed.
#[derive(Debug, Clone)]
pub struct RenewalPolicy {
    /// Renew when this fraction of the token's lifetime is left (default 1/3).
    pub renew_when_left: f64,
    /// Renew up to this further fraction of the lifetime earlier, at random, so clients started
    /// together do not renew together (default 0.1).
    pub jitter: f64,
    /// A token with less than this left is never sent, not even to renew it (default 10 s;
    /// at most a tenth of the lifetime, for short-lived tokens).
    pub min_validity: Duration,
    /// Back-off after a failed renewal (network error, 5xx, 429): doubles from `retry_initial`
    /// up to `retry_max`, each wait drawn between half and all of it.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Attempts per token; after that the token is used until it runs out, and the session then
    /// ends with `EndReason::RenewalFailed`.
    pub max_attempts: u32,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            renew_when_left: 1.0 / 3.0,
            jitter: 0.1,
            min_validity: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A number in [0, 1) from the operating system; 0.5 if it has none to give.
fn random_unit() -> f64 {
    getrandom::u64().map_or(0.5, |n| (n >> 11) as f64 / (1u64 << 53) as f64)
}

impl RenewalPolicy {
    /// The last instant `lifetime`'s token may be sent.
    fn send_until(&self, lifetime: Lifetime) -> i64 {
        let margin = millis(self.min_validity).min(lifetime.length() / 10);
        lifetime.expires - margin
    }

    /// When to renew `lifetime`'s token; `random` in [0, 1) picks the jitter.
    fn renew_at(&self, lifetime: Lifetime, random: f64) -> i64 {
        let left = self.renew_when_left.clamp(0.0, 1.0);
        let jitter = self.jitter.clamp(0.0, 1.0 - left) * random.clamp(0.0, 1.0);
        let length = lifetime.length() as f64;
        lifetime.expires - (length * (left + jitter)) as i64
    }

    /// How long to wait after the `failures`-th failed attempt in a row.
    fn retry_delay(&self, failures: u32, random: f64) -> i64 {
        let doublings = failures.saturating_sub(1).min(30);
        let base = millis(self.retry_initial)
            .saturating_mul(1 << doublings)
            .min(millis(self.retry_max))
            .max(1);
        base / 2 + ((base / 2) as f64 * random.clamp(0.0, 1.0)) as i64
    }
}

/// When a token was issued and when it expires, on the client's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub issued: i64,
    pub expires: i64,
}

impl Lifetime {
    /// The lifetime of `token` whose `expiresAt` is `expires_at` (server time), received at
    /// `received` (client time). Its length is `exp - iat` from the token; it ends at the
    /// earlier of `expires_at` and `received + length`, so a client clock that runs behind the
    /// server's cannot make the client think a token lives longer than it does.
    pub(crate) fn of(token: &str, expires_at: i64, received: i64) -> Self {
        let length = issued_at_millis(token)
            .map(|iat| expires_at.saturating_sub(iat))
            .filter(|length| *length > 0)
            .unwrap_or_else(|| expires_at.saturating_sub(received))
            .max(0);
        let expires = expires_at.min(received.saturating_add(length));
        Self {
            issued: expires - length,
            expires,
        }
    }

    fn length(self) -> i64 {
        (self.expires - self.issued).max(0)
    }
}

/// The `iat` of a JWT in milliseconds, read without checking the signature: only to time the
/// renewal of a token this client was just given by its own server.
fn issued_at_millis(token: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct IssuedAt {
        iat: i64,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<IssuedAt>(&bytes)
        .ok()?
        .iat
        .checked_mul(1000)
}

/// What a caller or the renewer can see of a session, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    Active {
        /// The token's `expiresAt` (Unix epoch ms); `None` for an API key.
        expires_at: Option<i64>,
        /// When the next renewal attempt is due (client clock, epoch ms); `None` when none will
        /// be made (an API key, a session at its maximum lifetime, attempts used up).
        renew_at: Option<i64>,
    },
    Ended(EndReason),
}

/// What a session's token is good for until its user does one more thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Restriction {
    #[default]
    None,
    /// A single sign-on of an account with TOTP: the token is good only for
    /// `POST /user/mfa/verify`, and is not renewed.
    MfaChallenge,
    /// The org requires a second factor the user has not enrolled: only the enrolment calls,
    /// `/user/me`, renewal and logout.
    MfaEnrollment,
}

impl Restriction {
    pub(crate) fn of(answer: &AuthenticateResponse) -> Self {
        if answer.mfa_required {
            Self::MfaChallenge
        } else if answer.mfa_enrollment_required {
            Self::MfaEnrollment
        } else {
            Self::None
        }
    }
}

/// A session token as coreauth issued it (a login, renewal or verification answer), or as a
/// caller kept it.
pub(crate) struct Issued {
    pub token: SecretString,
    /// `expiresAt` as the server sent it.
    pub expires_at: i64,
    pub user: Option<SessionUser>,
    pub restriction: Restriction,
}

impl From<AuthenticateResponse> for Issued {
    fn from(answer: AuthenticateResponse) -> Self {
        Self {
            restriction: Restriction::of(&answer),
            token: SecretString::from(answer.token),
            expires_at: answer.expires_at,
            user: Some(answer.user),
        }
    }
}

/// The credential in use and its schedule.
struct Current {
    token: SecretString,
    /// Counts renewals: a renewal result is only installed over the token it renewed.
    generation: u64,
    /// `expiresAt` as the server sent it; `None` for an API key.
    expires_at: Option<i64>,
    /// The last instant the token may be sent (`i64::MAX` for an API key).
    send_until: i64,
    /// When to try renewing next (`i64::MAX`: never).
    next_attempt_at: i64,
    failures: u32,
    last_failure: Option<String>,
    user: Option<SessionUser>,
    restriction: Restriction,
}

impl Current {
    /// How the session ends when this token runs out.
    fn run_out_reason(&self) -> EndReason {
        self.last_failure
            .clone()
            .map_or(EndReason::Expired, EndReason::RenewalFailed)
    }
}

enum State {
    Active(Box<Current>),
    Ended(EndReason),
}

/// What the current token is good for at some instant.
enum Usable {
    Ready(SecretString),
    /// Still good, and its renewal is due.
    Due(SecretString, u64),
    /// Too close to its expiry to be sent.
    RunOut(u64),
    Ended(EndReason),
}

pub(crate) struct Session {
    pub(crate) http: reqwest::Client,
    pub(crate) server: String,
    pub(crate) clock: Arc<dyn Clock>,
    policy: RenewalPolicy,
    state: watch::Sender<State>,
    /// Held for the length of one renewal attempt.
    renewing: Mutex<()>,
}

impl Session {
    /// A session token, received now.
    pub(crate) fn for_token(
        http: reqwest::Client,
        server: String,
        clock: Arc<dyn Clock>,
        policy: RenewalPolicy,
        issued: Issued,
    ) -> Self {
        let received = clock.now_millis();
        let current = schedule(&policy, issued, received, 0);
        Self {
            http,
            server,
            clock,
            policy,
            state: watch::Sender::new(State::Active(Box::new(current))),
            renewing: Mutex::new(()),
        }
    }

    /// An API key: sent as it is, never renewed.
    pub(crate) fn for_api_key(
        http: reqwest::Client,
        server: String,
        clock: Arc<dyn Clock>,
        key: SecretString,
    ) -> Self {
        let current = Current {
            token: key,
            generation: 0,
            expires_at: None,
            send_until: i64::MAX,
            next_attempt_at: i64::MAX,
            failures: 0,
            last_failure: None,
            user: None,
            restriction: Restriction::None,
        };
        Self {
            http,
            server,
            clock,
            policy: RenewalPolicy::default(),
            state: watch::Sender::new(State::Active(Box::new(current))),
            renewing: Mutex::new(()),
        }
    }

    fn usable(&self, now: i64) -> Usable {
        match &*self.state.borrow() {
            State::Ended(reason) => Usable::Ended(reason.clone()),
            State::Active(current) if now >= current.send_until => {
                Usable::RunOut(current.generation)
            }
            State::Active(current) if now >= current.next_attempt_at => {
                Usable::Due(current.token.clone(), current.generation)
            }
            State::Active(current) => Usable::Ready(current.token.clone()),
        }
    }

    pub(crate) fn status(&self) -> SessionStatus {
        let now = self.clock.now_millis();
        match &*self.state.borrow() {
            State::Ended(reason) => SessionStatus::Ended(reason.clone()),
            State::Active(current) if now >= current.send_until => {
                SessionStatus::Ended(current.run_out_reason())
            }
            State::Active(current) => SessionStatus::Active {
                expires_at: current.expires_at,
                renew_at: (current.next_attempt_at != i64::MAX).then_some(current.next_attempt_at),
            },
        }
    }

    pub(crate) fn user(&self) -> Option<SessionUser> {
        match &*self.state.borrow() {
            State::Active(current) => current.user.clone(),
            State::Ended(_) => None,
        }
    }

    /// What the current token is limited to (`None` once the session has ended).
    pub(crate) fn restriction(&self) -> Restriction {
        match &*self.state.borrow() {
            State::Active(current) => current.restriction,
            State::Ended(_) => Restriction::None,
        }
    }

    /// The token to send now. A due renewal is made first unless one is already in flight, in
    /// which case the current token, still good for at least `min_validity`, is handed out.
    pub(crate) async fn token(&self) -> Result<SecretString> {
        // Each round returns or moves the state on (a new token, a later attempt, or the end),
        // so two rounds suffice; the third is a margin against a renewal landing in between.
        for _ in 0..3 {
            match self.usable(self.clock.now_millis()) {
                Usable::Ready(token) => return Ok(token),
                Usable::Ended(reason) => return Err(Error::SessionEnded(reason)),
                Usable::RunOut(generation) => self.run_out(generation),
                Usable::Due(token, generation) => match self.renewing.try_lock() {
                    Ok(_renewing) => self.attempt_renewal(generation).await,
                    Err(_) => return Ok(token),
                },
            }
        }
        match self.usable(self.clock.now_millis()) {
            Usable::Ready(token) | Usable::Due(token, _) => Ok(token),
            Usable::Ended(reason) => Err(Error::SessionEnded(reason)),
            Usable::RunOut(_) => Err(Error::SessionEnded(EndReason::Expired)),
        }
    }

    /// Ends the session (logout, or coreauth refused the token), whatever token is current.
    pub(crate) fn end(&self, reason: EndReason) {
        self.state.send_if_modified(|state| match state {
            State::Active(_) => {
                tracing::info!(%reason, "coreauth session ended");
                *state = State::Ended(reason);
                true
            }
            State::Ended(_) => false,
        });
    }

    /// Ends the session because token `generation` ran out before a renewal replaced it.
    fn run_out(&self, generation: u64) {
        self.state.send_if_modified(|state| match state {
            State::Active(current) if current.generation == generation => {
                let reason = current.run_out_reason();
                tracing::warn!(%reason, "coreauth session ended");
                *state = State::Ended(reason);
                true
            }
            _ => false,
        });
    }

    /// One renewal attempt of token `generation`; the caller holds `renewing`.
    async fn attempt_renewal(&self, generation: u64) {
        let token = match self.usable(self.clock.now_millis()) {
            Usable::Due(token, current) if current == generation => token,
            Usable::RunOut(current) if current == generation => return self.run_out(generation),
            _ => return,
        };
        let result = self.request_renewal(&token).await;
        let received = self.clock.now_millis();
        let policy = &self.policy;
        self.state.send_if_modified(|state| {
            let State::Active(current) = state else {
                return false;
            };
            if current.generation != generation {
                return false;
            }
            match result {
                Ok(answer) => {
                    let at_cap = current
                        .expires_at
                        .is_some_and(|old| answer.expires_at <= old);
                    let mut next = schedule(policy, answer.into(), received, generation + 1);
                    if at_cap {
                        // The session reached its maximum lifetime: renewing gives nothing more.
                        next.next_attempt_at = i64::MAX;
                    }
                    tracing::debug!(expires_at = next.expires_at, "coreauth token renewed");
                    **current = next;
                }
                Err(e) if e.is_unauthenticated() => {
                    tracing::info!("coreauth refused to renew: the session was revoked");
                    *state = State::Ended(EndReason::Revoked);
                }
                // Anything but a server-side failure or a throttle will not change on retrying.
                Err(Error::Api { status, code, .. }) if status < 500 && status != 429 => {
                    tracing::warn!(status, %code, "coreauth refused to renew");
                    *state = State::Ended(EndReason::Refused { status, code });
                }
                Err(e) => {
                    current.failures += 1;
                    current.next_attempt_at = if current.failures >= policy.max_attempts {
                        i64::MAX
                    } else {
                        received + policy.retry_delay(current.failures, random_unit())
                    };
                    tracing::warn!(
                        failures = current.failures,
                        "renewing the coreauth token failed: {e}"
                    );
                    current.last_failure = Some(e.to_string());
                }
            }
            true
        });
    }

    /// Answers the second factor the session waits for (`POST /user/mfa/verify {code}`); the
    /// complete session's token replaces the challenged one and is renewed from then on. A
    /// wrong code (`401 mfa_invalid`) leaves the session as it was, to try again.
    pub(crate) async fn answer_challenge(&self, code: &SecretString) -> Result<()> {
        let _renewing = self.renewing.lock().await;
        let (token, generation) = match self.usable(self.clock.now_millis()) {
            Usable::Ended(reason) => return Err(Error::SessionEnded(reason)),
            Usable::RunOut(generation) => {
                self.run_out(generation);
                return Err(Error::SessionEnded(self.end_reason()));
            }
            Usable::Ready(token) | Usable::Due(token, _) => (token, self.generation()),
        };
        let body = coreauth_proto::TotpCode {
            code: coreauth_proto::SecretText::new(code.expose_secret()),
        };
        let response = self
            .http
            .post(format!("{}/user/mfa/verify", self.server))
            .bearer_auth(token.expose_secret())
            .json(&body)
            .send()
            .await?;
        let answer: AuthenticateResponse = match wire::answer(response).await {
            Ok(answer) => answer,
            Err(e) if e.is_unauthenticated() => {
                self.end(EndReason::Revoked);
                return Err(Error::SessionEnded(EndReason::Revoked));
            }
            Err(e) => return Err(e),
        };
        let received = self.clock.now_millis();
        let policy = &self.policy;
        let installed = self.state.send_if_modified(|state| match state {
            State::Active(current) if current.generation == generation => {
                **current = schedule(policy, answer.into(), received, generation + 1);
                true
            }
            _ => false,
        });
        if installed {
            Ok(())
        } else {
            // Logged out (or ended otherwise) while the code was on its way.
            Err(Error::SessionEnded(self.end_reason()))
        }
    }

    fn generation(&self) -> u64 {
        match &*self.state.borrow() {
            State::Active(current) => current.generation,
            State::Ended(_) => u64::MAX,
        }
    }

    fn end_reason(&self) -> EndReason {
        match &*self.state.borrow() {
            State::Ended(reason) => reason.clone(),
            State::Active(current) => current.run_out_reason(),
        }
    }

    async fn request_renewal(&self, token: &SecretString) -> Result<AuthenticateResponse> {
        let response = self
            .http
            .get(format!("{}/user/authenticate", self.server))
            .bearer_auth(token.expose_secret())
            .send()
            .await?;
        wire::answer(response).await
    }

    /// The renewer: sleeps until the next attempt or the token's last usable instant, wakes
    /// early when the state changes, and returns once the session has ended.
    pub(crate) async fn renew_in_background(self: Arc<Self>) {
        let mut changes = self.state.subscribe();
        loop {
            let wake_at = match &*changes.borrow_and_update() {
                State::Ended(_) => return,
                State::Active(current) => current.next_attempt_at.min(current.send_until),
            };
            tokio::select! {
                () = self.clock.sleep_until(wake_at) => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
            match self.usable(self.clock.now_millis()) {
                Usable::Due(_, generation) => {
                    let _renewing = self.renewing.lock().await;
                    self.attempt_renewal(generation).await;
                }
                Usable::RunOut(generation) => self.run_out(generation),
                Usable::Ready(_) | Usable::Ended(_) => {}
            }
        }
    }

    /// Waits until the session ends.
    pub(crate) async fn ended(&self) -> EndReason {
        let mut changes = self.state.subscribe();
        let ended = changes
            .wait_for(|state| matches!(state, State::Ended(_)))
            .await;
        match ended.as_deref() {
            Ok(State::Ended(reason)) => reason.clone(),
            _ => EndReason::LoggedOut,
        }
    }
}

/// The schedule of a freshly received token. One waiting for its second factor cannot be
/// renewed (coreauth would refuse it with `mfa_required`): it is used until answered or run out.
fn schedule(policy: &RenewalPolicy, issued: Issued, received: i64, generation: u64) -> Current {
    let Issued {
        token,
        expires_at,
        user,
        restriction,
    } = issued;
    let lifetime = Lifetime::of(token.expose_secret(), expires_at, received);
    let next_attempt_at = match restriction {
        Restriction::MfaChallenge => i64::MAX,
        Restriction::None | Restriction::MfaEnrollment => policy.renew_at(lifetime, random_unit()),
    };
    Current {
        token,
        generation,
        expires_at: Some(expires_at),
        send_until: policy.send_until(lifetime),
        next_attempt_at,
        failures: 0,
        last_failure: None,
        user,
        restriction,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
