//! Users: the record the store keeps, and what it takes to create or change one.

use super::email::Email;
use super::org::{Name, Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub uuid: String,
    pub email: String,
    pub first: String,
    pub last: String,
    pub is_active: bool,
    pub is_platform_admin: bool,
    /// Absent for users who only sign in through SSO.
    pub password_hash: Option<String>,
    pub password_set_at: Option<i64>,
    pub must_change_password: bool,
    pub created_at: i64,
    /// The org the account was created in (`None` only for accounts that never had one):
    /// account-wide administration belongs to its admins and to platform admins.
    pub home_org_id: Option<i64>,
    /// The org of the user's newest session, where a login without `selectedOrg` goes when the
    /// home membership is inactive.
    pub last_org_id: Option<i64>,
}

/// A user to create, already validated.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub uuid: String,
    pub email: Email,
    pub first: Name,
    pub last: Name,
    pub password_hash: Option<String>,
    pub is_platform_admin: bool,
    pub created_at: i64,
    /// The org the user joins on creation, and as what: their home org.
    pub membership: Option<(i64, Role)>,
    /// The identity `(issuer, subject)` at that org's SSO provider that created the account
    /// (just-in-time provisioning), linked in the same transaction.
    pub sso_identity: Option<(String, String)>,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub first: Option<Name>,
    pub last: Option<Name>,
    pub is_active: Option<bool>,
}
