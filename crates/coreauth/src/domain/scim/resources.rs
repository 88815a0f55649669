//! Users and Groups as SCIM shows them, and what a directory's resource says, read into the
//! parts coreauth keeps.
//!
//! A User's `userName` is the account's email when it is an address; otherwise it is the
//! account's username, and the address comes from `emails` (the primary one, else the work
//! one, else the first). `name.givenName`/`familyName` are the account's names, `active` the
//! membership's state. Whatever else the schemas define is kept as the directory wrote it and
//! shown back; attributes they do not define are dropped.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{ScimError, ScimResult};
use super::filter::get_ignoring_case;
use super::schemas::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, ResourceKind, USER_SCHEMA};
use crate::domain::email::Email;
use crate::domain::org::Name;
use crate::domain::user::Username;
use crate::store::records::{ScimGroupRecord, ScimUserRecord};

/// At most this many characters in an `externalId` or a group's `displayName`.
const MAX_ID_CHARS: usize = 256;

/// What a directory's User says, validated.
#[derive(Debug)]
pub struct UserFields {
    /// `userName` when it is an address; else the primary (or work, or first) of `emails`.
    pub email: Option<Email>,
    /// Whether `email` is the `userName` itself.
    pub user_name_is_email: bool,
    /// `userName` when it is not an address.
    pub username: Option<Username>,
    pub first: Name,
    pub last: Name,
    pub active: bool,
    pub external_id: Option<String>,
    /// The resource's attributes as kept (JSON).
    pub attributes: String,
}

pub fn parse_user(resource: &Value) -> ScimResult<UserFields> {
    let Value::Object(given) = resource else {
        return Err(ScimError::invalid_syntax("a User is a JSON object"));
    };
    let user_name = match get_ignoring_case(resource, "userName") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim(),
        _ => return Err(ScimError::invalid_value("userName is required")),
    };
    let (email, username) = match Email::parse(user_name) {
        Ok(email) => (Some(email), None),
        Err(_) => {
            let username = Username::parse(user_name).map_err(|_| {
                ScimError::invalid_value(
                    "userName is an email address, or a username of letters, digits, '.', '_' \
                     and '-'",
                )
            })?;
            let email = chosen_email(resource)
                .map(|address| {
                    Email::parse(address).map_err(|_| {
                        ScimError::invalid_value(format!("{address:?} is not an email address"))
                    })
                })
                .transpose()?;
            (email, Some(username))
        }
    };
    let name = get_ignoring_case(resource, "name");
    let local_part = email
        .as_ref()
        .and_then(|e| e.as_str().split('@').next().map(str::to_owned))
        .unwrap_or_else(|| user_name.to_owned());
    let given_name = text_of(name.and_then(|n| get_ignoring_case(n, "givenName")))
        .filter(|n| !n.is_empty())
        .or_else(|| text_of(get_ignoring_case(resource, "displayName")).filter(|n| !n.is_empty()))
        .unwrap_or(&local_part);
    let family_name = text_of(name.and_then(|n| get_ignoring_case(n, "familyName"))).unwrap_or("");
    let first = Name::parse("name.givenName", given_name, false).map_err(ScimError::from)?;
    let last = Name::parse("name.familyName", family_name, true).map_err(ScimError::from)?;
    let active = match get_ignoring_case(resource, "active") {
        None | Some(Value::Null) => true,
        Some(value) => {
            boolean(value).ok_or_else(|| ScimError::invalid_value("active is a boolean"))?
        }
    };
    Ok(UserFields {
        user_name_is_email: username.is_none(),
        email,
        username,
        first,
        last,
        active,
        external_id: external_id(resource)?,
        attributes: kept_attributes(given, ResourceKind::User).to_string(),
    })
}

fn text_of(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).map(str::trim)
}

/// A boolean, or Entra ID's `"True"`/`"False"`.
fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn chosen_email(resource: &Value) -> Option<&str> {
    let emails = get_ignoring_case(resource, "emails")?.as_array()?;
    let flag = |e: &&Value, name: &str| get_ignoring_case(e, name).and_then(boolean) == Some(true);
    let of_type = |e: &&Value| {
        get_ignoring_case(e, "type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("work"))
    };
    emails
        .iter()
        .find(|e| flag(e, "primary"))
        .or_else(|| emails.iter().find(of_type))
        .or_else(|| emails.first())
        .and_then(|e| get_ignoring_case(e, "value"))
        .and_then(Value::as_str)
}

fn external_id(resource: &Value) -> ScimResult<Option<String>> {
    match get_ignoring_case(resource, "externalId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id))
            if id.chars().count() <= MAX_ID_CHARS && !id.chars().any(char::is_control) =>
        {
            Ok(Some(id.clone()))
        }
        Some(_) => Err(ScimError::invalid_value(format!(
            "externalId is a string of at most {MAX_ID_CHARS} characters"
        ))),
    }
}

/// The attributes the schemas define (read-only ones aside), as given.
fn kept_attributes(given: &Map<String, Value>, kind: ResourceKind) -> Value {
    let mut kept = Map::new();
    for (key, value) in given {
        if kind == ResourceKind::User && key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            if let Value::Object(extension) = value {
                let known: Map<String, Value> = extension
                    .iter()
                    .filter(|(name, _)| kind.attribute(Some(ENTERPRISE_SCHEMA), name).is_some())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                kept.insert(ENTERPRISE_SCHEMA.to_owned(), Value::Object(known));
            }
            continue;
        }
        let writable = kind
            .attribute(None, key)
            .is_some_and(|a| a.mutability != "readOnly" && a.name != "members");
        if writable {
            kept.insert(key.clone(), value.clone());
        }
    }
    Value::Object(kept)
}

fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn meta(kind: &str, created: i64, modified: i64, version: i64, location: String) -> Value {
    json!({
        "resourceType": kind,
        "created": timestamp(created),
        "lastModified": timestamp(modified),
        "location": location,
        "version": format!("W/\"{version}\""),
    })
}

/// A member as a User; `groups`: the org's groups they are in (id, displayName). A member the
/// directory wrote is shown as it wrote them (so what it sent is what it reads back); one it
/// never wrote is shown from the account.
pub fn render_user(user: &ScimUserRecord, groups: &[(&str, &str)], base: &str) -> Value {
    let account = &user.user;
    let written = user.version > 0;
    let mut resource = match serde_json::from_str::<Value>(&user.attributes) {
        Ok(Value::Object(kept)) if written => kept,
        _ => Map::new(),
    };
    let mut schemas = vec![Value::from(USER_SCHEMA)];
    if resource.contains_key(ENTERPRISE_SCHEMA) {
        schemas.push(ENTERPRISE_SCHEMA.into());
    }
    resource.insert("schemas".into(), schemas.into());
    resource.insert("id".into(), account.uuid.clone().into());
    if let Some(id) = &user.external_id {
        resource.insert("externalId".into(), id.clone().into());
    }
    let active = user.member_active && account.is_active;
    let stated_active = resource
        .keys()
        .find(|k| k.eq_ignore_ascii_case("active"))
        .cloned();
    match stated_active {
        Some(key) => {
            resource.insert(key, active.into());
        }
        None if !written || !active => {
            resource.insert("active".into(), active.into());
        }
        None => {}
    }
    if !written {
        let user_name = account
            .username
            .clone()
            .unwrap_or_else(|| account.email.clone());
        resource.insert("userName".into(), user_name.into());
        let mut name = Map::new();
        name.insert("givenName".into(), account.first.clone().into());
        if !account.last.is_empty() {
            name.insert("familyName".into(), account.last.clone().into());
        }
        resource.insert("name".into(), Value::Object(name));
        if !account.email.is_empty() {
            resource.insert(
                "emails".into(),
                json!([{"value": account.email, "type": "work", "primary": true}]),
            );
        }
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}")}))
        .collect();
    resource.insert("groups".into(), groups.into());
    resource.insert(
        "meta".into(),
        meta(
            "User",
            user.member_since,
            user.updated_at,
            user.version,
            format!("{base}/Users/{}", account.uuid),
        ),
    );
    Value::Object(resource)
}

/// What a directory's Group says: its name (and the key it is unique by), its externalId and
/// its members' ids.
#[derive(Debug)]
pub struct GroupFields {
    pub display_name: String,
    pub external_id: Option<String>,
    pub member_ids: Vec<String>,
}

impl GroupFields {
    pub fn name_key(&self) -> String {
        self.display_name.to_lowercase()
    }
}

pub fn parse_group(resource: &Value) -> ScimResult<GroupFields> {
    if !resource.is_object() {
        return Err(ScimError::invalid_syntax("a Group is a JSON object"));
    }
    let display_name = match get_ignoring_case(resource, "displayName") {
        Some(Value::String(name))
            if !name.trim().is_empty()
                && name.chars().count() <= MAX_ID_CHARS
                && !name.chars().any(char::is_control) =>
        {
            name.trim().to_owned()
        }
        _ => {
            return Err(ScimError::invalid_value(format!(
                "displayName is required, at most {MAX_ID_CHARS} characters"
            )));
        }
    };
    let members = match get_ignoring_case(resource, "members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(members)) => members
            .iter()
            .map(|m| {
                get_ignoring_case(m, "value")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| ScimError::invalid_value("each member has a value: a User's id"))
            })
            .collect::<ScimResult<Vec<_>>>()?,
        Some(_) => return Err(ScimError::invalid_value("members is a list")),
    };
    let mut member_ids = members;
    member_ids.sort();
    member_ids.dedup();
    Ok(GroupFields {
        display_name,
        external_id: external_id(resource)?,
        member_ids,
    })
}

pub fn render_group(group: &ScimGroupRecord, base: &str) -> Value {
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| {
            // Only what a directory writes: it compares what it reads back with what it sent.
            json!({"value": m.uuid, "$ref": format!("{base}/Users/{}", m.uuid)})
        })
        .collect();
    let mut resource = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.public_id,
        "displayName": group.display_name,
        "members": members,
        "meta": meta(
            "Group",
            group.created_at,
            group.updated_at,
            group.version,
            format!("{base}/Groups/{}", group.public_id),
        ),
    });
    if let Some(id) = &group.external_id {
        resource["externalId"] = id.clone().into();
    }
    resource
}

/// Keeps only the attributes asked for (`attributes`), or drops those asked not to be shown
/// (`excludedAttributes`); `id`, `schemas` and `meta` are always shown. Top-level names, and
/// `urn:…:attr` for the enterprise extension's.
pub fn project(resource: &mut Value, attributes: &[String], excluded: &[String]) {
    let Value::Object(object) = resource else {
        return;
    };
    let always = |key: &str| {
        ["id", "schemas", "meta"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(key))
    };
    let named = |list: &[String], key: &str| {
        list.iter().any(|a| {
            let a = a
                .strip_prefix(USER_SCHEMA)
                .or_else(|| a.strip_prefix(GROUP_SCHEMA))
                .map_or(a.as_str(), |rest| rest.trim_start_matches(':'));
            let top = a.split('.').next().unwrap_or(a);
            top.eq_ignore_ascii_case(key)
                || a.eq_ignore_ascii_case(key)
                || a.starts_with(&format!("{key}:"))
        })
    };
    if !attributes.is_empty() {
        object.retain(|key, _| always(key) || named(attributes, key));
    }
    if !excluded.is_empty() {
        object.retain(|key, _| always(key) || !named(excluded, key));
    }
}
