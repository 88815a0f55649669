//! Users: the records are the store's (`store::records`); this is how the domain makes them
//! from validated parts.

pub use crate::store::records::{NewUser, UserPatch, UserRecord};

use super::email::Email;
use super::org::Name;

impl NewUser {
    /// A new person from validated parts, with a fresh uuid: no password, no platform power,
    /// no membership and no SSO identity until the caller sets them.
    pub fn person(email: &Email, first: Name, last: Name, created_at: i64) -> Self {
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_owned(),
            email_key: email.key(),
            first: first.into_string(),
            last: last.into_string(),
            password_hash: None,
            is_platform_admin: false,
            created_at,
            membership: None,
            sso_identity: None,
        }
    }
}
