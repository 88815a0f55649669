//! The outgoing mail queue: messages queued in the transaction of the change they announce,
//! taken by the workers of every instance under a lease, and kept (emptied) once sent or given
//! up, for the counts, until pruned.

use super::*;
use crate::store::records::QueuedMail;

/// The longest `last_error` kept: a reason, not a transcript of the SMTP session.
const ERROR_KEPT: usize = 500;

/// Queues `mail` in `tx`, the transaction of the change it announces (an invitation, a reset
/// token), so the message exists exactly when the change does. Due at once.
pub(super) async fn insert_mail(tx: &mut Tx, mail: &NewMail) -> StoreResult<()> {
    let result = sqlx::query(
        "INSERT INTO mail_queue \
         (public_id, org_id, kind, recipient, sealed, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&mail.public_id)
    .bind(mail.org_id)
    .bind(&mail.kind)
    .bind(&mail.recipient)
    .bind(&mail.sealed)
    .bind(mail.created_at)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
            "this message is already queued".into(),
        )),
        Err(e) => Err(db_error(e)),
    }
}

/// Takes what is due (neither sent nor given up, its next attempt reached, held by no live
/// lease) and leases it: `$1` now, `$2` how many at most, `$3` the end of the lease.
const CLAIM: &str = concat!(
    "UPDATE mail_queue SET leased_until = $3 WHERE id IN (",
    skipping_locked!(
        "SELECT id FROM mail_queue \
         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
         AND (leased_until IS NULL OR leased_until <= $1) \
         ORDER BY next_attempt_at, id LIMIT $2"
    ),
    ") RETURNING id, public_id, org_id, kind, recipient, sealed, created_at, attempts"
);

#[async_trait]
impl MailStore for Backend {
    async fn queue_mail(&self, mail: &NewMail) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_mail(&mut tx, mail).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn claim_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<QueuedMail>> {
        // One statement. On PostgreSQL its pick locks the rows it takes and skips those
        // another worker's pick holds; a row it waited for is re-checked against the WHERE
        // clause once the other commits (READ COMMITTED re-reads it), so no two workers take
        // one message. SQLite's single writer orders the claims outright.
        let mut taken: Vec<QueuedMail> = sqlx::query_as(CLAIM)
            .bind(now)
            .bind(limit)
            .bind(lease_until)
            .fetch_all(self.writes())
            .await
            .map_err(db_error)?;
        // RETURNING keeps no order.
        taken.sort_by_key(|mail| mail.id);
        Ok(taken)
    }

    async fn mail_sent(&self, id: i64, now: i64) -> StoreResult<()> {
        // The sealed content goes: its link holds a token nobody needs to read again.
        sqlx::query(
            "UPDATE mail_queue SET sent_at = $2, sealed = '', leased_until = NULL, \
             last_error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(self.writes())
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn mail_failed(
        &self,
        id: i64,
        error: &str,
        now: i64,
        retry_at: Option<i64>,
    ) -> StoreResult<()> {
        // Given up (no `retry_at`), the sealed content goes too: nothing will send it now.
        sqlx::query(
            "UPDATE mail_queue SET attempts = attempts + 1, last_error = $2, leased_until = NULL, \
             next_attempt_at = COALESCE(CAST($4 AS BIGINT), next_attempt_at), \
             failed_at = CASE WHEN CAST($4 AS BIGINT) IS NULL THEN $3 ELSE NULL END, \
             sealed = CASE WHEN CAST($4 AS BIGINT) IS NULL THEN '' ELSE sealed END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(kept_error(error))
        .bind(now)
        .bind(retry_at)
        .execute(self.writes())
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn mail_counts(&self) -> StoreResult<MailQueueCounts> {
        let (waiting, retrying, sent, failed): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT \
             COALESCE(SUM(CASE WHEN sent_at IS NULL AND failed_at IS NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN sent_at IS NULL AND failed_at IS NULL AND attempts > 0 \
                               THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
             FROM mail_queue",
        )
        .fetch_one(self.reads())
        .await
        .map_err(db_error)?;
        Ok(MailQueueCounts {
            waiting,
            retrying,
            sent,
            failed,
        })
    }

    async fn prune_mail(&self, before: i64) -> StoreResult<u64> {
        sqlx::query(
            "DELETE FROM mail_queue WHERE (sent_at IS NOT NULL AND sent_at < $1) \
             OR (failed_at IS NOT NULL AND failed_at < $1)",
        )
        .bind(before)
        .execute(self.writes())
        .await
        .map(|done| done.rows_affected())
        .map_err(db_error)
    }
}

/// `error` as kept: bounded, and without the NUL PostgreSQL text refuses.
fn kept_error(error: &str) -> String {
    error
        .chars()
        .filter(|c| *c != '\0')
        .take(ERROR_KEPT)
        .collect()
}
