//! The store's SCIM traits: an org's directory tokens and the members its directory manages
//! (`ScimStore`), its groups and the groups → role table (`ScimGroupStore`). Implemented once for
//! both databases in `sql/scim.rs` and `sql/scim_groups.rs`.
//!
//! A change to a member's groups, or to the table, settles the roles it affects in the same
//! transaction: a member in a mapped group has the highest role its groups give, any other
//! member of an org whose table maps groups is a member; the org's last active admin keeps the
//! role (an org is never left without one by its directory).

use async_trait::async_trait;

use super::StoreResult;
use super::records::{
    GroupRoles, NewAuditEvent, NewScimToken, NewUser, Revoked, Role, ScimGroupLookup,
    ScimGroupRecord, ScimGroupWrite, ScimTokenRecord, ScimUserLookup, ScimUserRecord,
    ScimUserWrite,
};

#[async_trait]
pub trait ScimStore: Send + Sync {
    async fn create_scim_token(
        &self,
        token: &NewScimToken,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimTokenRecord>;

    async fn scim_tokens(&self, org_id: i64) -> StoreResult<Vec<ScimTokenRecord>>;

    /// Revokes (deletes) a token of the org; whether there was one.
    async fn delete_scim_token(
        &self,
        org_id: i64,
        public_id: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// The token with this hash, its use noted when the last note is older than a minute.
    async fn use_scim_token(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<ScimTokenRecord>>;

    /// The org's person members that `lookup` names, by user id.
    async fn scim_users(
        &self,
        org_id: i64,
        lookup: &ScimUserLookup,
    ) -> StoreResult<Vec<ScimUserRecord>>;

    /// A new account (its membership in `user.membership`) and the directory's record of it.
    async fn create_scim_user(
        &self,
        user: NewUser,
        write: &ScimUserWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimUserRecord>;

    /// An existing account made a member of the org, as `role`, by its directory.
    async fn link_scim_user(
        &self,
        user_id: i64,
        role: Role,
        write: &ScimUserWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimUserRecord>;

    /// A member rewritten by the directory; deactivation ends their sessions in the org (their
    /// keys there stop with the membership). `None`: not a member.
    async fn update_scim_user(
        &self,
        user_id: i64,
        write: &ScimUserWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(ScimUserRecord, Revoked)>>;

    /// The membership removed, with the member's sessions and API keys in the org and their
    /// place in its groups. `None`: not a member.
    async fn remove_scim_user(
        &self,
        org_id: i64,
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<Revoked>>;
}

/// The directory's groups and the groups → role table.
#[async_trait]
pub trait ScimGroupStore: Send + Sync {
    /// The org's groups that `lookup` names, by id, with their members when asked.
    async fn scim_groups(
        &self,
        org_id: i64,
        lookup: &ScimGroupLookup,
        with_members: bool,
    ) -> StoreResult<Vec<ScimGroupRecord>>;

    /// A new group (a conflict when the org has one of that name).
    async fn create_scim_group(
        &self,
        group: &ScimGroupWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimGroupRecord>;

    /// The group rewritten as a whole, members included; `None`: no such group.
    async fn replace_scim_group(
        &self,
        group: &ScimGroupWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ScimGroupRecord>>;

    async fn delete_scim_group(
        &self,
        org_id: i64,
        public_id: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    async fn group_roles(&self, org_id: i64) -> StoreResult<GroupRoles>;

    /// Replaces the org's table and settles every member's role under it.
    async fn set_group_roles(
        &self,
        org_id: i64,
        roles: &GroupRoles,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
}
