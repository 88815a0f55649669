//! A member's profile as the cache keeps and shares it.

use std::sync::OnceLock;

use crate::store::records::{MemberRecord, OrgRecord, PasswordPolicy, UserRecord};

/// What `/user/me` and a renewal show about a member: the user, the org, the org's policy and
/// whether the user has a second factor. Read-only once made and shared (`Arc`) by the cache and
/// the requests that use it: a cache hit copies nothing and touches one allocation.
#[derive(Debug)]
pub struct MemberProfile {
    member: MemberRecord,
    /// This profile as the HTTP layer shows it (its part of the `/user/me` answer), rendered the
    /// first time it is asked for. It cannot go stale: the fields it is rendered from never
    /// change, and any change to the member is seen as a new read, hence a new profile with an
    /// empty slot.
    shown: OnceLock<Box<[u8]>>,
}

impl MemberProfile {
    pub fn new(member: MemberRecord) -> Self {
        Self {
            member,
            shown: OnceLock::new(),
        }
    }

    pub fn user(&self) -> &UserRecord {
        &self.member.user
    }

    pub fn org(&self) -> &OrgRecord {
        &self.member.org
    }

    /// The org's policy, or the defaults when it has none.
    pub fn policy(&self) -> &PasswordPolicy {
        &self.member.policy
    }

    /// Whether the user has a confirmed second factor.
    pub fn mfa_enabled(&self) -> bool {
        self.member.mfa_enabled
    }

    /// A profile of user `user_id` (uuid `u-<id>`) in org `org_id`, default policy, no second
    /// factor: the fixture of tests across the crate.
    #[cfg(test)]
    pub fn for_tests(user_id: i64, org_id: i64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::new(MemberRecord {
            user: UserRecord {
                id: user_id,
                uuid: format!("u-{user_id}"),
                email: "a@b.example".into(),
                first: "A".into(),
                last: "B".into(),
                is_active: true,
                is_platform_admin: false,
                password_hash: None,
                password_set_at: None,
                must_change_password: false,
                created_at: 0,
                home_org_id: None,
                last_org_id: None,
                username: None,
                is_service: false,
                email_verified_at: None,
            },
            org: OrgRecord {
                id: org_id,
                name: "Org".into(),
                email_domains: vec![],
            },
            policy: PasswordPolicy::default(),
            mfa_enabled: false,
        }))
    }

    /// The rendering `render` makes of this profile, made once per profile read (a failed one
    /// is tried again next time).
    pub fn shown<E>(&self, render: impl FnOnce(&Self) -> Result<Box<[u8]>, E>) -> Result<&[u8], E> {
        if let Some(shown) = self.shown.get() {
            return Ok(shown);
        }
        let rendered = render(self)?;
        Ok(self.shown.get_or_init(|| rendered))
    }
}
