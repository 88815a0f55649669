//! `/admin/orgs/{org_id}/email-settings` and `…/email-templates/{kind}`: what an org's mail
//! says and who it comes from (org admins).

use axum::extract::State;
use coreauth_proto as proto;
use coreauth_proto::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::Caller;
use crate::domain::mail::settings::TemplateInUse;
use crate::store::records::EmailTemplate;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, set_settings))
        .routes(routes!(set_template, reset_template))
}

/// The org's sender settings and the template of every kind of message.
#[utoipa::path(get, path = "/admin/orgs/{org_id}/email-settings", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Settings and templates", body = proto::EmailSettingsView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn get_settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<ApiJson<proto::EmailSettingsView>> {
    let (settings, templates) = state.mail_settings.get(&caller, org_id).await?;
    Ok(ApiJson(proto::EmailSettingsView {
        from_name: settings.from_name,
        reply_to: settings.reply_to,
        templates: templates.into_iter().map(template_view).collect(),
    }))
}

/// Set the sender's display name and reply-to address of the org's mail.
#[utoipa::path(put, path = "/admin/orgs/{org_id}/email-settings", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id")),
    request_body = proto::SetEmailSettingsRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Set", body = proto::EmailSettingsView),
        (status = 400, description = "A bad name or address", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn set_settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<proto::SetEmailSettingsRequest>,
) -> ApiResult<ApiJson<proto::EmailSettingsView>> {
    state
        .mail_settings
        .set(
            &caller,
            org_id,
            (body.from_name, body.reply_to),
            state.now(),
        )
        .await?;
    get_settings(State(state), Caller(caller), ApiPath(org_id)).await
}

/// Replace the built-in template of one kind of message, checked by rendering it first.
#[utoipa::path(put, path = "/admin/orgs/{org_id}/email-templates/{kind}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("kind" = String, Path, description = "invitation, password_reset, password_reset_sso or email_verification")),
    request_body = proto::SetEmailTemplateRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Set", body = proto::EmailTemplateView),
        (status = 400, description = "Unknown kind, or a template that does not render (syntax, unknown variable, too long)", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn set_template(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, kind)): ApiPath<(i64, String)>,
    ApiJson(body): ApiJson<proto::SetEmailTemplateRequest>,
) -> ApiResult<ApiJson<proto::EmailTemplateView>> {
    let template = EmailTemplate {
        kind: kind.clone(),
        subject: body.subject,
        text_body: body.text_body,
        html_body: body.html_body,
    };
    let set = state
        .mail_settings
        .set_template(&caller, org_id, &kind, Some(template), state.now())
        .await?;
    Ok(ApiJson(template_view(set)))
}

/// Go back to the built-in template of one kind of message.
#[utoipa::path(delete, path = "/admin/orgs/{org_id}/email-templates/{kind}", tag = "admin",
    params(("org_id" = i64, Path, description = "Org id"), ("kind" = String, Path, description = "The kind of message")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The built-in template, now in use", body = proto::EmailTemplateView),
        (status = 400, description = "Unknown kind", body = ErrorBody),
        (status = 403, description = "unauthenticated, or forbidden: not an admin of this org", body = ErrorBody),
        (status = 404, description = "No such org", body = ErrorBody),
    ))]
async fn reset_template(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, kind)): ApiPath<(i64, String)>,
) -> ApiResult<ApiJson<proto::EmailTemplateView>> {
    let set = state
        .mail_settings
        .set_template(&caller, org_id, &kind, None, state.now())
        .await?;
    Ok(ApiJson(template_view(set)))
}

fn template_view(in_use: TemplateInUse) -> proto::EmailTemplateView {
    proto::EmailTemplateView {
        kind: in_use.template.kind,
        subject: in_use.template.subject,
        text_body: in_use.template.text_body,
        html_body: in_use.template.html_body,
        custom: in_use.custom,
    }
}
