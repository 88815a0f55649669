//! What the service publishes about itself (RFC 7643 §5-7): the attributes of its resource
//! types, from one table that also decides which attribute names filters and PATCH paths may
//! use, and the discovery documents made from it.

use serde_json::{Map, Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The most resources one page lists.
pub const MAX_PAGE: usize = 1000;

/// One attribute of a schema.
pub struct Attr {
    pub name: &'static str,
    pub kind: &'static str,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: &'static str,
    pub uniqueness: &'static str,
    pub sub: &'static [Attr],
}

const fn attr(name: &'static str, kind: &'static str) -> Attr {
    Attr {
        name,
        kind,
        multi: false,
        required: false,
        case_exact: false,
        mutability: "readWrite",
        uniqueness: "none",
        sub: &[],
    }
}

const fn complex(name: &'static str, multi: bool, sub: &'static [Attr]) -> Attr {
    Attr {
        multi,
        sub,
        ..attr(name, "complex")
    }
}

const fn read_only(a: Attr) -> Attr {
    Attr {
        mutability: "readOnly",
        ..a
    }
}

const MULTI_VALUE: [Attr; 3] = [
    attr("value", "string"),
    attr("type", "string"),
    attr("primary", "boolean"),
];

pub const USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        uniqueness: "server",
        ..attr("userName", "string")
    },
    complex(
        "name",
        false,
        &[
            attr("formatted", "string"),
            attr("familyName", "string"),
            attr("givenName", "string"),
            attr("middleName", "string"),
            attr("honorificPrefix", "string"),
            attr("honorificSuffix", "string"),
        ],
    ),
    attr("displayName", "string"),
    attr("nickName", "string"),
    attr("title", "string"),
    attr("userType", "string"),
    attr("preferredLanguage", "string"),
    attr("locale", "string"),
    attr("timezone", "string"),
    attr("active", "boolean"),
    complex("emails", true, &MULTI_VALUE),
    complex("phoneNumbers", true, &MULTI_VALUE),
    complex(
        "addresses",
        true,
        &[
            attr("formatted", "string"),
            attr("streetAddress", "string"),
            attr("locality", "string"),
            attr("region", "string"),
            attr("postalCode", "string"),
            attr("country", "string"),
            attr("type", "string"),
            attr("primary", "boolean"),
        ],
    ),
    read_only(complex(
        "groups",
        true,
        &[
            read_only(attr("value", "string")),
            read_only(attr("$ref", "reference")),
            read_only(attr("display", "string")),
        ],
    )),
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    attr("employeeNumber", "string"),
    attr("costCenter", "string"),
    attr("organization", "string"),
    attr("division", "string"),
    attr("department", "string"),
    complex(
        "manager",
        false,
        &[
            attr("value", "string"),
            attr("$ref", "reference"),
            read_only(attr("displayName", "string")),
        ],
    ),
];

pub const GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        uniqueness: "server",
        ..attr("displayName", "string")
    },
    complex(
        "members",
        true,
        &[
            Attr {
                mutability: "immutable",
                ..attr("value", "string")
            },
            Attr {
                mutability: "immutable",
                ..attr("$ref", "reference")
            },
        ],
    ),
];

/// The attributes every resource has (RFC 7643 §3.1), outside its schemas.
const COMMON: [&str; 4] = ["id", "externalId", "meta", "schemas"];

/// What a filter or PATCH path is resolved against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    User,
    Group,
    /// One element of a multi-valued attribute (inside a value path's brackets).
    Element,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::Element => "the element",
        }
    }

    fn core_schema(self) -> Option<&'static str> {
        match self {
            Self::User => Some(USER_SCHEMA),
            Self::Group => Some(GROUP_SCHEMA),
            Self::Element => None,
        }
    }

    /// The schema `uri` names for this resource, and its attributes; `None`: not one of its.
    pub fn schema(self, uri: Option<&str>) -> Option<&'static [Attr]> {
        match (self, uri) {
            (Self::Element, _) => None,
            (Self::User, Some(uri)) if uri.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
                Some(ENTERPRISE_ATTRS)
            }
            (_, Some(uri))
                if !self
                    .core_schema()
                    .is_some_and(|c| uri.eq_ignore_ascii_case(c)) =>
            {
                None
            }
            (Self::User, _) => Some(USER_ATTRS),
            (Self::Group, _) => Some(GROUP_ATTRS),
        }
    }

    /// The attribute `name` of the schema `uri` names (the core schema when `None`).
    pub fn attribute(self, uri: Option<&str>, name: &str) -> Option<&'static Attr> {
        self.schema(uri)?
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Whether `name` (of the schema `uri` names) is an attribute of this resource.
    pub fn knows(self, uri: Option<&str>, name: &str) -> bool {
        if self == Self::Element {
            return true;
        }
        let common = uri.is_none() && COMMON.iter().any(|c| c.eq_ignore_ascii_case(name));
        common || self.attribute(uri, name).is_some()
    }

    /// The object of `resource` holding the attributes of schema `uri`.
    pub fn container<'a>(self, resource: &'a Value, uri: Option<&str>) -> Option<&'a Value> {
        match uri {
            Some(uri)
                if !self
                    .core_schema()
                    .is_some_and(|c| uri.eq_ignore_ascii_case(c)) =>
            {
                super::filter::get_ignoring_case(resource, uri)
            }
            _ => Some(resource),
        }
    }
}

fn describe(attrs: &[Attr]) -> Vec<Value> {
    attrs
        .iter()
        .map(|a| {
            let mut d = json!({
                "name": a.name,
                "type": a.kind,
                "multiValued": a.multi,
                "description": a.name,
                "required": a.required,
                "mutability": a.mutability,
                "returned": "default",
            });
            if matches!(a.kind, "string" | "reference") {
                d["caseExact"] = a.case_exact.into();
                d["uniqueness"] = a.uniqueness.into();
            }
            if a.kind == "reference" {
                d["referenceTypes"] = json!(["User"]);
            }
            if !a.sub.is_empty() {
                d["subAttributes"] = describe(a.sub).into();
            }
            d
        })
        .collect()
}

fn meta(resource_type: &str, location: String) -> Value {
    json!({ "resourceType": resource_type, "location": location })
}

fn schema_document(base: &str, id: &str, name: &str, attrs: &[Attr]) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": name,
        "attributes": describe(attrs),
        "meta": meta("Schema", format!("{base}/Schemas/{id}")),
    })
}

/// Every schema, by id.
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_document(base, USER_SCHEMA, "User", USER_ATTRS),
        schema_document(base, ENTERPRISE_SCHEMA, "EnterpriseUser", ENTERPRISE_ATTRS),
        schema_document(base, GROUP_SCHEMA, "Group", GROUP_ATTRS),
    ]
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "description": "A person member of the org",
            "endpoint": "/Users",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": meta("ResourceType", format!("{base}/ResourceTypes/User")),
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "description": "A group of the org's directory",
            "endpoint": "/Groups",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": meta("ResourceType", format!("{base}/ResourceTypes/Group")),
        }),
    ]
}

pub fn service_provider_config(base: &str, documentation: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": documentation,
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "An org's SCIM token, from POST /admin/orgs/{orgId}/scim/tokens",
            "primary": true,
        }],
        "meta": meta("ServiceProviderConfig", format!("{base}/ServiceProviderConfig")),
    })
}

/// A list response (RFC 7644 §3.4.2) of one page.
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    let mut list = Map::new();
    list.insert("schemas".into(), json!([LIST_SCHEMA]));
    list.insert("totalResults".into(), total.into());
    list.insert("startIndex".into(), start_index.into());
    list.insert("itemsPerPage".into(), resources.len().into());
    list.insert("Resources".into(), resources.into());
    Value::Object(list)
}
