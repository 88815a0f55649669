//! `/admin/orgs/{org_id}/invitations/...` (org admins) and `/user/invitations/accept`.

use axum::extract::State;
use axum::http::StatusCode;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::{Caller, OptionalCaller};
use crate::domain::clock::{from_millis, iso8601};
use crate::domain::invitations::{NewAccount, invitation_state};
use crate::domain::password::Password;
use crate::store::records::InvitationRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(invite, list))
        .routes(routes!(revoke))
        .routes(routes!(resend))
        .routes(routes!(accept))
}

/// Invite an address to the org with a role; the invitee gets a link (valid 7 days).
#[utoipa::path(post, path = "/admin/orgs/{org_id}/invitations", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::CreateInvitationRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Invited", body = proto::Invitation),
        (status = 400, description = "Bad email or role", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
        (status = 409, description = "The address is a member, or has an open invitation", body = ErrorBody),
        (status = 429, description = "rate_limited: too many messages for this address", body = ErrorBody),
    ))]
async fn invite(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::CreateInvitationRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::Invitation>)> {
    let now = state.now();
    let invitation = state
        .invitations
        .invite(&caller, org_id, (&body.email, &body.role), now)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(view(invitation, now))))
}

/// The org's invitations, newest first.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/invitations", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The invitations", body = Vec<proto::Invitation>),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<Vec<proto::Invitation>>> {
    let now = state.now();
    let invitations = state.invitations.list(&caller, org_id).await?;
    Ok(ApiJson(
        invitations.into_iter().map(|i| view(i, now)).collect(),
    ))
}

/// Send an open invitation again, with a new link for another 7 days (the old link dies).
#[utoipa::path(post, path = "/admin/orgs/{org_id}/invitations/{id}/resend", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Invitation id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Sent again", body = proto::Invitation),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such invitation in this org", body = ErrorBody),
        (status = 409, description = "Accepted or revoked", body = ErrorBody),
        (status = 429, description = "rate_limited: too many messages for this address", body = ErrorBody),
    ))]
async fn resend(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
) -> ApiResult<ApiJson<proto::Invitation>> {
    let now = state.now();
    let invitation = state.invitations.resend(&caller, org_id, &id, now).await?;
    Ok(ApiJson(view(invitation, now)))
}

/// Revoke an open invitation: its link stops working.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/invitations/{id}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("id" = String, Path, description = "Invitation id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No open invitation with this id in this org", body = ErrorBody),
    ))]
async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, id)): ApiPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    state
        .invitations
        .revoke(&caller, org_id, &id, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation with its link's token: with a password and names, as a new account;
/// or, when the invited address has an account, signed in to it (its session token).
#[utoipa::path(post, path = "/user/invitations/accept", tag = "user",
    request_body = proto::AcceptInvitationRequest,
    responses(
        (status = 201, description = "Joined: sign in to the org", body = proto::AcceptedInvitation),
        (status = 400, description = "token_invalid, token_used, token_expired, token_superseded; a password the policy refuses; names missing", body = ErrorBody),
        (status = 403, description = "The address has an account: accept signed in to it; the org signs this domain in through SSO (sso_required); an API key", body = ErrorBody),
        (status = 409, description = "Accepted or revoked meanwhile, or already a member", body = ErrorBody),
    ))]
async fn accept(
    State(state): State<AppState>,
    OptionalCaller(caller): OptionalCaller,
    ApiJson(body): ApiJson<proto::AcceptInvitationRequest>,
) -> ApiResult<(StatusCode, ApiJson<proto::AcceptedInvitation>)> {
    let account = match body.password {
        Some(password) => Some(NewAccount {
            password: Password::parse(password.into_inner())?,
            first: body.first.unwrap_or_default(),
            last: body.last.unwrap_or_default(),
        }),
        None => None,
    };
    let (user_id, org_id) = state
        .invitations
        .accept(body.token.expose(), account, caller.as_ref(), state.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(proto::AcceptedInvitation { user_id, org_id }),
    ))
}

fn view(invitation: InvitationRecord, now: time::OffsetDateTime) -> proto::Invitation {
    let now_ms = crate::domain::clock::to_millis(now);
    proto::Invitation {
        state: invitation_state(&invitation, now_ms).to_owned(),
        id: invitation.public_id,
        org_id: invitation.org_id,
        email: invitation.email,
        role: invitation.role.as_str().to_owned(),
        created: iso8601(from_millis(invitation.created_at)),
        expires_at: invitation.expires_at,
        invited_by: invitation.invited_by,
        accepted_by: invitation.accepted_by,
    }
}
