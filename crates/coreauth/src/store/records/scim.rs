//! The records of SCIM provisioning: an org's directory tokens, the members it manages with what
//! it said about them, its groups, and the groups → role table.

use super::{Role, UserRecord};

/// A directory's bearer token (never the token itself: its hash stays in the store).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimTokenRecord {
    pub id: i64,
    /// What admins name it by in the API (`GET`/`DELETE …/scim/tokens/{id}`).
    pub public_id: String,
    pub org_id: i64,
    pub name: String,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScimToken {
    pub public_id: String,
    pub org_id: i64,
    pub name: String,
    pub token_hash: Vec<u8>,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

/// A person member of an org as SCIM shows them: the account, the membership, and what the
/// directory said (absent for members it has never written).
#[derive(Debug, Clone, PartialEq)]
pub struct ScimUserRecord {
    pub user: UserRecord,
    pub role: Role,
    pub member_active: bool,
    pub member_since: i64,
    pub external_id: Option<String>,
    /// The resource as the directory last wrote it (JSON), `{}` when it never did.
    pub attributes: String,
    pub updated_at: i64,
    pub version: i64,
}

/// Which members of an org a read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimUserLookup {
    All,
    Uuid(String),
    EmailKey(String),
    UsernameKey(String),
    ExternalId(String),
}

/// What a directory's write says of a member: the account's own fields only where the org may
/// change them (its home org), the membership's state, and the rest of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUserWrite {
    pub org_id: i64,
    pub account: Option<ScimAccountFields>,
    pub member_active: bool,
    pub external_id: Option<String>,
    pub attributes: String,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimAccountFields {
    pub email: String,
    pub email_key: String,
    pub first: String,
    pub last: String,
    /// The login name and its key; `None` clears it.
    pub username: Option<(String, String)>,
}

/// One of an org's directory groups, with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroupRecord {
    pub id: i64,
    pub public_id: String,
    pub org_id: i64,
    pub display_name: String,
    pub external_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    /// Empty when the read asked for none.
    pub members: Vec<ScimGroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimGroupMember {
    pub group_id: i64,
    pub user_id: i64,
    pub uuid: String,
    pub email: String,
}

/// Which groups of an org a read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimGroupLookup {
    All,
    PublicId(String),
    DisplayNameKey(String),
    ExternalId(String),
    /// The groups this user is in.
    WithMember(i64),
}

/// A group as a directory's write leaves it: members by their user ids, which must all be
/// person members of the org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroupWrite {
    pub org_id: i64,
    pub public_id: String,
    pub display_name: String,
    pub display_name_key: String,
    pub external_id: Option<String>,
    pub members: Vec<i64>,
    pub now: i64,
}

/// Which role each group name gives in an org.
pub type GroupRoles = std::collections::BTreeMap<String, Role>;
