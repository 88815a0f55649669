//! Session tokens: EdDSA-signed JWTs. The signature proves who issued a token; it is never enough
//! on its own: `Auth::authenticate` still checks the session behind `sid` on every call.
//!
//! Verification pins everything an attacker could choose (RFC 8725): the algorithm (EdDSA only,
//! so `none` and HS256-with-the-public-key fail), the key (`kid` must name one of ours; embedded
//! `jwk`/`jku`/`x5u`/`x5c` headers are refused), `typ`, `iss` and `aud`. Expiry is checked against
//! the injected clock rather than jsonwebtoken's system time, so tests can move it.

pub use crate::store::records::StoredSigningKey;

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::clock::to_millis;
use super::error::{DomainError, DomainResult};
use crate::cache::token_memo::{self, VerifiedToken, VerifiedTokens};

pub use coreauth_proto::{SESSION_AUDIENCE, SESSION_TOKEN_TYPE, SessionClaims};
const MAX_TOKEN_LEN: usize = 4096;
/// Tolerated clock skew for `iat` in the future (several instances, several clocks).
const IAT_LEEWAY_SECS: i64 = 60;

impl StoredSigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate(now: OffsetDateTime) -> DomainResult<Self> {
        let mut seed = Zeroizing::new(vec![0u8; 32]);
        getrandom::fill(&mut seed).map_err(DomainError::internal)?;
        let mut kid_bytes = [0u8; 12];
        getrandom::fill(&mut kid_bytes).map_err(DomainError::internal)?;
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(kid_bytes),
            algorithm: "EdDSA".into(),
            seed,
            created_at: to_millis(now),
            activates_at: to_millis(now),
            retired_at: None,
        })
    }
}

struct SigningKey {
    kid: String,
    /// The key itself, kept expanded (jsonwebtoken's `EncodingKey` re-parses its DER and derives
    /// the public key on every signature, which doubles the cost of issuing a token), in
    /// AWS-LC's form, which signs faster than ed25519-dalek here (bench/README.md), and every
    /// login and renewal signs. The signatures are the same (Ed25519 is deterministic):
    /// `tokens_are_what_jsonwebtoken_would_sign` compares them with jsonwebtoken's, which
    /// signs with ed25519-dalek.
    signing: aws_lc_rs::signature::Ed25519KeyPair,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_x: String,
    /// The session tokens' header (`alg`, `typ`, `kid`), the same for every token this key
    /// signs, kept encoded.
    session_header: String,
}

impl SigningKey {
    fn from_stored(stored: &StoredSigningKey) -> DomainResult<Self> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let seed: [u8; 32] = stored
            .seed
            .as_slice()
            .try_into()
            .map_err(|_| DomainError::internal("signing key seed is not 32 bytes"))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| DomainError::internal(format!("signing key: {e}")))?;
        let public = key.verifying_key().to_bytes();
        let public_x = URL_SAFE_NO_PAD.encode(public);
        let signing =
            aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(&seed, &public)
                .map_err(|e| DomainError::internal(format!("signing key: {e}")))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(stored.kid.clone());
        header.typ = Some(SESSION_TOKEN_TYPE.into());
        let session_header =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(DomainError::internal)?);
        Ok(Self {
            kid: stored.kid.clone(),
            session_header,
            signing,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&public_x)
                .map_err(|e| DomainError::internal(format!("verifying key: {e}")))?,
            public_x,
        })
    }
}

/// The key that signs integration tokens in place of a session key: derived from it one way
/// (HMAC-SHA-256 of its seed), so it needs no storage of its own, rotates with it, and knowing
/// it reveals nothing of the session key. Its `kid` is its own, and it is published apart from
/// the session keys (`integration_jwks`), so nothing that trusts coreauth's session JWKS can be
/// handed an integration token, whatever claims an org admin configured.
fn integration_key(session: &StoredSigningKey) -> StoredSigningKey {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &session.seed);
    let derived = hmac::sign(&key, b"coreauth integration-token signing key, v1");
    StoredSigningKey {
        kid: format!("int-{}", session.kid),
        algorithm: session.algorithm.clone(),
        seed: Zeroizing::new(derived.as_ref().to_vec()),
        created_at: session.created_at,
        activates_at: session.activates_at,
        retired_at: session.retired_at,
    }
}

/// The keys an instance holds, as loaded from the database: those not retired, by
/// `activates_at`.
struct KeySet {
    keys: Vec<SigningKey>,
    /// One per session key, in the same order: these sign integration tokens, never sessions.
    integration_keys: Vec<SigningKey>,
    /// When each key starts signing (epoch ms), in the same order.
    activations: Vec<i64>,
}

impl KeySet {
    fn new(mut stored: Vec<StoredSigningKey>) -> DomainResult<Self> {
        stored.retain(|k| k.retired_at.is_none());
        stored.sort_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)));
        if stored.is_empty() {
            return Err(DomainError::internal("no signing key"));
        }
        Ok(Self {
            keys: stored
                .iter()
                .map(SigningKey::from_stored)
                .collect::<DomainResult<_>>()?,
            integration_keys: stored
                .iter()
                .map(|k| SigningKey::from_stored(&integration_key(k)))
                .collect::<DomainResult<_>>()?,
            activations: stored.iter().map(|k| k.activates_at).collect(),
        })
    }

    /// Which key signs at `at` (epoch ms): the one activated last, or, when none has (every
    /// key left is still to come, after a retirement), the first to come.
    fn signing_at(&self, at: i64) -> usize {
        self.activations
            .iter()
            .rposition(|&activates| activates <= at)
            .unwrap_or(0)
    }

    fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }
}

/// Signs and checks session tokens with the keys in the database: the key activated last
/// signs, every key not retired verifies, so keys made by other instances are honoured, and
/// `reload` takes in keys rotated or retired since.
pub struct TokenSigner {
    issuer: String,
    /// Replaced whole by `reload`; read for each signature and each token not in the memo.
    keys: RwLock<Arc<KeySet>>,
    validation: Validation,
    /// Tokens already verified, so a token used again skips the signature check.
    verified: VerifiedTokens,
}

impl TokenSigner {
    /// `stored` must hold at least one key not retired.
    pub fn new(issuer: String, stored: Vec<StoredSigningKey>) -> DomainResult<Self> {
        let keys = KeySet::new(stored)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false; // checked against our clock below
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "iat", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[SESSION_AUDIENCE]);
        Ok(Self {
            issuer,
            keys: RwLock::new(Arc::new(keys)),
            validation,
            verified: VerifiedTokens::new(token_memo::DEFAULT_CAPACITY),
        })
    }

    fn key_set(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Takes in the keys as the database now holds them; answers whether they changed. When
    /// a key was retired, the tokens it signed are forgotten by the memo, so they fail at once.
    pub fn reload(&self, stored: Vec<StoredSigningKey>) -> DomainResult<bool> {
        let loaded = KeySet::new(stored)?;
        let current = self.key_set();
        let (kept, held) = (loaded.kids(), current.kids());
        if kept == held {
            return Ok(false);
        }
        let retired = held.iter().any(|kid| !kept.contains(kid));
        match self.keys.write() {
            Ok(mut keys) => *keys = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        if retired {
            self.verified.clear();
        }
        Ok(true)
    }

    /// The `kid` of the key that signs at `now`.
    pub fn signing_kid(&self, now: OffsetDateTime) -> String {
        let keys = self.key_set();
        keys.keys[keys.signing_at(to_millis(now))].kid.clone()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims` with the current key: a JWS in compact form, exactly what
    /// `jsonwebtoken::encode` makes, with the key's expanded form and encoded header kept
    /// between calls.
    pub fn sign(&self, claims: &SessionClaims) -> DomainResult<String> {
        let keys = self.key_set();
        let key = &keys.keys[keys.signing_at(claims.iat.saturating_mul(1000))];
        let claims = serde_json::to_vec(claims).map_err(DomainError::internal)?;
        // header.claims.signature, built in one buffer: 4/3 of the claims, 86 for the signature.
        let mut token = String::with_capacity(key.session_header.len() + claims.len() * 4 / 3 + 90);
        token.push_str(&key.session_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = key.signing.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// Signs an integration token's claims with the integration key of the session key that
    /// signs at `now` (never a session key), as `typ: JWT`, which `verify` refuses.
    pub fn sign_integration(
        &self,
        claims: &serde_json::Value,
        now: OffsetDateTime,
    ) -> DomainResult<String> {
        let keys = self.key_set();
        let key = &keys.integration_keys[keys.signing_at(to_millis(now))];
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(DomainError::internal)
    }

    /// Checks signature, header, issuer, audience and expiry; any failure is `Unauthenticated`.
    /// The token comes back as the memo keeps it: its claims, and what was found for it.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> DomainResult<Arc<VerifiedToken>> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(DomainError::Unauthenticated);
        }
        let verified = match self.verified.get(token) {
            Some(verified) => verified,
            None => self.verified.insert(token, self.verify_signed(token)?),
        };
        let claims = verified.claims();
        let now_secs = now.unix_timestamp();
        if claims.exp <= now_secs || claims.iat > now_secs + IAT_LEEWAY_SECS {
            return Err(DomainError::Unauthenticated);
        }
        Ok(verified)
    }

    /// Everything about a token that cannot change with time: header, key, signature, issuer
    /// and audience.
    fn verify_signed(&self, token: &str) -> DomainResult<SessionClaims> {
        let unauthenticated = |_| DomainError::Unauthenticated;
        let header = jsonwebtoken::decode_header(token).map_err(unauthenticated)?;
        if header.alg != Algorithm::EdDSA
            || header.typ.as_deref() != Some(SESSION_TOKEN_TYPE)
            || header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(DomainError::Unauthenticated);
        }
        let kid = header.kid.ok_or(DomainError::Unauthenticated)?;
        let keys = self.key_set();
        let key = keys
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(DomainError::Unauthenticated)?;
        let data = jsonwebtoken::decode::<SessionClaims>(token, &key.decoding, &self.validation)
            .map_err(unauthenticated)?;
        Ok(data.claims)
    }

    /// The session keys' public halves as a JWK Set, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        jwk_set(&self.key_set().keys)
    }

    /// The integration keys' public halves, for `/.well-known/integrations/jwks.json`.
    pub fn integration_jwks(&self) -> serde_json::Value {
        jwk_set(&self.key_set().integration_keys)
    }
}

fn jwk_set(keys: &[SigningKey]) -> serde_json::Value {
    let keys: Vec<_> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": k.public_x,
                "kid": k.kid,
                "alg": "EdDSA",
                "use": "sig",
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::clock::from_millis;

    fn signer() -> TokenSigner {
        let key = StoredSigningKey::generate(from_millis(0)).unwrap();
        TokenSigner::new("https://auth.example".into(), vec![key]).unwrap()
    }

    fn claims(now: OffsetDateTime) -> SessionClaims {
        SessionClaims {
            iss: "https://auth.example".into(),
            aud: SESSION_AUDIENCE.into(),
            sub: "u-1".into(),
            uid: 1,
            org: 1,
            role: "member".into(),
            sid: "s-1".into(),
            iat: now.unix_timestamp(),
            exp: now.unix_timestamp() + 900,
            jti: "j-1".into(),
            scope: None,
            client_id: None,
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let signer = signer();
        let now = from_millis(1_700_000_000_000);
        let token = signer.sign(&claims(now)).unwrap();
        assert_eq!(*signer.verify(&token, now).unwrap().claims(), claims(now));
        let later = now + time::Duration::seconds(899);
        assert!(signer.verify(&token, later).is_ok());
        let expired = now + time::Duration::seconds(900);
        assert!(signer.verify(&token, expired).is_err());
    }

    #[test]
    fn a_remembered_token_still_expires_and_tampering_is_still_caught() {
        let signer = signer();
        let now = from_millis(1_700_000_000_000);
        let token = signer.sign(&claims(now)).unwrap();
        assert!(signer.verify(&token, now).is_ok());
        assert_eq!(signer.verified.len(), 1);
        assert!(signer.verify(&token, now).is_ok(), "from memory");
        let expired = now + time::Duration::seconds(900);
        assert!(signer.verify(&token, expired).is_err());
        // One character in the middle of the signature changed.
        let at = token.len() - 10;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert!(signer.verify(&tampered, now).is_err());
        assert_eq!(signer.verified.len(), 1, "failures are not remembered");
    }

    #[test]
    fn tokens_are_what_jsonwebtoken_would_sign() {
        let signer = signer();
        let now = from_millis(1_700_000_000_000);
        let keys = signer.key_set();
        let key = &keys.keys[0];
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some(SESSION_TOKEN_TYPE.into());
        // Ed25519 signatures are deterministic: the same bytes or a bug.
        let expected = jsonwebtoken::encode(&header, &claims(now), &key.encoding).unwrap();
        assert_eq!(signer.sign(&claims(now)).unwrap(), expected);
    }

    #[test]
    fn tampered_and_foreign_tokens_fail() {
        let signer = signer();
        let now = from_millis(1_700_000_000_000);
        let token = signer.sign(&claims(now)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        let mut admin = claims(now);
        admin.role = "admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(signer.verify(&tampered, now).is_err());

        let none_header = b64(&serde_json::json!({"alg": "none", "typ": "at+jwt"}));
        let alg_none = format!("{none_header}.{}.", parts[1]);
        assert!(signer.verify(&alg_none, now).is_err());

        let other = signer.sign(&claims(now)).unwrap();
        let other_signer = self::signer();
        assert!(other_signer.verify(&other, now).is_err(), "unknown kid");

        for garbage in ["", "abc", "a.b.c", "....", &"x".repeat(5000)] {
            assert!(signer.verify(garbage, now).is_err());
        }
    }

    #[test]
    fn hs256_signed_with_the_public_key_fails() {
        let signer = signer();
        let now = from_millis(1_700_000_000_000);
        let keys = signer.key_set();
        let kid = keys.keys[0].kid.clone();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid);
        header.typ = Some(SESSION_TOKEN_TYPE.into());
        let public = keys.keys[0].public_x.as_bytes();
        let token =
            jsonwebtoken::encode(&header, &claims(now), &EncodingKey::from_secret(public)).unwrap();
        assert!(signer.verify(&token, now).is_err());
    }

    #[test]
    fn wrong_issuer_audience_or_type_fails() {
        let signer = signer();
        let now = from_millis(1_700_000_000_000);
        let mut c = claims(now);
        c.iss = "https://evil.example".into();
        assert!(signer.verify(&signer.sign(&c).unwrap(), now).is_err());
        let mut c = claims(now);
        c.aud = "productboard".into();
        assert!(signer.verify(&signer.sign(&c).unwrap(), now).is_err());

        let keys = signer.key_set();
        let key = &keys.keys[0];
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims(now), &key.encoding).unwrap();
        assert!(signer.verify(&token, now).is_err());
    }

    #[test]
    fn jwks_publishes_every_key_with_its_kid() {
        let signer = signer();
        let jwks = signer.jwks();
        assert_eq!(jwks["keys"][0]["kid"], signer.signing_kid(from_millis(0)));
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    }

    #[test]
    fn the_key_activated_last_signs_and_a_retired_key_verifies_nothing() {
        let switch = 1_700_000_000_000;
        let first = StoredSigningKey::generate(from_millis(0)).unwrap();
        let mut next = StoredSigningKey::generate(from_millis(0)).unwrap();
        next.activates_at = switch;
        let signer = TokenSigner::new(
            "https://auth.example".into(),
            vec![next.clone(), first.clone()],
        )
        .unwrap();
        let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let before = from_millis(switch - 1000);
        let after = from_millis(switch);
        let old = signer.sign(&claims(before)).unwrap();
        assert_eq!(kid(&old), first.kid);
        assert_eq!(kid(&signer.sign(&claims(after)).unwrap()), next.kid);
        assert_eq!(signer.signing_kid(after), next.kid);
        assert!(signer.verify(&old, after).is_ok(), "across the switch");
        let integration = serde_json::json!({"iat": 1, "exp": 2});
        assert_eq!(
            kid(&signer.sign_integration(&integration, after).unwrap()),
            format!("int-{}", next.kid)
        );

        let mut retired = first.clone();
        retired.retired_at = Some(switch + 1);
        assert!(signer.reload(vec![retired, next.clone()]).unwrap());
        assert!(
            signer.verify(&old, after).is_err(),
            "not even from the memo"
        );
        assert!(!signer.reload(vec![next]).unwrap(), "nothing changed");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// No string, however shaped, gets past verification or panics it.
        #[test]
        fn arbitrary_tokens_are_refused_without_panicking(
            header in "[A-Za-z0-9_-]{0,60}",
            payload in "[A-Za-z0-9_-]{0,120}",
            signature in "[A-Za-z0-9_-]{0,90}",
            noise in "\\PC{0,200}",
        ) {
            let signer = signer();
            let now = from_millis(1_700_000_000_000);
            let shaped = format!("{header}.{payload}.{signature}");
            proptest::prop_assert!(signer.verify(&shaped, now).is_err());
            proptest::prop_assert!(signer.verify(&noise, now).is_err());
        }

        /// Any byte changed in a genuine token makes it fail.
        #[test]
        fn any_single_change_breaks_a_genuine_token(position in 0usize..400, replacement in "[A-Za-z0-9_.-]") {
            let signer = signer();
            let now = from_millis(1_700_000_000_000);
            let token = signer.sign(&claims(now)).unwrap();
            let position = position % token.len();
            let mut changed = token.clone();
            changed.replace_range(position..position + 1, &replacement);
            if changed != token {
                proptest::prop_assert!(signer.verify(&changed, now).is_err());
            }
        }
    }
}
