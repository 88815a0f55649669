//! The rows both SQL backends read, as `sqlx` decodes them (generic over the database, so
//! written and compiled once), with their conversions into records, and the column lists the
//! statements share.

use sqlx::FromRow;

use super::error::{StoreError, StoreResult};
use super::records::{
    ApiKeyRecord, AuditRecord, IntegrationAlgorithm, IntegrationKind, IntegrationRecord,
    InvitationRecord, MembershipRecord, NewAuditEvent, PasswordPolicy, Role, ServiceAccountRecord,
    SessionRecord, UserRecord,
};
use super::records::{ScimGroupRecord, ScimUserRecord};

/// `SELECT <every user column> FROM users <rest>` as one static string.
macro_rules! select_user {
    ($rest:literal) => {
        concat!(
            "SELECT id, uuid, email, first, last, is_active, is_platform_admin, password_hash, ",
            "password_set_at, must_change_password, created_at, home_org_id, last_org_id, username, ",
            "kind = 'service' AS is_service, email_verified_at FROM users ",
            $rest
        )
    };
}

#[derive(FromRow)]
pub(super) struct MembershipRow {
    pub(super) user_id: i64,
    pub(super) org_id: i64,
    pub(super) org_name: String,
    pub(super) role: String,
    pub(super) is_active: bool,
}

impl TryFrom<MembershipRow> for MembershipRecord {
    type Error = StoreError;
    fn try_from(r: MembershipRow) -> StoreResult<Self> {
        Ok(Self {
            user_id: r.user_id,
            org_id: r.org_id,
            org_name: r.org_name,
            role: parse_role(&r.role)?,
            is_active: r.is_active,
        })
    }
}

pub(super) fn parse_role(stored: &str) -> StoreResult<Role> {
    Role::from_stored(stored).ok_or_else(|| StoreError::internal(format!("stored role {stored:?}")))
}

#[derive(FromRow)]
pub(super) struct SessionContextRow {
    #[sqlx(flatten)]
    pub(super) session: SessionRecord,
    pub(super) user_uuid: String,
    pub(super) user_active: bool,
    pub(super) is_platform_admin: bool,
    pub(super) role: String,
    pub(super) membership_active: bool,
}

#[derive(FromRow)]
pub(super) struct ApiKeyContextRow {
    #[sqlx(flatten)]
    pub(super) key: ApiKeyRecord,
    pub(super) user_uuid: String,
    pub(super) user_active: bool,
    pub(super) role: String,
    pub(super) membership_active: bool,
}

/// `<before>` every api_keys column (as `k.…`) `<after>`, as one static string.
macro_rules! api_key_columns {
    ($before:literal, $after:literal) => {
        concat!(
            $before,
            " k.id, k.public_id, k.user_id, k.org_id, k.name, k.prefix, k.scopes, k.created_at, ",
            "k.expires_at, k.last_used_at, k.last_used_address, k.replaced_by, k.replaced_at ",
            $after
        )
    };
}

/// `<statement> RETURNING <every api_keys column>`, as one static string.
macro_rules! returning_api_key {
    ($statement:literal) => {
        concat!(
            $statement,
            " RETURNING id, public_id, user_id, org_id, name, prefix, scopes, created_at, ",
            "expires_at, last_used_at, last_used_address, replaced_by, replaced_at"
        )
    };
}

#[derive(FromRow)]
pub(super) struct ServiceAccountRow {
    pub(super) user_id: i64,
    pub(super) uuid: String,
    pub(super) org_id: i64,
    pub(super) name: String,
    pub(super) role: String,
    pub(super) is_active: bool,
    pub(super) created_at: i64,
}

impl ServiceAccountRow {
    pub(super) fn into_record(self) -> StoreResult<ServiceAccountRecord> {
        Ok(ServiceAccountRecord {
            role: parse_role(&self.role)?,
            user_id: self.user_id,
            uuid: self.uuid,
            org_id: self.org_id,
            name: self.name,
            is_active: self.is_active,
            created_at: self.created_at,
        })
    }
}

/// `SELECT <a service account> FROM users u JOIN memberships m <rest>`: its membership is the
/// one in its home org.
macro_rules! service_account_columns {
    ($rest:literal) => {
        concat!(
            "SELECT u.id AS user_id, u.uuid, m.org_id, u.first AS name, m.role, ",
            "u.is_active AS is_active, u.created_at FROM users u ",
            "JOIN memberships m ON m.user_id = u.id AND m.org_id = u.home_org_id ",
            $rest
        )
    };
}

#[derive(FromRow)]
pub(super) struct InvitationRow {
    pub(super) id: i64,
    pub(super) public_id: String,
    pub(super) org_id: i64,
    pub(super) email: String,
    pub(super) email_key: String,
    pub(super) role: String,
    pub(super) invited_by: Option<i64>,
    pub(super) created_at: i64,
    pub(super) expires_at: i64,
    pub(super) accepted_at: Option<i64>,
    pub(super) accepted_by: Option<i64>,
    pub(super) revoked_at: Option<i64>,
}

impl InvitationRow {
    pub(super) fn into_record(self) -> StoreResult<InvitationRecord> {
        Ok(InvitationRecord {
            role: parse_role(&self.role)?,
            id: self.id,
            public_id: self.public_id,
            org_id: self.org_id,
            email: self.email,
            email_key: self.email_key,
            invited_by: self.invited_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
            accepted_at: self.accepted_at,
            accepted_by: self.accepted_by,
            revoked_at: self.revoked_at,
        })
    }
}

/// `SELECT <every invitations column> FROM invitations <rest>`.
macro_rules! select_invitation {
    ($rest:literal) => {
        concat!(
            "SELECT id, public_id, org_id, email, email_key, role, invited_by, created_at, ",
            "expires_at, accepted_at, accepted_by, revoked_at FROM invitations ",
            $rest
        )
    };
}

#[derive(FromRow)]
pub(super) struct AuditRow {
    pub(super) id: i64,
    pub(super) occurred_at: i64,
    pub(super) event: String,
    pub(super) outcome: String,
    pub(super) reason: Option<String>,
    pub(super) org_id: Option<i64>,
    pub(super) actor_user_id: Option<i64>,
    pub(super) subject_user_id: Option<i64>,
    pub(super) subject: Option<String>,
    pub(super) address: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) client: Option<String>,
    pub(super) request_id: Option<String>,
    pub(super) details: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            event: NewAuditEvent {
                occurred_at: r.occurred_at,
                event: r.event,
                success: r.outcome == "success",
                reason: r.reason,
                org_id: r.org_id,
                actor_user_id: r.actor_user_id,
                subject_user_id: r.subject_user_id,
                subject: r.subject,
                address: r.address,
                user_agent: r.user_agent,
                client: r.client,
                request_id: r.request_id,
                details: serde_json::from_str(&r.details).unwrap_or_default(),
            },
        }
    }
}

#[derive(FromRow)]
pub(super) struct IntegrationRow {
    pub(super) org_id: i64,
    pub(super) name: String,
    pub(super) algorithm: String,
    pub(super) secret: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) lifetime_secs: i64,
    pub(super) claims: String,
    pub(super) custom_claims: String,
    pub(super) allow_api_keys: bool,
    pub(super) remote: Option<String>,
}

/// How `kind` is stored: `algorithm` (`remote` for a remote one), `audience`, `issuer`, `remote`.
pub(super) type StoredKind<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<String>);

pub(super) fn stored_kind(kind: &IntegrationKind) -> StoreResult<StoredKind<'_>> {
    Ok(match kind {
        IntegrationKind::Jwt {
            algorithm,
            audience,
            issuer,
        } => (
            algorithm.as_str(),
            Some(audience.as_str()),
            issuer.as_deref(),
            None,
        ),
        IntegrationKind::Remote(endpoint) => (
            REMOTE_ALGORITHM,
            None,
            None,
            Some(serde_json::to_string(endpoint).map_err(StoreError::internal)?),
        ),
    })
}

const REMOTE_ALGORITHM: &str = "remote";

impl TryFrom<IntegrationRow> for IntegrationRecord {
    type Error = StoreError;
    fn try_from(r: IntegrationRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::internal(format!("stored integration {what}"));
        let kind = match (r.algorithm.as_str(), r.remote, r.audience) {
            (REMOTE_ALGORITHM, Some(remote), None) => IntegrationKind::Remote(
                serde_json::from_str(&remote).map_err(|_| corrupt("endpoint"))?,
            ),
            (algorithm, None, Some(audience)) => IntegrationKind::Jwt {
                algorithm: IntegrationAlgorithm::from_stored(algorithm)
                    .ok_or_else(|| corrupt("algorithm"))?,
                audience,
                issuer: r.issuer,
            },
            _ => return Err(corrupt("kind")),
        };
        Ok(Self {
            org_id: r.org_id,
            name: r.name,
            kind,
            sealed_secret: r.secret,
            lifetime_secs: u32::try_from(r.lifetime_secs).map_err(|_| corrupt("lifetime"))?,
            claims: serde_json::from_str(&r.claims).map_err(|_| corrupt("claims"))?,
            custom_claims: serde_json::from_str(&r.custom_claims)
                .map_err(|_| corrupt("custom claims"))?,
            allow_api_keys: r.allow_api_keys,
        })
    }
}

/// `SELECT <every integrations column> FROM integrations <rest>` as one static string.
macro_rules! select_integration {
    ($rest:literal) => {
        concat!(
            "SELECT org_id, name, algorithm, secret, audience, issuer, lifetime_secs, claims, ",
            "custom_claims, allow_api_keys, remote FROM integrations ",
            $rest
        )
    };
}

pub(super) const SELECT_MEMBERSHIP: &str = "SELECT m.user_id, m.org_id, o.name AS org_name, m.role, \
     m.is_active FROM memberships m JOIN orgs o ON o.id = m.org_id \
     WHERE m.user_id = $1 AND m.org_id = $2";
#[derive(FromRow)]
pub(super) struct PolicyRow {
    pub(super) min_length: i64,
    pub(super) max_age_days: i64,
    pub(super) history_count: i64,
    pub(super) reject_common: bool,
    pub(super) require_mfa: bool,
    pub(super) require_verified_email: bool,
}

impl From<PolicyRow> for PasswordPolicy {
    fn from(r: PolicyRow) -> Self {
        let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        Self {
            min_length: clamp(r.min_length),
            max_age_days: clamp(r.max_age_days),
            history_count: clamp(r.history_count),
            reject_common: r.reject_common,
            require_mfa: r.require_mfa,
            require_verified_email: r.require_verified_email,
        }
    }
}

/// The start of an audit insert from parameters `$1`–`$13` (`sql::bind_audit`), completed by
/// `$from`: nothing, or a FROM clause (PostgreSQL takes its audit lock there).
macro_rules! insert_audit_sql {
    ($from:literal) => {
        concat!(
            "INSERT INTO audit_events (occurred_at, event, outcome, reason, org_id, \
             actor_user_id, subject_user_id, subject, address, user_agent, client, request_id, \
             details) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 ",
            $from
        )
    };
}

/// A session insert from fourteen parameters (`sql::bind_session`): `$1`–`$14`, or `$16`–`$29`
/// for PostgreSQL's one-statement login.
macro_rules! insert_session_sql {
    () => {
        insert_session_sql!("$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14")
    };
    (16) => {
        insert_session_sql!("$16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29")
    };
    ($values:literal) => {
        concat!(
            "INSERT INTO sessions (id, user_id, org_id, method, client, address, user_agent, \
             created_at, expires_at, token_expires_at, last_renewed_at, renew_count, revoked_at, \
             restriction) VALUES (",
            $values,
            ")"
        )
    };
}

/// A member as `Store::member` reads it: the user, the org's name, the org's policy (all null
/// when it has none: the defaults) and whether the user has a confirmed second factor.
#[derive(FromRow)]
pub(super) struct MemberRow {
    #[sqlx(flatten)]
    pub(super) user: UserRecord,
    pub(super) org_name: String,
    pub(super) min_length: Option<i64>,
    pub(super) max_age_days: Option<i64>,
    pub(super) history_count: Option<i64>,
    pub(super) reject_common: Option<bool>,
    pub(super) require_mfa: Option<bool>,
    pub(super) require_verified_email: Option<bool>,
    pub(super) mfa_enabled: bool,
}

impl MemberRow {
    pub(super) fn policy(&self) -> PasswordPolicy {
        let (
            Some(min_length),
            Some(max_age_days),
            Some(history_count),
            Some(reject_common),
            Some(require_mfa),
            Some(require_verified_email),
        ) = (
            self.min_length,
            self.max_age_days,
            self.history_count,
            self.reject_common,
            self.require_mfa,
            self.require_verified_email,
        )
        else {
            return PasswordPolicy::default();
        };
        PolicyRow {
            min_length,
            max_age_days,
            history_count,
            reject_common,
            require_mfa,
            require_verified_email,
        }
        .into()
    }
}

/// A member as SCIM shows them (`sql/scim.rs`'s `select_scim_user!`).
#[derive(FromRow)]
pub(super) struct ScimUserRow {
    #[sqlx(flatten)]
    pub(super) user: UserRecord,
    pub(super) role: String,
    pub(super) member_active: bool,
    pub(super) member_since: i64,
    pub(super) external_id: Option<String>,
    pub(super) attributes: Option<String>,
    pub(super) updated_at: Option<i64>,
    pub(super) version: Option<i64>,
}

impl TryFrom<ScimUserRow> for ScimUserRecord {
    type Error = StoreError;
    fn try_from(r: ScimUserRow) -> StoreResult<Self> {
        Ok(Self {
            role: parse_role(&r.role)?,
            member_active: r.member_active,
            member_since: r.member_since,
            external_id: r.external_id,
            attributes: r.attributes.unwrap_or_else(|| "{}".to_owned()),
            updated_at: r.updated_at.unwrap_or(r.member_since),
            version: r.version.unwrap_or(0),
            user: r.user,
        })
    }
}

#[derive(FromRow)]
pub(super) struct ScimGroupRow {
    pub(super) id: i64,
    pub(super) public_id: String,
    pub(super) org_id: i64,
    pub(super) display_name: String,
    pub(super) external_id: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) version: i64,
}

impl From<ScimGroupRow> for ScimGroupRecord {
    fn from(r: ScimGroupRow) -> Self {
        Self {
            id: r.id,
            public_id: r.public_id,
            org_id: r.org_id,
            display_name: r.display_name,
            external_id: r.external_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
            members: Vec::new(),
        }
    }
}
