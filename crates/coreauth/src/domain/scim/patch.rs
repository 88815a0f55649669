//! PATCH (RFC 7644 §3.5.2) applied to a resource as it is shown: the result is then read back
//! as a whole resource, exactly as a PUT would be, so both take one path into the store.
//! Besides the RFC's forms this takes what Entra ID and Okta send: capitalised `op`s, `remove`
//! with a `value` naming the members to take out, and a `replace` or `add` without a `path`
//! whose value holds attribute paths (`name.givenName`, `urn:…:User:department`) as keys.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::filter::{get_ignoring_case, val_matches};
use super::schemas::{ENTERPRISE_SCHEMA, PATCH_SCHEMA, ResourceKind};

/// At most this many operations in one request.
const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

#[derive(Debug)]
pub struct Operation {
    op: Op,
    path: Option<PatchPath>,
    value: Option<Value>,
}

/// The operations of a PatchOp request body.
pub fn parse(body: &Value) -> ScimResult<Vec<Operation>> {
    let schemas = get_ignoring_case(body, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|s| s.as_str() == Some(PATCH_SCHEMA))) {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH request's schemas must hold {PATCH_SCHEMA}"
        )));
    }
    let Some(Value::Array(operations)) = get_ignoring_case(body, "Operations") else {
        return Err(ScimError::invalid_syntax(
            "a PATCH request needs Operations",
        ));
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "at most {MAX_OPERATIONS} operations in one request"
        )));
    }
    operations.iter().map(parse_operation).collect()
}

fn parse_operation(operation: &Value) -> ScimResult<Operation> {
    let op = match get_ignoring_case(operation, "op").and_then(Value::as_str) {
        Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
        Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
        Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
        _ => {
            return Err(ScimError::invalid_syntax(
                "each operation's op is add, replace or remove",
            ));
        }
    };
    let path = match get_ignoring_case(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.trim().is_empty() => None,
        Some(Value::String(path)) => Some(parse_path(path)?),
        Some(_) => return Err(ScimError::invalid_path("path must be a string")),
    };
    let value = get_ignoring_case(operation, "value").cloned();
    match (op, &path, &value) {
        (Op::Remove, None, _) => Err(ScimError::no_target("remove needs a path")),
        (Op::Add | Op::Replace, _, None) => {
            Err(ScimError::invalid_value("add and replace need a value"))
        }
        (Op::Add | Op::Replace, None, Some(v)) if !v.is_object() => Err(ScimError::invalid_value(
            "without a path, the value is an object of attributes",
        )),
        _ => Ok(Operation { op, path, value }),
    }
}

fn parse_path(path: &str) -> ScimResult<PatchPath> {
    path.parse()
        .map_err(|e| ScimError::invalid_path(format!("the path {path:?} does not parse: {e}")))
}

/// Applies the operations, in order, to `resource`.
pub fn apply(
    resource: &mut Value,
    operations: Vec<Operation>,
    kind: ResourceKind,
) -> ScimResult<()> {
    for operation in operations {
        match operation.path {
            Some(path) => apply_at(resource, operation.op, &path, operation.value, kind)?,
            None => {
                let Some(Value::Object(values)) = operation.value else {
                    return Err(ScimError::invalid_value(
                        "the value is an object of attributes",
                    ));
                };
                apply_without_path(resource, operation.op, values, kind)?;
            }
        }
    }
    Ok(())
}

fn apply_without_path(
    resource: &mut Value,
    op: Op,
    values: Map<String, Value>,
    kind: ResourceKind,
) -> ScimResult<()> {
    for (key, value) in values {
        if kind == ResourceKind::User && key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            let Value::Object(extension) = value else {
                return Err(ScimError::invalid_value(format!("{key} is an object")));
            };
            for (name, value) in extension {
                let path = PatchPath::Attr(AttrPath {
                    uri: Some(ENTERPRISE_SCHEMA.to_owned()),
                    ..attr_path(&name)
                });
                apply_at(resource, op, &path, Some(value), kind)?;
            }
        } else {
            apply_at(resource, op, &parse_path(&key)?, Some(value), kind)?;
        }
    }
    Ok(())
}

fn attr_path(name: &str) -> AttrPath {
    match name.split_once('.') {
        Some((name, sub)) => AttrPath::with_sub_attr(name, sub),
        None => AttrPath::with_name(name),
    }
}

fn apply_at(
    resource: &mut Value,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
    kind: ResourceKind,
) -> ScimResult<()> {
    if let PatchPath::Attr(attr) = path
        && kind == ResourceKind::User
        && is_enterprise_urn(attr)
    {
        return apply_to_extension(resource, op, value, kind);
    }
    let (attr, filter, sub) = match path {
        PatchPath::Attr(attr) => (attr, None, attr.sub_attr.as_deref()),
        PatchPath::Value(vp) => (&vp.attr, Some(&vp.filter), vp.sub_attr.as_deref()),
    };
    let Some(definition) = kind.attribute(attr.uri.as_deref(), &attr.name).or_else(|| {
        (attr.uri.is_none() && attr.name.eq_ignore_ascii_case("externalId")).then_some(&EXTERNAL_ID)
    }) else {
        return Err(ScimError::invalid_path(format!(
            "{} is not an attribute of {} that can be changed",
            attr.name,
            kind.name()
        )));
    };
    if definition.mutability == "readOnly" {
        return Err(ScimError::mutability(format!(
            "{} is read-only",
            definition.name
        )));
    }
    if let Some(sub) = sub
        && !definition
            .sub
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(sub))
    {
        return Err(ScimError::invalid_path(format!(
            "{sub} is not a sub-attribute of {}",
            definition.name
        )));
    }
    let container = container_mut(resource, attr.uri.as_deref(), op != Op::Remove)?;
    let Some(container) = container else {
        return Ok(());
    };
    let name = existing_key(container, definition.name);
    match filter {
        None => apply_to_attribute(container, &name, definition.multi, sub, op, value),
        Some(filter) => apply_to_elements(container, &name, filter, sub, op, value),
    }
}

/// A path that is the extension's URN itself (`urn:…:enterprise:2.0:User`), which parses as
/// attribute `User` of schema `urn:…:enterprise:2.0`.
fn is_enterprise_urn(attr: &AttrPath) -> bool {
    attr.sub_attr.is_none()
        && attr.uri.as_ref().is_some_and(|uri| {
            format!("{uri}:{}", attr.name).eq_ignore_ascii_case(ENTERPRISE_SCHEMA)
        })
}

/// An operation on the whole extension: each attribute of the value in turn (its `schemas`
/// aside), or, for `remove`, the extension gone.
fn apply_to_extension(
    resource: &mut Value,
    op: Op,
    value: Option<Value>,
    kind: ResourceKind,
) -> ScimResult<()> {
    if op == Op::Remove {
        if let Some(root) = resource.as_object_mut() {
            let key = existing_key(root, ENTERPRISE_SCHEMA);
            root.remove(&key);
        }
        return Ok(());
    }
    let Some(Value::Object(mut values)) = value else {
        return Err(ScimError::invalid_value(format!(
            "{ENTERPRISE_SCHEMA} is an object"
        )));
    };
    values.retain(|key, _| !key.eq_ignore_ascii_case("schemas"));
    let mut wrapped = Map::new();
    wrapped.insert(ENTERPRISE_SCHEMA.to_owned(), Value::Object(values));
    apply_without_path(resource, op, wrapped, kind)
}

/// `externalId`: a common attribute, outside the schemas, that directories write.
static EXTERNAL_ID: super::schemas::Attr = super::schemas::Attr {
    name: "externalId",
    kind: "string",
    multi: false,
    required: false,
    case_exact: true,
    mutability: "readWrite",
    uniqueness: "none",
    sub: &[],
};

/// The object holding the schema's attributes (an extension's own object, made when `create`).
fn container_mut<'a>(
    resource: &'a mut Value,
    uri: Option<&str>,
    create: bool,
) -> ScimResult<Option<&'a mut Map<String, Value>>> {
    let root = resource
        .as_object_mut()
        .ok_or_else(|| ScimError::invalid_value("the resource is not an object"))?;
    if !uri.is_some_and(|u| u.eq_ignore_ascii_case(ENTERPRISE_SCHEMA)) {
        return Ok(Some(root));
    }
    let key = existing_key(root, ENTERPRISE_SCHEMA);
    if !root.contains_key(&key) {
        if !create {
            return Ok(None);
        }
        root.insert(key.clone(), Value::Object(Map::new()));
    }
    match root.get_mut(&key) {
        Some(Value::Object(extension)) => Ok(Some(extension)),
        _ => Err(ScimError::invalid_value(format!(
            "{ENTERPRISE_SCHEMA} is an object"
        ))),
    }
}

/// The key `name` is held under (attribute names are matched without regard to case).
fn existing_key(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn apply_to_attribute(
    container: &mut Map<String, Value>,
    name: &str,
    multi: bool,
    sub: Option<&str>,
    op: Op,
    value: Option<Value>,
) -> ScimResult<()> {
    if let Some(sub) = sub {
        if multi {
            return Err(ScimError::invalid_path(format!(
                "{name}.{sub} names every element: filter one ({name}[type eq \"work\"].{sub})"
            )));
        }
        let target = container
            .entry(name.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(target) = target else {
            return Err(ScimError::invalid_value(format!("{name} is not complex")));
        };
        let key = existing_key(target, sub);
        match (op, value) {
            (Op::Remove, _) => {
                target.remove(&key);
            }
            (_, Some(value)) => {
                target.insert(key, value);
            }
            (_, None) => {}
        }
        return Ok(());
    }
    match (op, value) {
        (Op::Remove, Some(Value::Array(gone))) if multi => {
            if let Some(Value::Array(items)) = container.get_mut(name) {
                items.retain(|item| !gone.iter().any(|g| same_element(item, g)));
            }
        }
        (Op::Remove, _) => {
            container.remove(name);
        }
        (Op::Add, Some(value)) if multi => {
            let added = match value {
                Value::Array(items) => items,
                single => vec![single],
            };
            let entry = container
                .entry(name.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            if let Value::Array(items) = entry {
                for item in added {
                    if !items.iter().any(|i| same_element(i, &item)) {
                        items.push(item);
                    }
                }
            }
        }
        (Op::Replace, Some(value)) if multi => {
            let items = match value {
                Value::Array(items) => items,
                single => vec![single],
            };
            container.insert(name.to_owned(), Value::Array(items));
        }
        (_, Some(Value::Object(values))) => {
            // A complex attribute: the sub-attributes given replace theirs, the others stay.
            let entry = container
                .entry(name.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(target) => {
                    for (key, value) in values {
                        let key = existing_key(target, &key);
                        target.insert(key, value);
                    }
                }
                other => *other = Value::Object(values),
            }
        }
        (_, Some(value)) => {
            container.insert(name.to_owned(), value);
        }
        (_, None) => {}
    }
    Ok(())
}

/// Two elements of a multi-valued attribute are the same when their `value`s are (members,
/// emails), or, without `value`s, when they are equal.
fn same_element(a: &Value, b: &Value) -> bool {
    match (get_ignoring_case(a, "value"), get_ignoring_case(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn apply_to_elements(
    container: &mut Map<String, Value>,
    name: &str,
    filter: &ValFilter,
    sub: Option<&str>,
    op: Op,
    value: Option<Value>,
) -> ScimResult<()> {
    let entry = container
        .entry(name.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(items) = entry else {
        return Err(ScimError::invalid_path(format!(
            "{name} is not multi-valued"
        )));
    };
    let matched: Vec<usize> = (0..items.len())
        .filter(|&i| val_matches(filter, &items[i]))
        .collect();
    match (op, sub) {
        (Op::Remove, None) => {
            let mut index = 0;
            items.retain(|_| {
                let keep = !matched.contains(&index);
                index += 1;
                keep
            });
        }
        (Op::Remove, Some(sub)) => {
            for &i in &matched {
                if let Value::Object(item) = &mut items[i] {
                    let key = existing_key(item, sub);
                    item.remove(&key);
                }
            }
        }
        (Op::Add | Op::Replace, _) => {
            let Some(value) = value else {
                return Ok(());
            };
            if matched.is_empty() {
                // Entra ID replaces `emails[type eq "work"].value` on users without one: the
                // element the filter describes is made.
                let Some(mut element) = element_described_by(filter) else {
                    return Err(ScimError::no_target(format!(
                        "no element of {name} matches the filter"
                    )));
                };
                set_in_element(&mut element, sub, value);
                items.push(Value::Object(element));
            } else {
                for &i in &matched {
                    if let Value::Object(item) = &mut items[i] {
                        set_in_element(item, sub, value.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

fn set_in_element(element: &mut Map<String, Value>, sub: Option<&str>, value: Value) {
    match (sub, value) {
        (Some(sub), value) => {
            let key = existing_key(element, sub);
            element.insert(key, value);
        }
        (None, Value::Object(values)) => {
            for (key, value) in values {
                let key = existing_key(element, &key);
                element.insert(key, value);
            }
        }
        (None, value) => {
            element.insert("value".to_owned(), value);
        }
    }
}

/// The element a filter of `eq`s joined by `and` describes (`type eq "work"`).
fn element_described_by(filter: &ValFilter) -> Option<Map<String, Value>> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value))
            if path.sub_attr.is_none() =>
        {
            let value = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::True => Value::Bool(true),
                CompValue::False => Value::Bool(false),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            Some(Map::from_iter([(path.name.clone(), value)]))
        }
        ValFilter::And(a, b) => {
            let mut element = element_described_by(a)?;
            element.extend(element_described_by(b)?);
            Some(element)
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(mut resource: Value, operations: Value, kind: ResourceKind) -> ScimResult<Value> {
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": operations});
        apply(&mut resource, parse(&body)?, kind)?;
        Ok(resource)
    }

    fn user() -> Value {
        json!({
            "userName": "a@b.example",
            "active": true,
            "name": {"givenName": "Ann", "familyName": "Bee"},
            "emails": [{"value": "a@b.example", "type": "work", "primary": true}],
        })
    }

    #[test]
    fn entra_replaces_with_paths_and_capitalised_ops() {
        let out = patched(
            user(),
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Replace", "path": "name.givenName", "value": "Anna"},
                {"op": "Add", "path": "externalId", "value": "e-1"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "anna@b.example"},
                {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"},
            ]),
            ResourceKind::User,
        )
        .unwrap();
        assert_eq!(out["active"], "False");
        assert_eq!(
            out["name"],
            json!({"givenName": "Anna", "familyName": "Bee"})
        );
        assert_eq!(out["externalId"], "e-1");
        assert_eq!(out["emails"][0]["value"], "anna@b.example");
        assert_eq!(
            out["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
        assert_eq!(out[ENTERPRISE_SCHEMA]["department"], "Ops");
    }

    #[test]
    fn okta_replaces_without_a_path() {
        let out = patched(
            user(),
            json!([{"op": "replace", "value": {"active": false, "name.familyName": "Cee",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"division": "X"}}}]),
            ResourceKind::User,
        )
        .unwrap();
        assert_eq!(out["active"], false);
        assert_eq!(out["name"]["familyName"], "Cee");
        assert_eq!(out["name"]["givenName"], "Ann");
        assert_eq!(out[ENTERPRISE_SCHEMA]["division"], "X");
    }

    #[test]
    fn group_members_are_added_and_removed_in_both_directories_forms() {
        let group = json!({"displayName": "Eng", "members": [{"value": "u1"}, {"value": "u2"}]});
        let out = patched(
            group,
            json!([
                {"op": "Add", "path": "members", "value": [{"value": "u3"}, {"value": "u1"}]},
                {"op": "Remove", "path": "members", "value": [{"value": "u2"}]},
                {"op": "remove", "path": "members[value eq \"u1\"]"},
            ]),
            ResourceKind::Group,
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "u3"}]));
        let out = patched(
            out,
            json!([{"op": "replace", "path": "members", "value": [{"value": "u9"}]},
                   {"op": "replace", "value": {"displayName": "Engineering"}}]),
            ResourceKind::Group,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"displayName": "Engineering", "members": [{"value": "u9"}]})
        );
    }

    #[test]
    fn bad_operations_are_refused_with_their_scim_types() {
        let cases = [
            (json!([{"op": "remove"}]), "noTarget"),
            (json!([{"op": "jump", "path": "active"}]), "invalidSyntax"),
            (
                json!([{"op": "add", "path": "shoeSize", "value": 1}]),
                "invalidPath",
            ),
            (
                json!([{"op": "add", "path": "emails[type eq", "value": 1}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "groups", "value": []}]),
                "mutability",
            ),
            (
                json!([{"op": "replace", "path": "name.shoe", "value": 1}]),
                "invalidPath",
            ),
            (json!([{"op": "replace", "path": "active"}]), "invalidValue"),
            (
                json!([{"op": "replace", "path": "emails[value pr and not (type eq \"x\")].value", "value": "x"}]),
                "noTarget",
            ),
        ];
        for (operations, scim_type) in cases {
            let mut resource = user();
            resource["emails"] = json!([]);
            let error = patched(resource, operations.clone(), ResourceKind::User).unwrap_err();
            assert_eq!(error.scim_type, Some(scim_type), "{operations}");
            assert_eq!(error.status, 400);
        }
        assert_eq!(
            parse(&json!({"Operations": []})).unwrap_err().scim_type,
            Some("invalidSyntax")
        );
    }
}
