//! `/user/...`: who am I, my orgs, my sessions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use coreauth_proto::{ErrorBody, Me, SessionInfo, UserOrg};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult, json_response};
use super::extract::{Caller, EnrollingCaller};
use crate::domain::clock::{from_millis, iso8601, push_iso8601_millis};
use crate::domain::error::DomainError;
use crate::domain::session::MemberProfile;
use crate::domain::session::Principal;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(orgs))
        .routes(routes!(sessions))
        .routes(routes!(end_session))
}

/// Who am I: user, org of this token, role, and how the call was authenticated.
#[utoipa::path(get, path = "/user/me", tag = "user",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
async fn me(
    State(state): State<AppState>,
    EnrollingCaller(caller): EnrollingCaller,
) -> ApiResult<Response> {
    let profile = state.auth.whoami(&caller).await?;
    let body = me_answer(&profile, &caller)
        .map_err(|e| DomainError::Internal(format!("rendering /user/me: {e}")))?;
    Ok(json_response(body))
}

/// `/user/me`'s body, byte for byte what serializing [`Me`] gives (tested below): the member's
/// fields come from the profile's rendering, made once per profile read, and only the caller's
/// six are written per call. It is the call services make to validate a token: copying the
/// text into a `Me` and serializing its 16 fields cost ~4,000 instructions more per request
/// (callgrind, bench/README.md).
fn me_answer(profile: &MemberProfile, caller: &Principal) -> serde_json::Result<Vec<u8>> {
    let member = profile.shown(render_member)?;
    let mut body = Vec::with_capacity(member.len() + 192);
    body.extend_from_slice(member);
    let session = caller.session.as_deref();
    push_flag(&mut body, ",\"isAdmin\":", caller.role.is_admin());
    push_flag(&mut body, ",\"isPlatformAdmin\":", caller.is_platform_admin);
    // Our own words: nothing to escape, so not checked.
    push_plain(&mut body, ",\"role\":", caller.role.as_str());
    push_plain(&mut body, ",\"authMethod\":", caller.method.as_str());
    push_text(&mut body, ",\"sessionId\":", session.map(|s| s.id.as_str()))?;
    body.extend_from_slice(b",\"sessionExpiresAt\":");
    match session {
        // RFC 3339 needs no escaping.
        Some(session) => {
            body.push(b'"');
            push_iso8601_millis(&mut body, session.expires_at);
            body.push(b'"');
        }
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    Ok(body)
}

/// `key` (its quotes, colon and leading comma included) and `true` or `false`.
fn push_flag(body: &mut Vec<u8>, key: &str, on: bool) {
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(if on { b"true" } else { b"false" });
}

/// `key` and `text` as a JSON string, or `null`. Text with nothing to escape (a session id
/// always) is copied as it is; serde_json, which looks up every byte in its escape table,
/// escapes the rest.
fn push_text(body: &mut Vec<u8>, key: &str, text: Option<&str>) -> serde_json::Result<()> {
    body.extend_from_slice(key.as_bytes());
    match text {
        Some(text) if !needs_escaping(text) => {
            push_quoted(body, text);
            Ok(())
        }
        Some(text) => serde_json::to_writer(body, text),
        None => {
            body.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// `key` and `text`, which has nothing to escape, as a JSON string.
fn push_plain(body: &mut Vec<u8>, key: &str, text: &str) {
    body.extend_from_slice(key.as_bytes());
    push_quoted(body, text);
}

/// `text`, which has nothing to escape, between quotes.
fn push_quoted(body: &mut Vec<u8>, text: &str) {
    debug_assert!(!needs_escaping(text));
    body.push(b'"');
    body.extend_from_slice(text.as_bytes());
    body.push(b'"');
}

/// Whether serde_json escapes any byte of `text`: control characters, `"` and `\` (no
/// early return, so the loop takes whole vectors).
fn needs_escaping(text: &str) -> bool {
    text.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// The member's fields of [`Me`]: a JSON object without its closing brace.
fn render_member(profile: &MemberProfile) -> serde_json::Result<Box<[u8]>> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Member<'a> {
        id: i64,
        uuid: &'a str,
        email: &'a str,
        first: &'a str,
        last: &'a str,
        is_active: bool,
        org_id: i64,
        org_name: &'a str,
        password_expires_at: Option<String>,
        mfa_enabled: bool,
    }
    let (user, org) = (profile.user(), profile.org());
    let mut text = serde_json::to_vec(&Member {
        id: user.id,
        uuid: &user.uuid,
        email: &user.email,
        first: &user.first,
        last: &user.last,
        is_active: user.is_active,
        org_id: org.id,
        org_name: &org.name,
        password_expires_at: profile
            .password_expires_at()
            .map(|t| iso8601(from_millis(t))),
        mfa_enabled: profile.mfa_enabled(),
    })?;
    text.pop(); // the closing brace: the caller's fields follow
    Ok(text.into_boxed_slice())
}

/// The caller's orgs with their ids (for `selectedOrg`).
#[utoipa::path(get, path = "/user/orgs", tag = "user",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller's memberships", body = Vec<UserOrg>),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
async fn orgs(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<ApiJson<Vec<UserOrg>>> {
    let memberships = state.auth.orgs_of(&caller).await?;
    Ok(ApiJson(
        memberships
            .into_iter()
            .map(|m| UserOrg {
                id: m.org_id,
                name: m.org_name,
                role: m.role.as_str().to_owned(),
                is_admin: m.role.is_admin(),
                is_active: m.is_active,
            })
            .collect(),
    ))
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/user/sessions", tag = "user",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Live sessions, newest first", body = Vec<SessionInfo>),
        (status = 403, description = "unauthenticated", body = ErrorBody),
    ))]
async fn sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<ApiJson<Vec<SessionInfo>>> {
    let current = caller.session.as_ref().map(|s| s.id.as_str());
    let sessions = state.auth.sessions_of(&caller, state.now()).await?;
    Ok(ApiJson(
        sessions
            .into_iter()
            .map(|s| SessionInfo {
                current: current == Some(s.id.as_str()),
                id: s.id,
                org_id: s.org_id,
                client: s.client,
                address: s.address,
                user_agent: s.user_agent,
                created_at: iso8601(from_millis(s.created_at)),
                last_renewed_at: s.last_renewed_at.map(|t| iso8601(from_millis(t))),
                renew_count: s.renew_count,
                expires_at: iso8601(from_millis(s.expires_at)),
            })
            .collect(),
    ))
}

/// End one of the caller's own sessions.
#[utoipa::path(delete, path = "/user/sessions/{id}", tag = "user",
    params(("id" = String, Path, description = "Session id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 403, description = "unauthenticated", body = ErrorBody),
        (status = 404, description = "No such session of yours", body = ErrorBody),
    ))]
async fn end_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.auth.end_session(&caller, &id, state.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use coreauth_proto::Me;
    use proptest::prelude::*;

    use super::me_answer;
    use crate::domain::clock::{from_millis, iso8601};
    use crate::domain::org::{OrgRecord, Role};
    use crate::domain::origin::RequestOrigin;
    use crate::domain::policy::PasswordPolicy;
    use crate::domain::scopes::Scopes;
    use crate::domain::session::{
        AuthMethod, MemberProfile, MemberRecord, Principal, SessionRecord,
    };
    use crate::domain::user::UserRecord;

    /// What `/user/me` answered before it was rendered in two parts: a `Me`, serialized.
    fn as_me(profile: &MemberProfile, caller: &Principal) -> Me {
        let (user, org) = (profile.user(), profile.org());
        Me {
            id: user.id,
            uuid: user.uuid.clone(),
            email: user.email.clone(),
            first: user.first.clone(),
            last: user.last.clone(),
            is_active: user.is_active,
            org_id: org.id,
            org_name: org.name.clone(),
            password_expires_at: profile
                .password_expires_at()
                .map(|t| iso8601(from_millis(t))),
            mfa_enabled: profile.mfa_enabled(),
            is_admin: caller.role.is_admin(),
            is_platform_admin: caller.is_platform_admin,
            role: caller.role.as_str().to_owned(),
            auth_method: caller.method.as_str().to_owned(),
            session_id: caller.session.as_ref().map(|s| s.id.clone()),
            session_expires_at: caller
                .session
                .as_ref()
                .map(|s| iso8601(from_millis(s.expires_at))),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the text (quotes, backslashes, control characters, any script), the answer
        /// is exactly the serialized `Me`, and asking twice, which reuses the member's
        /// rendering, gives the same bytes.
        #[test]
        fn the_answer_is_the_serialized_me(
            texts in proptest::collection::vec("\\PC{0,12}|[\"\\\\\\x00-\\x1f\u{7f}\u{2028}]{0,6}", 5),
            numbers in proptest::array::uniform3(any::<i64>()),
            flags in proptest::array::uniform5(any::<bool>()),
            password_set_at in proptest::option::of(0..4_000_000_000_000_i64),
            max_age_days in 0..400_u32,
            expires_at in 0..4_000_000_000_000_i64,
        ) {
            let [id, org_id, _] = numbers;
            let [is_active, mfa_enabled, is_admin, is_platform_admin, by_key] = flags;
            let profile = MemberProfile::new(MemberRecord {
                user: UserRecord {
                    id,
                    uuid: texts[0].clone(),
                    email: texts[1].clone(),
                    first: texts[2].clone(),
                    last: texts[3].clone(),
                    is_active,
                    is_platform_admin,
                    password_hash: None,
                    password_set_at,
                    must_change_password: false,
                    created_at: 0,
                    home_org_id: None,
                    last_org_id: None,
                    username: None,
                    is_service: false,
                    email_verified_at: None,
                },
                org: OrgRecord { id: org_id, name: texts[4].clone(), email_domains: vec![] },
                policy: PasswordPolicy { max_age_days, ..PasswordPolicy::default() },
                mfa_enabled,
            });
            let caller = Principal {
                user_id: id,
                user_uuid: texts[0].as_str().into(),
                org_id,
                role: if is_admin { Role::Admin } else { Role::Member },
                is_platform_admin,
                method: if by_key { AuthMethod::ApiKey } else { AuthMethod::Session },
                session: (!by_key)
                    .then(|| Arc::new(SessionRecord::for_tests(&texts[1], id, org_id, 0, expires_at))),
                scopes: Scopes::ALL,
                key_expires_at: None,
                origin: RequestOrigin::default(),
                token: None,
            };
            let expected = serde_json::to_vec(&as_me(&profile, &caller)).unwrap();
            prop_assert_eq!(
                String::from_utf8(me_answer(&profile, &caller).unwrap()).unwrap(),
                String::from_utf8(expected.clone()).unwrap()
            );
            prop_assert_eq!(me_answer(&profile, &caller).unwrap(), expected);
        }
    }
}
