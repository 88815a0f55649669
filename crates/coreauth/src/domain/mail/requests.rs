//! Requests for a message whose answer must not depend on the address (a forgotten password, a
//! new verification link): accepted as one insert, the same for every address, and carried out
//! by a worker (`PasswordRecovery::process_requests`, `EmailVerification::process_requests`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::clock::to_millis;
use crate::domain::email::Email;
use crate::domain::error::DomainResult;
use crate::domain::origin::RequestOrigin;
use crate::domain::throttle::{Subject, Throttle};
use crate::store::Store;
use crate::store::records::MailRequestRecord;

/// How long a worker holds the requests it took, and how many it takes at once.
const REQUEST_LEASE: Duration = Duration::from_secs(60);
const REQUEST_BATCH: i64 = 50;

/// Accepts a request for a message to an address: parsed, counted against the address (and
/// the client's traffic), and written as one row, the same whether or not anyone has it.
pub async fn accept_request(
    store: &Arc<dyn Store>,
    throttle: &Throttle,
    (kind, email): (&str, &str),
    origin: &RequestOrigin,
    now: OffsetDateTime,
) -> DomainResult<()> {
    let email = Email::parse(email)?;
    let key = email.key();
    let mut subjects = vec![Subject::Recipient(&key)];
    subjects.extend(origin.address.map(Subject::Traffic));
    throttle.attempt(&subjects, now).await?;
    let request = MailRequestRecord {
        id: 0,
        kind: kind.to_owned(),
        email: email.as_str().to_owned(),
        address: origin.address_text(),
        user_agent: origin.user_agent.clone(),
        request_id: origin.request_id.clone(),
        created_at: to_millis(now),
    };
    Ok(store.queue_mail_request(&request).await?)
}

/// The requests of `kind` this worker is to carry out now.
pub async fn claim_requests(
    store: &Arc<dyn Store>,
    kind: &str,
    now: OffsetDateTime,
) -> DomainResult<Vec<MailRequestRecord>> {
    let now_ms = to_millis(now);
    Ok(store
        .claim_mail_requests(kind, now_ms, now_ms + millis(REQUEST_LEASE), REQUEST_BATCH)
        .await?)
}

/// Where an accepted request came from, for the audit trail.
pub fn origin_of(request: &MailRequestRecord) -> RequestOrigin {
    RequestOrigin {
        address: request.address.as_deref().and_then(|a| a.parse().ok()),
        user_agent: request.user_agent.clone(),
        request_id: request.request_id.clone(),
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
