//! The provider's side of a callback: the authorization code exchanged (with the PKCE
//! verifier), the ID token verified (signature against the provider's keys, fetched again once
//! when it names a key we have not seen, issuer, audience, expiry, nonce), and its claims
//! gathered for the connection's mapping: the standard ones openidconnect reads, and every
//! other one (`upn`, `unique_name`, `groups`, `oid`, `tid`, …) as the provider sent it.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenClaims,
    IdTokenFields, Nonce, OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl,
    SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, TokenResponse,
    UserInfoClaims,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{Sso, failure, sealed_binding};
use crate::domain::error::{DomainError, DomainResult, SsoFailure};
use crate::store::{SsoConnectionRecord, SsoLoginRecord};

/// The claims openidconnect has no field for, kept as sent.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct OtherClaims {
    #[serde(flatten)]
    claims: Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A client for one connection's provider, with its authorization and token endpoints.
pub(super) type ProviderClient = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdFields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Who the provider says signed in.
pub(super) struct Assertion {
    pub subject: String,
    /// Every claim, standard ones under their standard names.
    pub claims: Map<String, Value>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The provider authenticated with more than one factor (`amr` holds `mfa`, RFC 8176).
    pub multi_factor: bool,
}

type Claims = IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// The standard claims the mapping may name, beside the others.
fn gather(standard: &Claims, other: &OtherClaims) -> Map<String, Value> {
    let mut claims = other.claims.clone();
    if let Some(email) = standard.email() {
        claims.insert("email".into(), Value::String(email.as_str().to_owned()));
    }
    if let Some(verified) = standard.email_verified() {
        claims.insert("email_verified".into(), Value::Bool(verified));
    }
    if let Some(name) = standard.preferred_username() {
        claims.insert(
            "preferred_username".into(),
            Value::String(name.as_str().to_owned()),
        );
    }
    claims
}

impl Sso {
    pub(super) fn client(
        &self,
        connection: &SsoConnectionRecord,
        metadata: CoreProviderMetadata,
    ) -> DomainResult<ProviderClient> {
        let secret = self.secrets.open(
            &connection.sealed_client_secret,
            &sealed_binding(connection.org_id),
        )?;
        let secret = String::from_utf8(secret.plaintext.to_vec())
            .map_err(|_| DomainError::internal("stored client secret is not text"))?;
        let redirect = RedirectUrl::new(self.callback_url()).map_err(DomainError::internal)?;
        Ok(ProviderClient::from_provider_metadata(
            metadata,
            ClientId::new(connection.client_id.clone()),
            Some(ClientSecret::new(secret)),
        )
        .set_redirect_uri(redirect))
    }

    /// Exchanges the code and verifies the ID token it brings.
    pub(super) async fn assertion(
        &self,
        connection: &SsoConnectionRecord,
        login: &SsoLoginRecord,
        code: String,
        now: OffsetDateTime,
    ) -> DomainResult<Assertion> {
        let verifier = self.secrets.open(
            &login.sealed_pkce_verifier,
            &format!("sso-login:{}", login.state),
        )?;
        let verifier = String::from_utf8(verifier.plaintext.to_vec())
            .map_err(|_| DomainError::internal("stored PKCE verifier is not text"))?;
        let metadata = self.provider(&connection.issuer, false, now).await?;
        let oidc = self.client(connection, metadata)?;
        let tokens = oidc
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| failure(SsoFailure::IdpUnreachable(e.to_string())))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(self.providers.http())
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    failure(SsoFailure::ProviderError(r.error().to_string()))
                }
                other => failure(SsoFailure::IdpUnreachable(other.to_string())),
            })?;
        let id_token = tokens
            .id_token()
            .ok_or(failure(SsoFailure::InvalidToken))?
            .clone();
        let nonce = Nonce::new(login.nonce.clone());
        let claims: Claims = match id_token.claims(&oidc.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // A key we have not seen: the provider rotated. Fetch its keys again, once.
                let fresh = self.client(
                    connection,
                    self.provider(&connection.issuer, true, now).await?,
                )?;
                id_token
                    .claims(&fresh.id_token_verifier(), &nonce)
                    .map_err(|_| failure(SsoFailure::InvalidToken))?
                    .clone()
            }
            Err(_) => return Err(failure(SsoFailure::InvalidToken)),
        };
        let mut gathered = gather(&claims, claims.additional_claims());
        let has_email = connection
            .claims
            .email_claims
            .iter()
            .any(|name| gathered.get(name).is_some_and(Value::is_string));
        if !has_email && oidc.user_info_url().is_some() {
            // Some providers put the email in userinfo only. Its claims fill in what the ID
            // token lacks, never replace what it holds.
            let info: UserInfoClaims<OtherClaims, CoreGenderClaim> = oidc
                .user_info(
                    tokens.access_token().clone(),
                    Some(claims.subject().clone()),
                )
                .map_err(|e| failure(SsoFailure::IdpUnreachable(e.to_string())))?
                .request_async(self.providers.http())
                .await
                .map_err(|e| failure(SsoFailure::IdpUnreachable(e.to_string())))?;
            let mut more = info.additional_claims().claims.clone();
            if let Some(email) = info.email() {
                more.insert("email".into(), Value::String(email.as_str().to_owned()));
            }
            if let Some(verified) = info.email_verified() {
                more.insert("email_verified".into(), Value::Bool(verified));
            }
            if let Some(name) = info.preferred_username() {
                more.insert(
                    "preferred_username".into(),
                    Value::String(name.as_str().to_owned()),
                );
            }
            for (name, value) in more {
                gathered.entry(name).or_insert(value);
            }
        }
        let multi_factor = claims
            .auth_method_refs()
            .is_some_and(|methods| methods.iter().any(|m| m.as_str() == "mfa"));
        Ok(Assertion {
            subject: claims.subject().as_str().to_owned(),
            claims: gathered,
            given_name: claims
                .given_name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            family_name: claims
                .family_name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            multi_factor,
        })
    }
}
