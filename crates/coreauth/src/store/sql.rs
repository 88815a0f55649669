//! The `Store` both SQL backends share: every statement and transaction written once, compiled
//! once for each backend. `sqlite.rs` and `postgres.rs` each include this file as a module of
//! their own (`#[path = "sql.rs"]`), after defining what it takes from `super`: the store type
//! (`Backend`), its connection and transaction types, the pools it reads and writes on
//! (`reads`, `writes`, `write_tx`), how a database error maps (`db_error`), which text the
//! database can hold (`storable`), the audit insert, the `locking!` suffix for row locks, and
//! the few operations whose SQL really differs (`dialect` methods on `Backend`).
//!
//! Why this and not generic code over `sqlx::Database`, a query builder or `sqlx::Any`: each
//! copy is concrete, so there are no trait bounds to spell out for every bound value and row,
//! statements stay static strings `sqlx` prepares once and caches per connection, and nothing
//! is converted at run time (`Any` copies every row into its own value type and knows neither
//! SQLite's single writer nor PostgreSQL's locks). The cost is compiling this file twice, as
//! the two hand copies it replaces were. Placeholders are `$N` in both: SQLite takes `$N` as
//! the N-th parameter, as PostgreSQL does.
//!
//! Locks: SQLite has one writer (`write_tx` is `BEGIN IMMEDIATE` on the writer connection), so
//! what PostgreSQL must lock (READ COMMITTED, several instances) is already serialised there;
//! `locking!` adds the row lock on PostgreSQL and nothing on SQLite.

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{Backend, Conn, Tx, db_error, insert_audit, insert_default_org, lock_table, storable};
use crate::store::changes::{Change, Changes};
use crate::store::records::{
    ApiKeyContext, ApiKeyRecord, AuditQuery, AuditRecord, IntegrationRecord, MemberRecord,
    MembershipPatch, MembershipRecord, NewApiKey, NewAuditEvent, NewUser, OrgRecord,
    PASSWORD_HISTORY_KEPT, PasswordChange, PasswordPolicy, Renewal, Revoked, Role, SessionContext,
    SessionRecord, SsoConfigRecord, SsoLoginRecord, StoredSigningKey, TotpRecord, UserPatch,
    UserRecord,
};
use crate::store::rows::*;
use crate::store::{Store, StoreError, StoreResult};

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

type Query<'q> = sqlx::query::Query<'q, <Conn as sqlx::Connection>::Database, QueryArguments>;
type QueryArguments = <<Conn as sqlx::Connection>::Database as sqlx::Database>::Arguments;

/// Binds an event to `insert_audit_sql!`'s thirteen parameters.
pub(super) fn bind_audit<'q>(query: Query<'q>, e: &NewAuditEvent) -> Query<'q> {
    query
        .bind(e.occurred_at)
        .bind(&e.event)
        .bind(if e.success { "success" } else { "failure" })
        .bind(e.reason.as_deref())
        .bind(e.org_id)
        .bind(e.actor_user_id)
        .bind(e.subject_user_id)
        .bind(e.subject.as_deref())
        .bind(e.address.as_deref())
        .bind(e.user_agent.as_deref())
        .bind(e.client.as_deref())
        .bind(e.request_id.as_deref())
        .bind(e.details.to_string())
}

/// Binds a session to `insert_session_sql!`'s fourteen parameters.
pub(super) fn bind_session<'q>(query: Query<'q>, s: &SessionRecord) -> Query<'q> {
    query
        .bind(&s.id)
        .bind(s.user_id)
        .bind(s.org_id)
        .bind(&s.method)
        .bind(s.client.as_deref())
        .bind(s.address.as_deref())
        .bind(s.user_agent.as_deref())
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.token_expires_at)
        .bind(s.last_renewed_at)
        .bind(s.renew_count)
        .bind(s.revoked_at)
        .bind(s.restriction.as_deref())
}

/// Forgets a throttle counter (`clear_throttle`; a login clears its own in `create_session`).
pub(super) async fn delete_throttle(conn: &mut Conn, key: &str) -> StoreResult<()> {
    if !storable(key) {
        return Ok(());
    }
    sqlx::query("DELETE FROM throttle WHERE key = $1")
        .bind(key)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// Records the deletion of `row` (if one was deleted) and commits.
async fn finish_key_deletion(
    mut tx: Tx,
    row: Option<ApiKeyRow>,
    audit: &NewAuditEvent,
) -> StoreResult<Option<ApiKeyRecord>> {
    let Some(row) = row else {
        return Ok(None);
    };
    let mut audit = audit.clone();
    audit.subject = Some(row.public_id.clone());
    audit.subject_user_id = Some(row.user_id);
    audit.details["name"] = row.name.clone().into();
    insert_audit(&mut tx, &audit).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(Some(row.into()))
}

async fn insert_sso_identity(
    tx: &mut Tx,
    org_id: i64,
    (issuer, subject): (&str, &str),
    user_id: i64,
    now: i64,
) -> StoreResult<()> {
    let result = sqlx::query(
        "INSERT INTO sso_identities (org_id, issuer, subject, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org_id)
    .bind(issuer)
    .bind(subject)
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "this identity is already linked to an account".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

/// Deletes the user's API keys, or those in `in_org` only; answers how many.
async fn delete_keys_in(tx: &mut Tx, user_id: i64, in_org: Option<i64>) -> StoreResult<u64> {
    sqlx::query(
        "DELETE FROM api_keys WHERE user_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR org_id = $2)",
    )
    .bind(user_id)
    .bind(in_org)
    .execute(&mut **tx)
    .await
    .map(|done| done.rows_affected())
    .map_err(db_error)
}

/// Whether org `id` exists, read in `tx`.
async fn org_exists(tx: &mut Tx, id: i64) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(found.is_some())
}

async fn user_in(tx: &mut Tx, id: i64) -> StoreResult<Option<UserRecord>> {
    let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(row.map(UserRecord::from))
}

async fn insert_user(tx: &mut Tx, user: &NewUser) -> StoreResult<i64> {
    let result: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO users (uuid, email, email_key, first, last, is_active, is_platform_admin, \
         password_hash, password_set_at, created_at, home_org_id) \
         VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(&user.uuid)
    .bind(&user.email)
    .bind(&user.email_key)
    .bind(&user.first)
    .bind(&user.last)
    .bind(user.is_platform_admin)
    .bind(user.password_hash.as_deref())
    .bind(user.password_hash.as_ref().map(|_| user.created_at))
    .bind(user.created_at)
    .bind(user.membership.map(|(org_id, _)| org_id))
    .fetch_one(&mut **tx)
    .await;
    match result {
        Ok(id) => Ok(id),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "a user with this email already exists".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn insert_membership(
    tx: &mut Tx,
    org_id: i64,
    user_id: i64,
    role: Role,
    now: i64,
) -> StoreResult<()> {
    if !org_exists(tx, org_id).await? {
        return Err(StoreError::NotFound("org"));
    }
    let result = sqlx::query(
        "INSERT INTO memberships (user_id, org_id, role, is_active, created_at) \
         VALUES ($1, $2, $3, TRUE, $4)",
    )
    .bind(user_id)
    .bind(org_id)
    .bind(role.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "the user is already a member of this org".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn membership_in(
    tx: &mut Tx,
    user_id: i64,
    org_id: i64,
) -> StoreResult<Option<MembershipRecord>> {
    let row: Option<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIP)
        .bind(user_id)
        .bind(org_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    row.map(MembershipRecord::try_from).transpose()
}

#[async_trait]
impl Store for Backend {
    fn changes(&self) -> &Changes {
        &self.changes
    }

    async fn foreign_write_marker(&self) -> StoreResult<Option<i64>> {
        self.data_version().await
    }

    async fn member(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MemberRecord>> {
        self.read_member(user_id, org_id).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.writes())
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Unavailable)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows: Vec<(String, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT kid, algorithm, private_key, created_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(kid, algorithm, seed, created_at)| StoredSigningKey {
                kid,
                algorithm,
                seed: Zeroizing::new(seed),
                created_at,
            })
            .collect())
    }

    async fn insert_first_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
        self.insert_first_key(key).await
    }

    async fn bootstrap(
        &self,
        admin: NewUser,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<UserRecord>> {
        let mut tx = self.write_tx().await?;
        // Two instances starting together on PostgreSQL would both see no user: the lock makes
        // the second wait, then count the first one's admin and change nothing.
        lock_table(&mut tx, "users").await?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if users > 0 {
            return Ok(None);
        }
        insert_default_org(&mut tx, now).await?;
        let user_id = insert_user(&mut tx, &admin).await?;
        insert_membership(&mut tx, 1, user_id, Role::Admin, now).await?;
        let mut audit = audit.clone();
        audit.subject_user_id = Some(user_id);
        audit.org_id = Some(1);
        insert_audit(&mut tx, &audit).await?;
        let user = user_in(&mut tx, user_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user)
    }

    async fn user_by_email(&self, email_key: &str) -> StoreResult<Option<UserRecord>> {
        if !storable(email_key) {
            return Ok(None);
        }
        let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE email_key = $1"))
            .bind(email_key)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        Ok(row.map(UserRecord::from))
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(select_user!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        Ok(row.map(UserRecord::from))
    }

    async fn create_user(&self, user: NewUser, audit: &NewAuditEvent) -> StoreResult<UserRecord> {
        let mut tx = self.write_tx().await?;
        let user_id = insert_user(&mut tx, &user).await?;
        if let Some((org_id, role)) = user.membership {
            insert_membership(&mut tx, org_id, user_id, role, user.created_at).await?;
            if let Some((issuer, subject)) = &user.sso_identity {
                insert_sso_identity(
                    &mut tx,
                    org_id,
                    (issuer.as_str(), subject.as_str()),
                    user_id,
                    user.created_at,
                )
                .await?;
            }
        }
        let mut audit = audit.clone();
        audit.subject_user_id = Some(user_id);
        insert_audit(&mut tx, &audit).await?;
        let created = user_in(&mut tx, user_id)
            .await?
            .ok_or_else(|| StoreError::internal("inserted user vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(UserRecord, Revoked)>> {
        let _changed = self.changes.on_return(Change::User(id));
        let mut tx = self.write_tx().await?;
        // One statement: the row lock it takes makes concurrent patches apply one after the
        // other, each to the other's result.
        let updated: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET first = COALESCE($1, first), last = COALESCE($2, last), \
             is_active = COALESCE($3, is_active) WHERE id = $4 RETURNING id",
        )
        .bind(patch.first.as_deref())
        .bind(patch.last.as_deref())
        .bind(patch.is_active)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.is_none() {
            return Ok(None);
        }
        let mut revoked = Revoked::default();
        if patch.is_active == Some(false) {
            revoked.sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        let user = user_in(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(user.map(|u| (u, revoked)))
    }

    async fn create_org(
        &self,
        name: &str,
        email_domains: &[String],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<OrgRecord> {
        let mut tx = self.write_tx().await?;
        let id: i64 =
            sqlx::query_scalar("INSERT INTO orgs (name, created_at) VALUES ($1, $2) RETURNING id")
                .bind(name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        for domain in email_domains {
            sqlx::query(
                "INSERT INTO org_email_domains (org_id, domain) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let mut audit = audit.clone();
        audit.org_id = Some(id);
        audit.subject = Some(format!("org:{id}"));
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        let mut domains = email_domains.to_vec();
        domains.sort();
        domains.dedup();
        Ok(OrgRecord {
            id,
            name: name.to_owned(),
            email_domains: domains,
        })
    }

    async fn org(&self, id: i64) -> StoreResult<Option<OrgRecord>> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        let Some(name) = name else {
            return Ok(None);
        };
        let email_domains: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT domain FROM org_email_domains WHERE org_id = $1 ORDER BY domain",
            byte_order!()
        ))
        .bind(id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(Some(OrgRecord {
            id,
            name,
            email_domains,
        }))
    }

    async fn memberships_of(&self, user_id: i64) -> StoreResult<Vec<MembershipRecord>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, m.is_active \
             FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 \
             ORDER BY m.org_id",
        )
        .bind(user_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        rows.into_iter().map(MembershipRecord::try_from).collect()
    }

    async fn membership(&self, user_id: i64, org_id: i64) -> StoreResult<Option<MembershipRecord>> {
        let row: Option<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIP)
            .bind(user_id)
            .bind(org_id)
            .fetch_optional(self.reads())
            .await
            .map_err(db_error)?;
        row.map(MembershipRecord::try_from).transpose()
    }

    async fn add_membership(
        &self,
        org_id: i64,
        user_id: i64,
        role: Role,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<MembershipRecord> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        if user_in(&mut tx, user_id).await?.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        insert_membership(&mut tx, org_id, user_id, role, now).await?;
        insert_audit(&mut tx, audit).await?;
        let membership = membership_in(&mut tx, user_id, org_id)
            .await?
            .ok_or_else(|| StoreError::internal("inserted membership vanished"))?;
        tx.commit().await.map_err(db_error)?;
        Ok(membership)
    }

    async fn update_membership(
        &self,
        org_id: i64,
        user_id: i64,
        patch: &MembershipPatch,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<(MembershipRecord, Revoked)>> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        // Membership changes within one org go one at a time: without this, two admins demoting
        // each other at once would each count the other as the remaining admin, and two partial
        // patches of one membership would each write back the other's old value. NO KEY UPDATE
        // does not conflict with the key-share locks that logins take on the org row (through
        // the sessions foreign key), so logins are not held up.
        let org: Option<i64> = sqlx::query_scalar(locking!("SELECT id FROM orgs WHERE id = $1"))
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if org.is_none() {
            return Ok(None);
        }
        let Some(current) = membership_in(&mut tx, user_id, org_id).await? else {
            return Ok(None);
        };
        let role = patch.role.unwrap_or(current.role);
        let is_active = patch.is_active.unwrap_or(current.is_active);
        let stays_admin = role.is_admin() && is_active;
        if current.role.is_admin() && current.is_active && !stays_admin {
            let other_admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.org_id = $1 AND m.user_id <> $2 AND m.role = 'admin' \
                 AND m.is_active AND u.is_active",
            )
            .bind(org_id)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if other_admins == 0 {
                return Err(StoreError::Conflict(
                    "an org must keep at least one active admin".into(),
                ));
            }
        }
        sqlx::query(
            "UPDATE memberships SET role = $1, is_active = $2 WHERE user_id = $3 AND org_id = $4",
        )
        .bind(role.as_str())
        .bind(is_active)
        .bind(user_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut revoked = Revoked::default();
        if !is_active {
            revoked.sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 \
                 WHERE user_id = $2 AND org_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        }
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        let updated = membership_in(&mut tx, user_id, org_id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated.map(|m| (m, revoked)))
    }

    async fn create_session(
        &self,
        session: &SessionRecord,
        audit: &NewAuditEvent,
        clears: Option<&str>,
    ) -> StoreResult<()> {
        self.open_session(session, audit, clears).await
    }

    async fn session_context(&self, id: &str) -> StoreResult<Option<SessionContext>> {
        if !storable(id) {
            return Ok(None);
        }
        let row: Option<SessionContextRow> = sqlx::query_as(
            "SELECT s.id, s.user_id, s.org_id, s.method, s.client, s.address, s.user_agent, \
             s.created_at, s.expires_at, s.token_expires_at, s.last_renewed_at, s.renew_count, \
             s.revoked_at, s.restriction, u.uuid AS user_uuid, u.is_active AS user_active, \
             u.is_platform_admin, m.role, m.is_active AS membership_active \
             FROM sessions s \
             JOIN users u ON u.id = s.user_id \
             JOIN memberships m ON m.user_id = s.user_id AND m.org_id = s.org_id \
             WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        row.map(|r| {
            Ok(SessionContext {
                role: parse_role(&r.role)?,
                session: std::sync::Arc::new(r.session.into()),
                user_uuid: r.user_uuid.into(),
                user_active: r.user_active,
                is_platform_admin: r.is_platform_admin,
                membership_active: r.membership_active,
            })
        })
        .transpose()
    }

    async fn record_renewals(&self, renewals: &[Renewal]) -> StoreResult<()> {
        let done = self.write_renewals(renewals).await;
        for renewal in renewals {
            self.changes.announce(&match &done {
                Ok(()) => Change::Renewed(renewal.clone()),
                Err(_) => Change::Session(renewal.session_id.clone()),
            });
        }
        done
    }

    async fn revoke_session(
        &self,
        id: &str,
        user_id: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::Session(id.to_owned()));
        if !storable(id) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        // The row lock makes a second, concurrent revocation wait, re-read the row and find it
        // revoked already: one revocation, one event.
        let renew_count: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL AND (CAST($3 AS BIGINT) IS NULL OR user_id = $3) \
             RETURNING renew_count",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(renew_count) = renew_count else {
            return Ok(false);
        };
        let mut audit = audit.clone();
        audit.details["renewCount"] = renew_count.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn revoke_sessions_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
             AND (CAST($3 AS BIGINT) IS NULL OR org_id = $3)",
        )
        .bind(now)
        .bind(user_id)
        .bind(in_org)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let revoked = Revoked {
            sessions: done.rows_affected(),
        };
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn lift_session_restriction(
        &self,
        session_id: &str,
        restriction: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self
            .changes
            .on_return(Change::Session(session_id.to_owned()));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE sessions SET restriction = NULL WHERE id = $1 AND restriction = $2 \
             AND revoked_at IS NULL",
        )
        .bind(session_id)
        .bind(restriction)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn live_sessions_of(&self, user_id: i64, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, user_id, org_id, method, client, address, user_agent, created_at, \
             expires_at, token_expires_at, last_renewed_at, renew_count, revoked_at, restriction \
             FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND token_expires_at > $2 \
             AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(SessionRecord::from).collect())
    }
    async fn create_api_key(
        &self,
        key: NewApiKey,
        max_per_user: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord> {
        let mut tx = self.write_tx().await?;
        // Creations for one user go one at a time, so two at once cannot both count the same
        // number of keys and both pass the cap. NO KEY UPDATE leaves the key-share locks that
        // other inserts take on the user row (through foreign keys) alone.
        sqlx::query(locking!("SELECT id FROM users WHERE id = $1"))
            .bind(key.user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE user_id = $1")
            .bind(key.user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if owned >= max_per_user {
            return Err(StoreError::Conflict(format!(
                "a user may have at most {max_per_user} API keys; delete one first"
            )));
        }
        let row: ApiKeyRow = sqlx::query_as(returning_api_key!(
            "INSERT INTO api_keys (public_id, user_id, org_id, name, prefix, key_hash, read_only, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&key.public_id)
        .bind(key.user_id)
        .bind(key.org_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(key.read_only)
        .bind(key.created_at)
        .bind(key.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(row.into())
    }

    async fn api_key_context(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyContext>> {
        let row: Option<ApiKeyContextRow> = sqlx::query_as(api_key_columns!(
            "SELECT",
            ", u.uuid AS user_uuid, u.is_active AS user_active, u.is_platform_admin, m.role, \
             m.is_active AS membership_active FROM api_keys k \
             JOIN users u ON u.id = k.user_id \
             JOIN memberships m ON m.user_id = k.user_id AND m.org_id = k.org_id \
             WHERE k.key_hash = $1"
        ))
        .bind(key_hash)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        row.map(|r| {
            Ok(ApiKeyContext {
                role: parse_role(&r.role)?,
                key: std::sync::Arc::new(r.key.into()),
                user_uuid: r.user_uuid.into(),
                user_active: r.user_active,
                is_platform_admin: r.is_platform_admin,
                membership_active: r.membership_active,
            })
        })
        .transpose()
    }

    async fn api_keys_of(&self, user_id: i64, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(api_key_columns!(
            "SELECT",
            "FROM api_keys k WHERE k.user_id = $1 AND k.org_id = $2 ORDER BY k.id"
        ))
        .bind(user_id)
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn api_keys_in_org(&self, org_id: i64) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(api_key_columns!(
            "SELECT",
            "FROM api_keys k WHERE k.org_id = $1 ORDER BY k.id"
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    async fn delete_api_key(
        &self,
        public_id: &str,
        owner: Option<i64>,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        if !storable(public_id) {
            return Ok(None);
        }
        // Whose key it was is known once it is deleted; a failure before that may be anyone's.
        let mut changed = self.changes.on_return(Change::Everything);
        let mut tx = self.write_tx().await?;
        let row: Option<ApiKeyRow> = sqlx::query_as(returning_api_key!(
            "DELETE FROM api_keys WHERE public_id = $1 AND org_id = $2 \
             AND (CAST($3 AS BIGINT) IS NULL OR user_id = $3)"
        ))
        .bind(public_id)
        .bind(org_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        changed.instead(row.as_ref().map(|key| Change::User(key.user_id)));
        finish_key_deletion(tx, row, audit).await
    }

    async fn delete_api_key_by_hash(
        &self,
        key_hash: &[u8],
        owner: i64,
        org_id: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let mut changed = self.changes.on_return(Change::Everything);
        let mut tx = self.write_tx().await?;
        let row: Option<ApiKeyRow> = sqlx::query_as(returning_api_key!(
            "DELETE FROM api_keys WHERE key_hash = $1 AND org_id = $2 AND user_id = $3"
        ))
        .bind(key_hash)
        .bind(org_id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        changed.instead(row.as_ref().map(|key| Change::User(key.user_id)));
        finish_key_deletion(tx, row, audit).await
    }

    async fn delete_api_keys_of(
        &self,
        user_id: i64,
        in_org: Option<i64>,
        audit: &NewAuditEvent,
    ) -> StoreResult<u64> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        let deleted = delete_keys_in(&mut tx, user_id, in_org).await?;
        let mut audit = audit.clone();
        audit.details["keysDeleted"] = deleted.into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    async fn record_api_key_usage(&self, usage: &[(i64, i64, Option<String>)]) -> StoreResult<()> {
        // Every instance flushes its own batch: taking the row locks in key order means two
        // flushes over the same keys wait for each other instead of deadlocking.
        let mut ordered: Vec<&(i64, i64, Option<String>)> = usage.iter().collect();
        ordered.sort_by_key(|(id, at, _)| (*id, *at));
        let mut tx = self.write_tx().await?;
        for (id, at, address) in ordered {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1, last_used_address = $2 \
                 WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at)
            .bind(address.as_deref())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn note_api_key_address(
        &self,
        key_id: i64,
        address: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // A concurrent insert of the same pair waits for the first to commit, then does nothing:
        // the first use from an address is recorded, and audited, once.
        let done = sqlx::query(
            "INSERT INTO api_key_addresses (key_id, address, first_seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(key_id)
        .bind(address)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let first = done.rows_affected() == 1;
        if first {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(first)
    }

    async fn record_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        // A transaction of its own, for the advisory lock that insert_audit holds to commit.
        let mut tx = self.write_tx().await?;
        insert_audit(&mut tx, event).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        if q.event.as_deref().is_some_and(|event| !storable(event)) {
            return Ok(Vec::new());
        }
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, occurred_at, event, outcome, reason, org_id, actor_user_id, \
             subject_user_id, subject, address, user_agent, client, request_id, details \
             FROM audit_events \
             WHERE (CAST($1 AS BIGINT) IS NULL OR org_id = $1) \
             AND (CAST($2 AS BIGINT) IS NULL OR actor_user_id = $2 OR subject_user_id = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR event = $3) \
             AND (CAST($4 AS BIGINT) IS NULL OR occurred_at >= $4) \
             AND (CAST($5 AS BIGINT) IS NULL OR occurred_at < $5) \
             AND (CAST($6 AS BIGINT) IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7",
        )
        .bind(q.org_id)
        .bind(q.user_id)
        .bind(q.event.as_deref())
        .bind(q.since)
        .bind(q.until)
        .bind(q.before)
        .bind(i64::from(q.limit))
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    async fn password_policy(&self, org_id: i64) -> StoreResult<Option<PasswordPolicy>> {
        let row: Option<(i64, i64, i64, bool, bool)> = sqlx::query_as(
            "SELECT min_length, max_age_days, history_count, reject_common, require_mfa \
             FROM password_policies WHERE org_id = $1",
        )
        .bind(org_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        Ok(row.map(
            |(min_length, max_age_days, history_count, reject_common, require_mfa)| {
                let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
                PasswordPolicy {
                    min_length: clamp(min_length),
                    max_age_days: clamp(max_age_days),
                    history_count: clamp(history_count),
                    reject_common,
                    require_mfa,
                }
            },
        ))
    }

    async fn set_password_policy(
        &self,
        org_id: i64,
        policy: &PasswordPolicy,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::Org(org_id));
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        sqlx::query(
            "INSERT INTO password_policies \
             (org_id, min_length, max_age_days, history_count, reject_common, require_mfa, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (org_id) DO UPDATE SET min_length = excluded.min_length, \
             max_age_days = excluded.max_age_days, history_count = excluded.history_count, \
             reject_common = excluded.reject_common, require_mfa = excluded.require_mfa, \
             updated_at = excluded.updated_at",
        )
        .bind(org_id)
        .bind(i64::from(policy.min_length))
        .bind(i64::from(policy.max_age_days))
        .bind(i64::from(policy.history_count))
        .bind(policy.reject_common)
        .bind(policy.require_mfa)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn password_history(&self, user_id: i64, limit: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT password_hash FROM password_history WHERE user_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn set_password(
        &self,
        change: &PasswordChange,
        audit: &NewAuditEvent,
    ) -> StoreResult<Revoked> {
        let _changed = self.changes.on_return(Change::User(change.user_id));
        let mut tx = self.write_tx().await?;
        // The row stays locked until commit: a concurrent change waits here, then reads the hash
        // this one wrote, and is refused if it had decided against the old one.
        let current: Option<Option<String>> =
            sqlx::query_scalar(locking!("SELECT password_hash FROM users WHERE id = $1"))
                .bind(change.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let Some(current) = current else {
            return Err(StoreError::NotFound("user"));
        };
        if let Some(expected) = &change.expected_hash
            && current.as_ref() != Some(expected)
        {
            return Err(StoreError::Conflict(
                "the password was changed meanwhile; try again".into(),
            ));
        }
        if let Some(old) = &current {
            sqlx::query(
                "INSERT INTO password_history (user_id, password_hash, set_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(change.user_id)
            .bind(old)
            .bind(change.now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "DELETE FROM password_history WHERE user_id = $1 AND id NOT IN \
                 (SELECT id FROM password_history WHERE user_id = $1 ORDER BY id DESC LIMIT $2)",
            )
            .bind(change.user_id)
            .bind(PASSWORD_HISTORY_KEPT)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        sqlx::query(
            "UPDATE users SET password_hash = $1, password_set_at = $2, \
             must_change_password = $3 WHERE id = $4",
        )
        .bind(&change.new_hash)
        .bind(change.now)
        .bind(change.must_change)
        .bind(change.user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND (CAST($3 AS TEXT) IS NULL OR id <> $3)",
        )
        .bind(change.now)
        .bind(change.user_id)
        .bind(change.keep_session.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let revoked = Revoked {
            sessions: done.rows_affected(),
        };
        let mut audit = audit.clone();
        audit.details["sessionsRevoked"] = revoked.sessions.into();
        if change.delete_api_keys {
            let deleted = delete_keys_in(&mut tx, change.user_id, None).await?;
            audit.details["keysDeleted"] = deleted.into();
        }
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::User(user_id));
        // Conditional on the old hash, re-checked after any concurrent change's row lock: a
        // password changed meanwhile is never overwritten by the upgrade.
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user_id)
                .bind(old_hash)
                .execute(self.writes())
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn totp_of(&self, user_id: i64) -> StoreResult<Option<TotpRecord>> {
        let row: Option<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT secret, confirmed_at, last_used_step FROM mfa_totp WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        Ok(
            row.map(|(sealed_secret, confirmed_at, last_used_step)| TotpRecord {
                sealed_secret,
                confirmed_at,
                last_used_step,
            }),
        )
    }

    async fn save_totp_enrollment(
        &self,
        user_id: i64,
        sealed_secret: &str,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        // One statement: replaces an unconfirmed enrolment, and leaves a confirmed one alone
        // even if it was confirmed a moment ago by another request (the upsert re-reads the
        // row under its lock), which it then reports as the conflict.
        let done = sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
             created_at = excluded.created_at, confirmed_at = NULL, last_used_step = NULL \
             WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed_secret)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "TOTP is already enabled; disable it first to enrol again".into(),
            ));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn confirm_totp(
        &self,
        user_id: i64,
        step: i64,
        recovery_code_hashes: &[Vec<u8>],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        // Two confirmations at once: the second waits for the first's row lock, re-reads the
        // row, finds it confirmed and changes nothing.
        let done = sqlx::query(
            "UPDATE mfa_totp SET confirmed_at = $1, last_used_step = $2 \
             WHERE user_id = $3 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for hash in recovery_code_hashes {
            sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        sqlx::query(
            "UPDATE sessions SET restriction = NULL \
             WHERE user_id = $1 AND restriction IS NOT NULL",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn consume_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool> {
        // One conditional UPDATE: parallel replays of a code queue on the row lock, and each
        // after the first re-evaluates the condition against the step the first stored.
        let done = sqlx::query(
            "UPDATE mfa_totp SET last_used_step = $1 WHERE user_id = $2 \
             AND confirmed_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(self.writes())
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: i64,
        code_hash: &[u8],
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // The sub-select runs once, before any lock; the outer `used_at IS NULL` is what a
        // concurrent use of the same code re-checks after waiting for the row lock, so the
        // second use changes nothing.
        let done = sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $1 \
             WHERE used_at IS NULL AND id = (SELECT id FROM mfa_recovery_codes \
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL LIMIT 1)",
        )
        .bind(now)
        .bind(user_id)
        .bind(code_hash)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn reseal_totp(&self, user_id: i64, sealed_secret: &str) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::User(user_id));
        sqlx::query("UPDATE mfa_totp SET secret = $1 WHERE user_id = $2")
            .bind(sealed_secret)
            .bind(user_id)
            .execute(self.writes())
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    async fn delete_totp(&self, user_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::User(user_id));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn save_integration(
        &self,
        i: &IntegrationRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, i.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        sqlx::query(
            "INSERT INTO integrations (org_id, name, algorithm, secret, audience, issuer, \
             lifetime_secs, claims, custom_claims, allow_api_keys, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (org_id, name) DO UPDATE SET algorithm = excluded.algorithm, \
             secret = excluded.secret, audience = excluded.audience, issuer = excluded.issuer, \
             lifetime_secs = excluded.lifetime_secs, claims = excluded.claims, \
             custom_claims = excluded.custom_claims, allow_api_keys = excluded.allow_api_keys, \
             updated_at = excluded.updated_at",
        )
        .bind(i.org_id)
        .bind(&i.name)
        .bind(i.algorithm.as_str())
        .bind(i.sealed_secret.as_deref())
        .bind(&i.audience)
        .bind(i.issuer.as_deref())
        .bind(i64::from(i.lifetime_secs))
        .bind(serde_json::to_string(&i.claims).map_err(StoreError::internal)?)
        .bind(serde_json::Value::Object(i.custom_claims.clone()).to_string())
        .bind(i.allow_api_keys)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn integration(&self, org_id: i64, name: &str) -> StoreResult<Option<IntegrationRecord>> {
        if !storable(name) {
            return Ok(None);
        }
        let row: Option<IntegrationRow> =
            sqlx::query_as(select_integration!("WHERE org_id = $1 AND name = $2"))
                .bind(org_id)
                .bind(name)
                .fetch_optional(self.reads())
                .await
                .map_err(db_error)?;
        row.map(IntegrationRecord::try_from).transpose()
    }

    async fn integrations_of(&self, org_id: i64) -> StoreResult<Vec<IntegrationRecord>> {
        let rows: Vec<IntegrationRow> = sqlx::query_as(concat!(
            select_integration!("WHERE org_id = $1 ORDER BY name"),
            byte_order!()
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        rows.into_iter().map(IntegrationRecord::try_from).collect()
    }

    async fn delete_integration(
        &self,
        org_id: i64,
        name: &str,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool> {
        if !storable(name) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM integrations WHERE org_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn hit_throttle(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        self.count_attempts(keys, now, window_ms).await
    }

    async fn clear_throttle(&self, key: &str) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        delete_throttle(&mut conn, key).await
    }

    async fn prune_throttle(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM throttle WHERE window_start < $1")
            .bind(before)
            .execute(self.writes())
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }
    async fn save_sso_config(
        &self,
        c: &SsoConfigRecord,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let _changed = self.changes.on_return(Change::Org(c.org_id));
        let taken = |domain: &str| {
            StoreError::Conflict(format!(
                "the domain {domain} already signs in through another org's SSO"
            ))
        };
        let mut tx = self.write_tx().await?;
        if !org_exists(&mut tx, c.org_id).await? {
            return Err(StoreError::NotFound("org"));
        }
        for domain in &c.email_domains {
            let owner: Option<i64> =
                sqlx::query_scalar("SELECT org_id FROM sso_domains WHERE domain = $1")
                    .bind(domain)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if owner.is_some_and(|o| o != c.org_id) {
                return Err(taken(domain));
            }
        }
        // Saves of one org's settings queue on this row (the upsert locks it), so the delete and
        // re-insert of its domains below never interleave with another save's.
        sqlx::query(
            "INSERT INTO sso_configs (org_id, issuer, client_id, client_secret, allow_jit, \
             allow_password, redirect_allow_list, updated_at, pending_domains) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (org_id) DO UPDATE SET issuer = excluded.issuer, \
             client_id = excluded.client_id, client_secret = excluded.client_secret, \
             allow_jit = excluded.allow_jit, allow_password = excluded.allow_password, \
             redirect_allow_list = excluded.redirect_allow_list, updated_at = excluded.updated_at, \
             pending_domains = excluded.pending_domains",
        )
        .bind(c.org_id)
        .bind(&c.issuer)
        .bind(&c.client_id)
        .bind(&c.sealed_client_secret)
        .bind(c.allow_jit)
        .bind(c.allow_password)
        .bind(serde_json::to_string(&c.redirect_allow_list).map_err(StoreError::internal)?)
        .bind(now)
        .bind(serde_json::to_string(&c.pending_domains).map_err(StoreError::internal)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM sso_domains WHERE org_id = $1")
            .bind(c.org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for domain in &c.email_domains {
            // Another org claiming the domain at the same moment passed the check above too;
            // the primary key lets one of them have it and refuses the other the same way.
            sqlx::query("INSERT INTO sso_domains (domain, org_id) VALUES ($1, $2)")
                .bind(domain)
                .bind(c.org_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        taken(domain)
                    } else {
                        db_error(e)
                    }
                })?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn sso_config(&self, org_id: i64) -> StoreResult<Option<SsoConfigRecord>> {
        let row: Option<(String, String, String, bool, bool, String, String)> = sqlx::query_as(
            "SELECT issuer, client_id, client_secret, allow_jit, allow_password, \
             redirect_allow_list, pending_domains FROM sso_configs WHERE org_id = $1",
        )
        .bind(org_id)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)?;
        let Some((
            issuer,
            client_id,
            sealed_client_secret,
            allow_jit,
            allow_password,
            list,
            pending,
        )) = row
        else {
            return Ok(None);
        };
        let email_domains: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT domain FROM sso_domains WHERE org_id = $1 ORDER BY domain",
            byte_order!()
        ))
        .bind(org_id)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(Some(SsoConfigRecord {
            org_id,
            issuer,
            client_id,
            sealed_client_secret,
            email_domains,
            pending_domains: serde_json::from_str(&pending)
                .map_err(|_| StoreError::internal("stored pending SSO domains"))?,
            allow_jit,
            allow_password,
            redirect_allow_list: serde_json::from_str(&list)
                .map_err(|_| StoreError::internal("stored SSO allow-list"))?,
        }))
    }

    async fn delete_sso_config(&self, org_id: i64, audit: &NewAuditEvent) -> StoreResult<bool> {
        let _changed = self.changes.on_return(Change::Org(org_id));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM sso_configs WHERE org_id = $1")
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM sso_domains WHERE org_id = $1")
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn sso_org_for_domain(&self, domain: &str) -> StoreResult<Option<i64>> {
        if !storable(domain) {
            return Ok(None);
        }
        sqlx::query_scalar(
            "SELECT d.org_id FROM sso_domains d JOIN sso_configs c ON c.org_id = d.org_id \
             WHERE d.domain = $1",
        )
        .bind(domain)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)
    }

    async fn orgs_holding_domain(&self, domain: &str) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT org_id FROM org_email_domains WHERE domain = $1 \
             UNION SELECT org_id FROM sso_domains WHERE domain = $1",
        )
        .bind(domain)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)
    }

    async fn sso_identity(
        &self,
        org_id: i64,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(
            "SELECT user_id FROM sso_identities WHERE org_id = $1 AND issuer = $2 AND subject = $3",
        )
        .bind(org_id)
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.reads())
        .await
        .map_err(db_error)
    }

    async fn link_sso_identity(
        &self,
        org_id: i64,
        identity: (&str, &str),
        user_id: i64,
        now: i64,
        audit: &NewAuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_sso_identity(&mut tx, org_id, identity, user_id, now).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_sso_login(&self, l: &SsoLoginRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sso_logins (state, org_id, nonce, pkce_verifier, return_to, client, \
             created_at, expires_at, link_user_id, browser_binding) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&l.state)
        .bind(l.org_id)
        .bind(&l.nonce)
        .bind(&l.sealed_pkce_verifier)
        .bind(l.return_to.as_deref())
        .bind(l.client.as_deref())
        .bind(l.created_at)
        .bind(l.expires_at)
        .bind(l.link_user_id)
        .bind(l.browser_binding.as_deref())
        .execute(self.writes())
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn take_sso_login(&self, state: &str, now: i64) -> StoreResult<Option<SsoLoginRecord>> {
        if !storable(state) {
            return Ok(None);
        }
        // One conditional UPDATE: two callbacks with the same state (on any instances) queue on
        // the row lock, and the second re-reads `used_at` and takes nothing.
        let row: Option<SsoLoginRow> = sqlx::query_as(
            "UPDATE sso_logins SET used_at = $1 WHERE state = $2 AND used_at IS NULL \
             RETURNING state, org_id, nonce, pkce_verifier, return_to, client, created_at, \
             expires_at, link_user_id, browser_binding",
        )
        .bind(now)
        .bind(state)
        .fetch_optional(self.writes())
        .await
        .map_err(db_error)?;
        Ok(row.map(SsoLoginRecord::from))
    }

    async fn prune_sso_logins(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM sso_logins WHERE used_at IS NOT NULL OR expires_at < $1")
            .bind(before)
            .execute(self.writes())
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }

    async fn audit_events_after(&self, after_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        // Complete up to the newest id read: see insert_audit for why no lower id can appear
        // later.
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, occurred_at, event, outcome, reason, org_id, actor_user_id, \
             subject_user_id, subject, address, user_agent, client, request_id, details \
             FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.reads())
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        sqlx::query("DELETE FROM audit_events WHERE occurred_at < $1")
            .bind(before)
            .execute(self.writes())
            .await
            .map(|done| done.rows_affected())
            .map_err(db_error)
    }
}
