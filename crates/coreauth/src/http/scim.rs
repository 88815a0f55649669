//! `/scim/v2/…`: the SCIM 2.0 protocol (RFC 7644) for an org's directory, authenticated by the
//! org's SCIM token. It speaks SCIM's own JSON (`application/scim+json`) and error format, so it
//! sits outside the OpenAPI document; its own discovery endpoints describe it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{authorization, origin_of};
use crate::domain::scim::schemas::{self, ERROR_SCHEMA};
use crate::domain::scim::{ListQuery, Projection, ScimCaller, ScimError};

const SCIM_JSON: &str = "application/scim+json";

pub fn routes() -> Router<AppState> {
    let service = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(all_schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/Users", get(list_users).post(create_user))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/.search", axum::routing::post(search))
        .fallback(no_such_endpoint);
    Router::new().nest("/scim/v2", service)
}

/// A SCIM answer: a resource, or SCIM's error body.
struct Scim(Result<(StatusCode, Value), ScimError>);

impl IntoResponse for Scim {
    fn into_response(self) -> Response {
        let (status, body) = match self.0 {
            Ok(answer) => answer,
            Err(error) => {
                let status =
                    StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut body = json!({
                    "schemas": [ERROR_SCHEMA],
                    "status": error.status.to_string(),
                    "detail": error.detail,
                });
                if let Some(scim_type) = error.scim_type {
                    body["scimType"] = scim_type.into();
                }
                (status, body)
            }
        };
        let location = (status == StatusCode::CREATED)
            .then(|| body["meta"]["location"].as_str().map(str::to_owned))
            .flatten();
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        response
    }
}

fn ok(value: Result<Value, ScimError>) -> Scim {
    Scim(value.map(|v| (StatusCode::OK, v)))
}

/// The directory behind a request, by its bearer token.
struct Directory(ScimCaller);

impl FromRequestParts<AppState> for Directory {
    type Rejection = Scim;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Scim> {
        let token = authorization(&parts.headers)
            .ok()
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let Some(token) = token else {
            return Err(Scim(Err(ScimError::unauthorized())));
        };
        state
            .scim
            .authenticate(token, origin_of(parts), state.now())
            .await
            .map(Directory)
            .map_err(|e| Scim(Err(e)))
    }
}

/// A request body: SCIM JSON (or plain JSON), else 400 invalidSyntax.
fn body_of(bytes: &Bytes) -> Result<Value, ScimError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ScimError::invalid_syntax("the body is a JSON object")),
        Err(e) => Err(ScimError::invalid_syntax(format!(
            "the body is not JSON: {e}"
        ))),
    }
}

/// `filter`, `startIndex`, `count`, `attributes`, `excludedAttributes` of a query string.
fn list_query(raw: Option<&str>) -> Result<ListQuery, ScimError> {
    let mut query = ListQuery::default();
    let number = |name: &str, value: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| ScimError::invalid_value(format!("{name} is a whole number")))
    };
    let names = |value: &str| {
        value
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "filter" => query.filter = Some(value.into_owned()),
            "startIndex" => query.start_index = Some(number("startIndex", &value)?),
            "count" => query.count = Some(number("count", &value)?),
            "attributes" => query.attributes = names(&value),
            "excludedAttributes" => query.excluded_attributes = names(&value),
            _ => {}
        }
    }
    Ok(query)
}

fn projection(raw: Option<&str>) -> Result<Projection, ScimError> {
    let query = list_query(raw)?;
    Ok(Projection {
        attributes: query.attributes,
        excluded_attributes: query.excluded_attributes,
    })
}

async fn service_provider_config(State(state): State<AppState>, _: Directory) -> Scim {
    let documentation = format!("{}/docs", state.scim.base().trim_end_matches("/scim/v2"));
    ok(Ok(schemas::service_provider_config(
        state.scim.base(),
        &documentation,
    )))
}

async fn resource_types(State(state): State<AppState>, _: Directory) -> Scim {
    let all = schemas::resource_types(state.scim.base());
    ok(Ok(schemas::list_response(all.len(), 1, all)))
}

async fn resource_type(
    State(state): State<AppState>,
    _: Directory,
    Path(id): Path<String>,
) -> Scim {
    let found = schemas::resource_types(state.scim.base())
        .into_iter()
        .find(|r| r["id"] == id.as_str());
    ok(found.ok_or_else(|| ScimError::not_found("ResourceType")))
}

async fn all_schemas(State(state): State<AppState>, _: Directory) -> Scim {
    let all = schemas::schemas(state.scim.base());
    ok(Ok(schemas::list_response(all.len(), 1, all)))
}

async fn schema(State(state): State<AppState>, _: Directory, Path(id): Path<String>) -> Scim {
    let found = schemas::schemas(state.scim.base())
        .into_iter()
        .find(|s| s["id"] == id.as_str());
    ok(found.ok_or_else(|| ScimError::not_found("Schema")))
}

async fn list_users(
    State(state): State<AppState>,
    Directory(caller): Directory,
    RawQuery(raw): RawQuery,
) -> Scim {
    let answer = match list_query(raw.as_deref()) {
        Ok(query) => state.scim.users(&caller, &query).await,
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn create_user(
    State(state): State<AppState>,
    Directory(caller): Directory,
    body: Bytes,
) -> Scim {
    let answer = match body_of(&body) {
        Ok(body) => state.scim.create_user(&caller, &body, state.now()).await,
        Err(e) => Err(e),
    };
    Scim(answer.map(|v| (StatusCode::CREATED, v)))
}

async fn get_user(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Scim {
    let answer = match projection(raw.as_deref()) {
        Ok(shown) => state.scim.user(&caller, &id, &shown).await,
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn replace_user(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
    body: Bytes,
) -> Scim {
    let answer = match body_of(&body) {
        Ok(body) => {
            state
                .scim
                .replace_user(&caller, &id, &body, state.now())
                .await
        }
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn patch_user(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
    body: Bytes,
) -> Scim {
    let answer = match body_of(&body) {
        Ok(body) => {
            state
                .scim
                .patch_user(&caller, &id, &body, state.now())
                .await
        }
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn delete_user(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
) -> Response {
    match state.scim.delete_user(&caller, &id, state.now()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Scim(Err(e)).into_response(),
    }
}

async fn list_groups(
    State(state): State<AppState>,
    Directory(caller): Directory,
    RawQuery(raw): RawQuery,
) -> Scim {
    let answer = match list_query(raw.as_deref()) {
        Ok(query) => state.scim.groups(&caller, &query).await,
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn create_group(
    State(state): State<AppState>,
    Directory(caller): Directory,
    body: Bytes,
) -> Scim {
    let answer = match body_of(&body) {
        Ok(body) => state.scim.create_group(&caller, &body, state.now()).await,
        Err(e) => Err(e),
    };
    Scim(answer.map(|v| (StatusCode::CREATED, v)))
}

async fn get_group(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Scim {
    let answer = match projection(raw.as_deref()) {
        Ok(shown) => state.scim.group(&caller, &id, &shown).await,
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn replace_group(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
    body: Bytes,
) -> Scim {
    let answer = match body_of(&body) {
        Ok(body) => {
            state
                .scim
                .replace_group(&caller, &id, &body, state.now())
                .await
        }
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn patch_group(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
    body: Bytes,
) -> Scim {
    let answer = match body_of(&body) {
        Ok(body) => {
            state
                .scim
                .patch_group(&caller, &id, &body, state.now())
                .await
        }
        Err(e) => Err(e),
    };
    ok(answer)
}

async fn delete_group(
    State(state): State<AppState>,
    Directory(caller): Directory,
    Path(id): Path<String>,
) -> Response {
    match state.scim.delete_group(&caller, &id, state.now()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Scim(Err(e)).into_response(),
    }
}

/// Searches by POST (RFC 7644 §3.4.3) are not offered: `GET` with `filter` does the same.
async fn search(_: Directory) -> Scim {
    Scim(Err(ScimError::not_implemented(
        "searches by POST are not supported; GET /Users or /Groups with a filter",
    )))
}

async fn no_such_endpoint() -> Scim {
    Scim(Err(ScimError::not_found("SCIM endpoint")))
}
