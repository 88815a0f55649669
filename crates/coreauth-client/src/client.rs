//! `Client`: logs in (password with an optional MFA code, an API key, or single sign-on from a
//! device: `device.rs`), sends requests with the current token, and keeps the session alive with
//! a background renewer that stops on logout and when the last clone of the client is dropped.

use std::sync::Arc;
use std::time::Duration;

use coreauth_proto as proto;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::clock::{self, Clock};
use crate::error::{EndReason, Error, Result};
use crate::renewal::{Issued, RenewalPolicy, Restriction, Session, SessionStatus};
use crate::wire;

/// The prefix of every coreauth API key.
pub const API_KEY_PREFIX: &str = "cak_";

/// A password login. `Debug` never shows the password or the code.
#[derive(Debug, Clone)]
pub struct Login {
    email: String,
    password: SecretString,
    mfa_code: Option<SecretString>,
    selected_org: Option<i64>,
}

impl Login {
    pub fn new(email: impl Into<String>, password: SecretString) -> Self {
        Self {
            email: email.into(),
            password,
            mfa_code: None,
            selected_org: None,
        }
    }

    /// The one-time code of an account with MFA (`401 mfa_required` without it).
    pub fn mfa_code(mut self, code: SecretString) -> Self {
        self.mfa_code = Some(code);
        self
    }

    /// The org to log in to; by default the user's first active membership.
    pub fn org(mut self, org_id: i64) -> Self {
        self.selected_org = Some(org_id);
        self
    }
}

/// Sets up a `Client`: where coreauth is, which clock and renewal policy to use, then how to
/// authenticate.
pub struct ClientBuilder {
    server: String,
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    policy: RenewalPolicy,
    background_renewal: bool,
    client_name: String,
    timeout: Duration,
}

impl ClientBuilder {
    fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            http: None,
            clock: clock::system(),
            policy: RenewalPolicy::default(),
            background_renewal: true,
            client_name: "coreauth-client".into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The HTTP client to use (default: a new one with `timeout`).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The clock renewals are scheduled on (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn renewal_policy(mut self, policy: RenewalPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether a background task renews the token (default on). Off, a due renewal is made by
    /// the next call that needs the token: right for short-lived tools such as a CLI.
    pub fn background_renewal(mut self, on: bool) -> Self {
        self.background_renewal = on;
        self
    }

    /// The `client` recorded with the session (default `coreauth-client`).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// Timeout of each request when the builder makes the HTTP client (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub(crate) fn clock_ref(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn client_name_ref(&self) -> &str {
        &self.client_name
    }

    pub(crate) fn parts(&self) -> Result<(reqwest::Client, String)> {
        let server = wire::server_url(&self.server)?;
        let http = match &self.http {
            Some(http) => http.clone(),
            None => wire::http_client(self.timeout)?,
        };
        Ok((http, server))
    }

    /// Logs in with a password (`POST /user/authenticate`) and starts renewing.
    pub async fn login(self, login: Login) -> Result<Client> {
        let (http, server) = self.parts()?;
        let body = proto::AuthenticateRequest {
            email: login.email,
            password: proto::SecretText::new(login.password.expose_secret()),
            selected_org: login.selected_org,
            client: Some(self.client_name.clone()),
            mfa_token_code: login
                .mfa_code
                .map(|code| proto::SecretText::new(code.expose_secret())),
        };
        let response = http
            .post(format!("{server}/user/authenticate"))
            .json(&body)
            .send()
            .await?;
        let answer: proto::AuthenticateResponse = wire::answer(response).await?;
        self.start(http, server, answer.into())
    }

    /// Goes on with a session token obtained earlier (a CLI's stored session), `expires_at` as
    /// coreauth sent it. Nothing is sent until the token is needed.
    pub fn resume(self, token: SecretString, expires_at: i64) -> Result<Client> {
        let (http, server) = self.parts()?;
        let issued = Issued {
            token,
            expires_at,
            user: None,
            restriction: Restriction::None,
        };
        self.start(http, server, issued)
    }

    /// Authenticates with an API key (`cak_…`), which is sent as it is and never renewed.
    pub fn api_key(self, key: SecretString) -> Result<Client> {
        if !key.expose_secret().starts_with(API_KEY_PREFIX) {
            return Err(Error::Config(format!(
                "an API key starts with {API_KEY_PREFIX}"
            )));
        }
        let (http, server) = self.parts()?;
        let session = Arc::new(Session::for_api_key(http, server, self.clock, key));
        Ok(Client::from_parts(session, None))
    }

    /// A client for an issued session token (a password login's, a device sign-in's).
    pub(crate) fn start(
        self,
        http: reqwest::Client,
        server: String,
        issued: Issued,
    ) -> Result<Client> {
        let session = Arc::new(Session::for_token(
            http,
            server,
            self.clock,
            self.policy,
            issued,
        ));
        let renewer = if self.background_renewal {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|_| Error::Config("background renewal needs a tokio runtime".into()))?;
            Some(runtime.spawn(session.clone().renew_in_background()))
        } else {
            None
        };
        Ok(Client::from_parts(session, renewer))
    }
}

/// Stops the renewer when the last clone of a `Client` goes.
struct Renewer(Option<JoinHandle<()>>);

impl Drop for Renewer {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A coreauth session (or API key) and what it can call. Cheap to clone; clones share the
/// session, its one renewer and every renewal.
#[derive(Clone)]
pub struct Client {
    session: Arc<Session>,
    _renewer: Arc<Renewer>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.session.server)
            .field("status", &self.session.status())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn builder(server: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(server)
    }

    fn from_parts(session: Arc<Session>, renewer: Option<JoinHandle<()>>) -> Self {
        Self {
            session,
            _renewer: Arc::new(Renewer(renewer)),
        }
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.session.server
    }

    /// A token good for at least the policy's `min_validity`, renewed first when due.
    pub async fn token(&self) -> Result<SecretString> {
        self.session.token().await
    }

    pub fn status(&self) -> SessionStatus {
        self.session.status()
    }

    /// The user as of the last login or renewal (`None` for an API key or a resumed session
    /// not yet renewed).
    pub fn user(&self) -> Option<proto::SessionUser> {
        self.session.user()
    }

    /// The session waits for its second factor: a single sign-on of an account with TOTP. Its
    /// token is good for nothing but [`Client::verify_mfa`], and is not renewed until then.
    pub fn mfa_required(&self) -> bool {
        self.session.restriction() == Restriction::MfaChallenge
    }

    /// The org requires a second factor the user has not enrolled: until `POST
    /// /user/mfa/totp/confirm`, only the enrolment calls, `/user/me`, renewal and logout work.
    pub fn mfa_enrollment_required(&self) -> bool {
        self.session.restriction() == Restriction::MfaEnrollment
    }

    /// Answers the second factor of a session that waits for one ([`Client::mfa_required`]):
    /// `POST /user/mfa/verify {code}` with a current TOTP code or an unused recovery code. The
    /// complete session's new token replaces the challenged one. A wrong or reused code is
    /// `Error::Api` with code `mfa_invalid`, and the session still waits: try another.
    pub async fn verify_mfa(&self, code: SecretString) -> Result<()> {
        self.session.answer_challenge(&code).await
    }

    /// Waits until the session ends (logout, revocation, expiry), with background renewal on.
    pub async fn ended(&self) -> EndReason {
        self.session.ended().await
    }

    /// A request to `path` (starting with `/`) with the current token attached, for calls the
    /// typed helpers do not cover. Its answer is the caller's to read: unlike the helpers, a
    /// `403 unauthenticated` does not end the session here.
    pub async fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let token = self.token().await?;
        Ok(self
            .session
            .http
            .request(method, format!("{}{path}", self.session.server))
            .bearer_auth(token.expose_secret()))
    }

    /// Sends `body` (if any) to `path` and reads the answer as `T` (`()` for an empty one).
    /// A `403 unauthenticated` means coreauth no longer honours the session: it ends, and this
    /// and every later call return `Error::SessionEnded(EndReason::Revoked)`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let mut request = self.request(method, path).await?;
        if let Some(body) = body {
            request = request.json(body);
        }
        match wire::answer(request.send().await?).await {
            Err(e) if e.is_unauthenticated() => {
                self.session.end(EndReason::Revoked);
                Err(Error::SessionEnded(EndReason::Revoked))
            }
            other => other,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::POST, path, Some(&to_json(body)?)).await
    }

    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::PUT, path, Some(&to_json(body)?)).await
    }

    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::PATCH, path, Some(&to_json(body)?)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::DELETE, path, None).await
    }

    /// `GET /user/me`.
    pub async fn whoami(&self) -> Result<proto::Me> {
        self.get("/user/me").await
    }

    /// `POST /authheader/add`: the full key is in the answer, this once.
    pub async fn add_api_key(&self, name: &str) -> Result<proto::AuthHeaderCreated> {
        let body = proto::AddAuthHeaderRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        self.post("/authheader/add", &body).await
    }

    /// `GET /authheader/list`.
    pub async fn api_keys(&self) -> Result<Vec<proto::AuthHeader>> {
        self.get("/authheader/list").await
    }

    /// `POST /authheader/delete {id}`.
    pub async fn delete_api_key(&self, id: &str) -> Result<()> {
        let body = proto::DeleteAuthHeaderRequest {
            text: None,
            id: Some(id.to_owned()),
        };
        let _: proto::MessageBody = self.post("/authheader/delete", &body).await?;
        Ok(())
    }

    /// `POST /token/introspect`: what coreauth says about `token` right now.
    pub async fn introspect(&self, token: &str) -> Result<proto::IntrospectResponse> {
        let body = proto::IntrospectRequest {
            token: proto::SecretText::new(token),
            token_type_hint: None,
        };
        self.post("/token/introspect", &body).await
    }

    /// Ends the session at coreauth (`POST /user/authenticate/logout`) and stops renewing.
    /// A session that had already ended is not an error. An API key has no session: delete it.
    pub async fn logout(&self) -> Result<()> {
        if matches!(
            self.status(),
            SessionStatus::Active {
                expires_at: None,
                ..
            }
        ) {
            return Err(Error::Config(
                "an API key has no session to log out of; delete the key instead".into(),
            ));
        }
        let token = match self.session.token().await {
            Ok(token) => token,
            Err(Error::SessionEnded(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let response = self
            .session
            .http
            .post(format!("{}/user/authenticate/logout", self.session.server))
            .bearer_auth(token.expose_secret())
            .send()
            .await?;
        let result: Result<()> = wire::answer(response).await;
        match result {
            Ok(()) => {
                self.session.end(EndReason::LoggedOut);
                Ok(())
            }
            Err(e) if e.is_unauthenticated() => {
                self.session.end(EndReason::Revoked);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<serde_json::Value> {
    serde_json::to_value(body).map_err(|e| Error::Config(format!("request body: {e}")))
}
