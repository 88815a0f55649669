//! SCIM provisioning: the directory's groups, and the roles they give (`store::scim` says how
//! they are settled).

use super::*;
use crate::store::records::{
    GroupRoles, ScimGroupLookup, ScimGroupMember, ScimGroupRecord, ScimGroupWrite,
};

macro_rules! select_scim_group {
    ($rest:literal) => {
        concat!(
            "SELECT id, public_id, org_id, display_name, external_id, created_at, updated_at, ",
            "version FROM scim_groups WHERE org_id = $1 ",
            $rest,
            " ORDER BY id"
        )
    };
}

macro_rules! select_group_members {
    ($where:literal) => {
        concat!(
            "SELECT gm.group_id, u.id AS user_id, u.uuid, u.email FROM scim_group_members gm ",
            "JOIN scim_groups g ON g.id = gm.group_id JOIN users u ON u.id = gm.user_id WHERE ",
            $where,
            " ORDER BY gm.group_id, u.id"
        )
    };
}

#[async_trait]
impl ScimGroupStore for Backend {
    async fn scim_groups(
        &self,
        org_id: i64,
        lookup: &ScimGroupLookup,
        with_members: bool,
    ) -> StoreResult<Vec<ScimGroupRecord>> {
        let (sql, value) = match lookup {
            ScimGroupLookup::All => (select_scim_group!(""), None),
            ScimGroupLookup::PublicId(v) => (select_scim_group!("AND public_id = $2"), Some(v)),
            ScimGroupLookup::DisplayNameKey(v) => {
                (select_scim_group!("AND display_name_key = $2"), Some(v))
            }
            ScimGroupLookup::ExternalId(v) => (select_scim_group!("AND external_id = $2"), Some(v)),
            ScimGroupLookup::WithMember(_) => (
                select_scim_group!(
                    "AND id IN (SELECT group_id FROM scim_group_members WHERE user_id = $2)"
                ),
                None,
            ),
        };
        if value.is_some_and(|v| !storable(v)) {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query_as::<_, ScimGroupRow>(sql).bind(org_id);
        if let Some(value) = value {
            query = query.bind(value);
        }
        if let ScimGroupLookup::WithMember(user_id) = lookup {
            query = query.bind(*user_id);
        }
        let mut groups: Vec<ScimGroupRecord> = query
            .fetch_all(self.reads())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(ScimGroupRecord::from)
            .collect();
        if with_members && !groups.is_empty() {
            let members: Vec<ScimGroupMember> = if let [group] = groups.as_slice() {
                sqlx::query_as(select_group_members!("gm.group_id = $1"))
                    .bind(group.id)
                    .fetch_all(self.reads())
                    .await
            } else {
                sqlx::query_as(select_group_members!("g.org_id = $1"))
                    .bind(org_id)
                    .fetch_all(self.reads())
                    .await
            }
            .map_err(db_error)?;
            let mut members = members.into_iter().peekable();
            for group in &mut groups {
                while let Some(member) = members.next_if(|m| m.group_id <= group.id) {
                    if member.group_id == group.id {
                        group.members.push(member);
                    }
                }
            }
        }
        Ok(groups)
    }

    async fn create_scim_group(
        &self,
        group: &ScimGroupWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<ScimGroupRecord> {
        let mut changed = Vec::new();
        let result = async {
            let mut tx = self.write_tx().await?;
            if !lock_org_memberships(&mut tx, group.org_id).await? {
                return Err(StoreError::NotFound("org"));
            }
            let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
                "INSERT INTO scim_groups (public_id, org_id, display_name, display_name_key, \
                 external_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 RETURNING id",
            )
            .bind(&group.public_id)
            .bind(group.org_id)
            .bind(&group.display_name)
            .bind(&group.display_name_key)
            .bind(group.external_id.as_deref())
            .bind(group.now)
            .fetch_one(&mut *tx)
            .await;
            let id = inserted.map_err(group_conflict)?;
            add_group_members(&mut tx, id, group.org_id, &group.members).await?;
            changed = settle_roles(&mut tx, group.org_id, &group.members).await?;
            finish_group(tx, id, group.org_id, audit).await
        }
        .await;
        self.announce_users(&changed, result.is_err());
        result
    }

    async fn replace_scim_group(
        &self,
        group: &ScimGroupWrite,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ScimGroupRecord>> {
        let mut changed = Vec::new();
        let result = async {
            let mut tx = self.write_tx().await?;
            if !lock_org_memberships(&mut tx, group.org_id).await? {
                return Ok(None);
            }
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM scim_groups WHERE org_id = $1 AND public_id = $2",
            )
            .bind(group.org_id)
            .bind(&group.public_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            let Some(id) = id else {
                return Ok(None);
            };
            sqlx::query(
                "UPDATE scim_groups SET display_name = $1, display_name_key = $2, \
                 external_id = $3, updated_at = $4, version = version + 1 WHERE id = $5",
            )
            .bind(&group.display_name)
            .bind(&group.display_name_key)
            .bind(group.external_id.as_deref())
            .bind(group.now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(group_conflict)?;
            // Only what differs is written: directories add and remove one member at a time to
            // groups of thousands.
            let current: Vec<i64> =
                sqlx::query_scalar("SELECT user_id FROM scim_group_members WHERE group_id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
            let gone: Vec<i64> = current
                .iter()
                .copied()
                .filter(|u| !group.members.contains(u))
                .collect();
            let added: Vec<i64> = group
                .members
                .iter()
                .copied()
                .filter(|u| !current.contains(u))
                .collect();
            for user_id in &gone {
                sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            add_group_members(&mut tx, id, group.org_id, &added).await?;
            // A new name or externalId can match other rows of the table: everyone is settled.
            let everyone: Vec<i64> = current.iter().chain(&added).copied().collect();
            changed = settle_roles(&mut tx, group.org_id, &everyone).await?;
            finish_group(tx, id, group.org_id, audit).await.map(Some)
        }
        .await;
        self.announce_users(&changed, result.is_err());
        result
    }

    async fn delete_scim_group(
        &self,
        org_id: i64,
        public_id: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        if !storable(public_id) {
            return Ok(false);
        }
        let mut changed = Vec::new();
        let result = async {
            let mut tx = self.write_tx().await?;
            if !lock_org_memberships(&mut tx, org_id).await? {
                return Ok(false);
            }
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM scim_groups WHERE org_id = $1 AND public_id = $2",
            )
            .bind(org_id)
            .bind(public_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            let Some(id) = id else {
                return Ok(false);
            };
            let members: Vec<i64> =
                sqlx::query_scalar("SELECT user_id FROM scim_group_members WHERE group_id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
            sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query("DELETE FROM scim_groups WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            changed = settle_roles(&mut tx, org_id, &members).await?;
            insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(true)
        }
        .await;
        self.announce_users(&changed, result.is_err());
        result
    }

    async fn group_roles(&self, org_id: i64) -> StoreResult<GroupRoles> {
        let rows: Vec<(String, String)> = sqlx::query_as(concat!(
            "SELECT group_name, role FROM group_roles WHERE org_id = $1 ORDER BY group_name",
            byte_order!()
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(group, role)| Ok((group, parse_role(&role)?)))
            .collect()
    }

    async fn set_group_roles(
        &self,
        org_id: i64,
        roles: &GroupRoles,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut changed = Vec::new();
        let result = async {
            let mut tx = self.write_tx().await?;
            if !lock_org_memberships(&mut tx, org_id).await? {
                return Err(StoreError::NotFound("org"));
            }
            sqlx::query("DELETE FROM group_roles WHERE org_id = $1")
                .bind(org_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            for (group, role) in roles {
                sqlx::query(
                    "INSERT INTO group_roles (org_id, group_name, role) VALUES ($1, $2, $3)",
                )
                .bind(org_id)
                .bind(group)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            let grouped: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT gm.user_id FROM scim_group_members gm \
                 JOIN scim_groups g ON g.id = gm.group_id WHERE g.org_id = $1",
            )
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            changed = settle_roles(&mut tx, org_id, &grouped).await?;
            insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(db_error)
        }
        .await;
        self.announce_users(&changed, result.is_err());
        result
    }
}

impl Backend {
    /// Announces the members whose roles a group write changed; after a failure, which may have
    /// landed all the same, everything.
    fn announce_users(&self, changed: &[i64], failed: bool) {
        if failed {
            self.changes.announce(&Change::Everything);
        }
        for user_id in changed {
            self.changes.announce(&Change::User(*user_id));
        }
    }
}

fn group_conflict(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict("the org has a group of this displayName".into())
    } else {
        db_error(e)
    }
}

/// Puts person members of the org into the group; any other id is refused.
async fn add_group_members(
    tx: &mut Tx,
    group_id: i64,
    org_id: i64,
    members: &[i64],
) -> StoreResult<()> {
    for user_id in members {
        let added = sqlx::query(
            "INSERT INTO scim_group_members (group_id, user_id) SELECT $1, m.user_id \
             FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $2 AND m.user_id = $3 AND u.kind = 'person' \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(org_id)
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if added == 0 {
            let present: Option<i64> = sqlx::query_scalar(
                "SELECT user_id FROM scim_group_members WHERE group_id = $1 AND user_id = $2",
            )
            .bind(group_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
            if present.is_none() {
                return Err(StoreError::NotFound("member"));
            }
        }
    }
    Ok(())
}

/// Settles the roles of `users` under the org's groups → role table (see `store::scim`);
/// answers whose role changed. Nothing changes while the table is empty.
async fn settle_roles(tx: &mut Tx, org_id: i64, users: &[i64]) -> StoreResult<Vec<i64>> {
    let mapped: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM group_roles WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_error)?;
    let mut changed = Vec::new();
    if mapped == 0 {
        return Ok(changed);
    }
    for &user_id in users {
        let Some(current) = membership_in(tx, user_id, org_id).await? else {
            continue;
        };
        // 'admin' sorts before 'member': the least is the highest role.
        let best: Option<String> = sqlx::query_scalar(
            "SELECT MIN(r.role) FROM scim_group_members gm \
             JOIN scim_groups g ON g.id = gm.group_id \
             JOIN group_roles r ON r.org_id = g.org_id \
             AND (r.group_name = g.display_name OR r.group_name = g.external_id) \
             WHERE gm.user_id = $1 AND g.org_id = $2",
        )
        .bind(user_id)
        .bind(org_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_error)?;
        let role = best.as_deref().map_or(Ok(Role::Member), parse_role)?;
        if role == current.role {
            continue;
        }
        let last_admin = current.role.is_admin()
            && current.is_active
            && other_active_admins(tx, org_id, user_id).await? == 0;
        if last_admin {
            continue;
        }
        sqlx::query("UPDATE memberships SET role = $1 WHERE user_id = $2 AND org_id = $3")
            .bind(role.as_str())
            .bind(user_id)
            .bind(org_id)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        changed.push(user_id);
    }
    Ok(changed)
}

/// Audits the group write, reads the group back with its members and commits.
async fn finish_group(
    mut tx: Tx,
    id: i64,
    org_id: i64,
    audit: &NewAuditEvent,
) -> StoreResult<ScimGroupRecord> {
    insert_audit(&mut tx, audit).await?;
    let row: ScimGroupRow = sqlx::query_as(select_scim_group!("AND id = $2"))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let members: Vec<ScimGroupMember> = sqlx::query_as(select_group_members!("gm.group_id = $1"))
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(ScimGroupRecord {
        members,
        ..ScimGroupRecord::from(row)
    })
}
