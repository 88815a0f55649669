//! `GET /admin/audit`: the audit trail, filtered and paged (newest first, cursor-based, so pages
//! stay stable while new events arrive).

use axum::extract::State;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiQuery, ApiResult};
use super::extract::Caller;
use crate::domain::audit::{AuditQuery, AuditRecord, DEFAULT_PAGE};
use crate::domain::clock::{from_millis, iso8601, to_millis};
use crate::domain::error::DomainError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

/// The audit trail, newest first; pass `nextCursor` back as `cursor` for the next page.
#[utoipa::path(get, path = "/admin/audit", tag = "admin",
    params(proto::AuditQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of events", body = proto::AuditPage),
        (status = 400, description = "Bad filter, cursor or limit", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of that org", body = ErrorBody),
    ))]
async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<proto::AuditQuery>,
) -> ApiResult<ApiJson<proto::AuditPage>> {
    let query = AuditQuery {
        org_id: q.org_id,
        user_id: q.user_id,
        event: q.event,
        since: q
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        before: q
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| DomainError::invalid("cursor is not one this server gave out"))
            })
            .transpose()?,
        limit: q.limit.unwrap_or(DEFAULT_PAGE),
    };
    let (events, next) = state.audit.search(&caller, query).await?;
    Ok(ApiJson(proto::AuditPage {
        events: events.into_iter().map(event_answer).collect(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}

fn parse_time(field: &str, text: &str) -> Result<i64, DomainError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(to_millis)
        .map_err(|_| {
            DomainError::invalid(format!(
                "{field} must be an ISO 8601 time such as 2026-01-31T00:00:00Z"
            ))
        })
}

pub fn event_answer(record: AuditRecord) -> proto::AuditEvent {
    let e = record.event;
    proto::AuditEvent {
        id: record.id.to_string(),
        time: iso8601(from_millis(e.occurred_at)),
        event: e.event,
        outcome: if e.success { "success" } else { "failure" }.to_owned(),
        reason: e.reason,
        org_id: e.org_id,
        actor_user_id: e.actor_user_id,
        subject_user_id: e.subject_user_id,
        subject: e.subject,
        address: e.address,
        user_agent: e.user_agent,
        client: e.client,
        request_id: e.request_id,
        details: e.details,
    }
}
