//! Filters (RFC 7644 §3.4.2.2), parsed by `scim_v2` and evaluated here against a resource as it
//! is shown (its JSON), so every attribute a resource shows can be filtered on the same way.
//! Attribute names are matched without regard to case, as are string values except those of
//! `caseExact` attributes (`id`, `externalId`, `meta.version`).

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

use super::error::{ScimError, ScimResult};
use super::schemas::ResourceKind;

/// At most this many characters of filter are read: longer ones are not a directory's.
const MAX_FILTER_CHARS: usize = 4096;

pub fn parse(text: &str, kind: ResourceKind) -> ScimResult<Filter> {
    if text.chars().count() > MAX_FILTER_CHARS {
        return Err(ScimError::invalid_filter(format!(
            "a filter is at most {MAX_FILTER_CHARS} characters"
        )));
    }
    let filter: Filter = text
        .parse()
        .map_err(|e| ScimError::invalid_filter(format!("the filter does not parse: {e}")))?;
    check_paths(&filter, kind)?;
    Ok(filter)
}

/// Refuses a filter naming an attribute the resource type does not have.
fn check_paths(filter: &Filter, kind: ResourceKind) -> ScimResult<()> {
    match filter {
        Filter::Attr(exp) => check_path(attr_path(exp), kind),
        Filter::ValuePath(vp) => check_path(&vp.attr, kind),
        Filter::Not(inner) => check_paths(inner, kind),
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_paths(a, kind)?;
            check_paths(b, kind)
        }
    }
}

fn check_path(path: &AttrPath, kind: ResourceKind) -> ScimResult<()> {
    if kind.knows(path.uri.as_deref(), &path.name) {
        Ok(())
    } else {
        Err(ScimError::invalid_filter(format!(
            "{path} is not an attribute of {}",
            kind.name()
        )))
    }
}

/// Whether the filter reads attribute `name` (of the core schema) anywhere.
pub fn reads(filter: &Filter, name: &str) -> bool {
    let named = |path: &AttrPath| path.uri.is_none() && path.name.eq_ignore_ascii_case(name);
    match filter {
        Filter::Attr(exp) => named(attr_path(exp)),
        Filter::ValuePath(vp) => named(&vp.attr),
        Filter::Not(inner) => reads(inner, name),
        Filter::And(a, b) | Filter::Or(a, b) => reads(a, name) || reads(b, name),
    }
}

fn attr_path(exp: &AttrExp) -> &AttrPath {
    match exp {
        AttrExp::Present(path) | AttrExp::Comparison(path, _, _) => path,
    }
}

/// Whether the resource (as shown) matches.
pub fn matches(filter: &Filter, resource: &Value, kind: ResourceKind) -> bool {
    match filter {
        Filter::Attr(exp) => attr_matches(exp, resource, kind),
        Filter::ValuePath(vp) => elements_of(resource, &vp.attr, kind)
            .iter()
            .any(|element| val_matches(&vp.filter, element)),
        Filter::Not(inner) => !matches(inner, resource, kind),
        Filter::And(a, b) => matches(a, resource, kind) && matches(b, resource, kind),
        Filter::Or(a, b) => matches(a, resource, kind) || matches(b, resource, kind),
    }
}

/// A value filter, within the brackets of a value path, against one element.
pub fn val_matches(filter: &ValFilter, element: &Value) -> bool {
    match filter {
        ValFilter::Attr(exp) => attr_matches(exp, element, ResourceKind::Element),
        ValFilter::Not(inner) => !val_matches(inner, element),
        ValFilter::And(a, b) => val_matches(a, element) && val_matches(b, element),
        ValFilter::Or(a, b) => val_matches(a, element) || val_matches(b, element),
    }
}

fn attr_matches(exp: &AttrExp, resource: &Value, kind: ResourceKind) -> bool {
    match exp {
        AttrExp::Present(path) => values_of(resource, path, kind)
            .iter()
            .any(|v| is_present(v)),
        AttrExp::Comparison(path, op, expected) => {
            let exact = is_case_exact(path);
            let found = values_of(resource, path, kind);
            if found.is_empty() {
                // `ne` matches what does not have the value, absent included.
                return *op == CompareOp::Ne;
            }
            match op {
                CompareOp::Ne => !found
                    .iter()
                    .any(|v| compare(v, &CompareOp::Eq, expected, exact)),
                _ => found.iter().any(|v| compare(v, op, expected, exact)),
            }
        }
    }
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn is_case_exact(path: &AttrPath) -> bool {
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub_attr.as_deref().map(str::to_ascii_lowercase);
    matches!(
        (name.as_str(), sub.as_deref()),
        ("id" | "externalid", None) | ("meta", Some("version"))
    )
}

/// The elements of the attribute `path` names (one for a single-valued attribute).
fn elements_of<'a>(resource: &'a Value, path: &AttrPath, kind: ResourceKind) -> Vec<&'a Value> {
    let attribute = kind
        .container(resource, path.uri.as_deref())
        .and_then(|base| get_ignoring_case(base, &path.name));
    match attribute {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
    }
}

/// The values `path` names in `resource`: a multi-valued attribute gives each element's value
/// (its `value` sub-attribute when the elements are complex and no sub-attribute is named).
fn values_of<'a>(resource: &'a Value, path: &AttrPath, kind: ResourceKind) -> Vec<&'a Value> {
    let elements = elements_of(resource, path, kind);
    match &path.sub_attr {
        Some(sub) => elements
            .into_iter()
            .filter_map(|e| get_ignoring_case(e, sub))
            .collect(),
        None => elements
            .into_iter()
            .map(|e| match e {
                Value::Object(_) => get_ignoring_case(e, "value").unwrap_or(e),
                other => other,
            })
            .collect(),
    }
}

pub fn get_ignoring_case<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn compare(found: &Value, op: &CompareOp, expected: &CompValue, exact: bool) -> bool {
    match (found, expected) {
        (Value::String(found), CompValue::Str(expected)) => {
            let (found, expected) = if exact {
                (found.clone(), expected.clone())
            } else {
                (found.to_lowercase(), expected.to_lowercase())
            };
            match op {
                CompareOp::Eq => found == expected,
                CompareOp::Ne => found != expected,
                CompareOp::Co => found.contains(&expected),
                CompareOp::Sw => found.starts_with(&expected),
                CompareOp::Ew => found.ends_with(&expected),
                CompareOp::Gt => found > expected,
                CompareOp::Ge => found >= expected,
                CompareOp::Lt => found < expected,
                CompareOp::Le => found <= expected,
            }
        }
        (Value::Bool(found), CompValue::True | CompValue::False) => {
            let expected = matches!(expected, CompValue::True);
            match op {
                CompareOp::Eq => *found == expected,
                CompareOp::Ne => *found != expected,
                _ => false,
            }
        }
        (Value::Number(found), CompValue::Number(expected)) => {
            let (Some(found), Some(expected)) = (found.as_f64(), expected.as_f64()) else {
                return false;
            };
            match op {
                CompareOp::Eq => found == expected,
                CompareOp::Ne => found != expected,
                CompareOp::Gt => found > expected,
                CompareOp::Ge => found >= expected,
                CompareOp::Lt => found < expected,
                CompareOp::Le => found <= expected,
                _ => false,
            }
        }
        (Value::Null, CompValue::Null) => *op == CompareOp::Eq,
        _ => false,
    }
}

/// The one attribute and value of a filter `attr eq "value"`, when it is that simple: the
/// lookups directories make before every create, answered from an index instead of a scan.
pub fn simple_equality(filter: &Filter) -> Option<(String, &str)> {
    match filter {
        Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value)))
            if path.sub_attr.is_none() =>
        {
            Some((path.name.to_ascii_lowercase(), value.as_str()))
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user() -> Value {
        json!({
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "Bjensen@Example.com",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@home.example", "type": "home"}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Tour"}
        })
    }

    fn check(text: &str) -> bool {
        let filter = parse(text, ResourceKind::User).unwrap();
        matches(&filter, &user(), ResourceKind::User)
    }

    #[test]
    fn the_operators_directories_send_match_without_regard_to_case() {
        assert!(check(r#"userName eq "bjensen@example.com""#));
        assert!(check(r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#));
        assert!(check(r#"userName sw "bjen""#));
        assert!(check(r#"userName co "@example""#));
        assert!(check(r#"userName ew ".com""#));
        assert!(!check(r#"userName eq "jsmith@example.com""#));
        assert!(check(r#"name.familyName eq "jensen" and active eq true"#));
        assert!(check(r#"name.familyName eq "smith" or active eq true"#));
        assert!(!check(r#"not (active eq true)"#));
        assert!(check(r#"title pr or userName pr"#));
        assert!(!check(r#"title pr"#));
        assert!(check(r#"title ne "boss""#));
    }

    #[test]
    fn multi_valued_attributes_match_any_element_and_value_paths_one_element() {
        assert!(check(r#"emails co "home.example""#));
        assert!(check(r#"emails.type eq "home""#));
        assert!(check(
            r#"emails[type eq "work" and value co "example.com"]"#
        ));
        assert!(!check(
            r#"emails[type eq "home" and value co "example.com"]"#
        ));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour""#
        ));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "b""#
        ));
    }

    #[test]
    fn ids_are_case_exact() {
        assert!(check(r#"id eq "2819c223-7f76-453a-919d-413861904646""#));
        assert!(!check(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
    }

    #[test]
    fn malformed_filters_and_unknown_attributes_are_invalid_filters() {
        for text in [
            r#"userName eq"#,
            r#"userName zz "x""#,
            r#"(userName eq "x""#,
            r#"shoeSize gt 10"#,
            r#"urn:example:unknown:attr eq "x""#,
        ] {
            let error = parse(text, ResourceKind::User).unwrap_err();
            assert_eq!(error.status, 400, "{text}");
            assert_eq!(error.scim_type, Some("invalidFilter"), "{text}");
        }
    }

    #[test]
    fn the_simple_lookups_are_recognised() {
        let filter = parse(r#"userName eq "a@b.example""#, ResourceKind::User).unwrap();
        assert_eq!(
            simple_equality(&filter),
            Some(("username".to_owned(), "a@b.example"))
        );
        let filter = parse(r#"userName eq "a" and active eq true"#, ResourceKind::User).unwrap();
        assert_eq!(simple_equality(&filter), None);
        let filter = parse(
            r#"displayName eq "members" or members.value eq "u1""#,
            ResourceKind::Group,
        )
        .unwrap();
        assert!(reads(&filter, "members"));
        let filter = parse(r#"displayName eq "members""#, ResourceKind::Group).unwrap();
        assert!(!reads(&filter, "members"));
    }
}
