//! OAuth 2.0 client credentials (RFC 6749 §4.4): a service account, authenticated by its id and
//! one of its API keys, gets a short-lived access token for tools that expect an OAuth client.
//! The token is a session token of the service account (a JWT on coreauth's session keys,
//! verifiable against its JWKS) whose session is its token's life, that cannot be renewed, and
//! that carries the scopes granted: the subset asked for of the key's.

use time::OffsetDateTime;

use super::{Auth, CLIENT_CREDENTIALS, ClientGrant, Opening};
use crate::domain::apikey::looks_like_key;
use crate::domain::error::DomainError;
use crate::domain::origin::RequestOrigin;
use crate::domain::scopes::Scopes;

/// What a client sent to the token endpoint.
#[derive(Debug)]
pub struct ClientTokenRequest {
    pub client_id: String,
    /// One of the service account's API keys.
    pub client_secret: String,
    /// Space-separated scope names; none: the key's own.
    pub scope: Option<String>,
    pub origin: RequestOrigin,
}

/// Why the token endpoint refuses a client (RFC 6749 §5.2), as its `error` codes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthRefusal {
    /// Unknown client, wrong or dead secret, or a secret of another client.
    InvalidClient,
    /// Not a service account: a person's key is used as it is.
    UnauthorizedClient,
    /// A scope unknown, or beyond the key's.
    InvalidScope,
}

impl OAuthRefusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidClient => "invalid_client",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::InvalidScope => "invalid_scope",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::InvalidClient => "the client id or secret is wrong, or the client is disabled",
            Self::UnauthorizedClient => {
                "only service accounts use client credentials; a person's API key is sent as it is"
            }
            Self::InvalidScope => "a scope is unknown or beyond the key's own",
        }
    }
}

/// A refusal, or a failure of coreauth's own (answered as any other route answers it).
#[derive(Debug)]
pub enum ClientTokenError {
    Refused(OAuthRefusal),
    Failed(DomainError),
}

impl From<DomainError> for ClientTokenError {
    fn from(error: DomainError) -> Self {
        Self::Failed(error)
    }
}

/// An issued access token.
#[derive(Debug)]
pub struct ClientToken {
    pub access_token: String,
    /// Seconds from now.
    pub expires_in: i64,
    pub scope: String,
}

impl Auth {
    pub async fn client_credentials(
        &self,
        request: ClientTokenRequest,
        now: OffsetDateTime,
    ) -> Result<ClientToken, ClientTokenError> {
        let invalid_client = || ClientTokenError::Refused(OAuthRefusal::InvalidClient);
        if !looks_like_key(&request.client_secret) {
            return Err(invalid_client());
        }
        let key = match self
            .keys
            .authenticate(&request.client_secret, request.origin.clone(), now)
            .await
        {
            Ok(key) => key,
            Err(DomainError::Unauthenticated) => return Err(invalid_client()),
            Err(other) => return Err(other.into()),
        };
        // The id is public (a uuid): no need to hide how it compares.
        if *key.user_uuid != *request.client_id {
            return Err(invalid_client());
        }
        let user = self
            .store
            .user_by_id(key.user_id)
            .await
            .map_err(DomainError::from)?
            .ok_or_else(invalid_client)?;
        if !user.is_service {
            return Err(ClientTokenError::Refused(OAuthRefusal::UnauthorizedClient));
        }
        let scopes = match request.scope.as_deref().map(str::split_whitespace) {
            Some(names) => {
                let names: Vec<&str> = names.collect();
                let refused = ClientTokenError::Refused(OAuthRefusal::InvalidScope);
                let Ok(asked) = Scopes::parse(&names) else {
                    return Err(refused);
                };
                if !asked.within(key.scopes) {
                    return Err(refused);
                }
                asked
            }
            None => key.scopes,
        };
        let opening = Opening {
            method: CLIENT_CREDENTIALS,
            client: Some(CLIENT_CREDENTIALS.to_owned()),
            origin: request.origin,
            restriction: None,
            settles: Default::default(),
            grant: Some(ClientGrant {
                client_id: request.client_id,
                scopes,
            }),
        };
        let issued = self
            .open_session(user, key.org_id, key.role, opening, now)
            .await?;
        Ok(ClientToken {
            // Both in whole seconds, as the token's `exp` is.
            expires_in: issued.expires_at / 1000 - now.unix_timestamp(),
            access_token: issued.token,
            scope: scopes.to_stored(),
        })
    }
}
