//! The login scenario's limit: how many argon2id verifications per second this machine does
//! with coreauth's parameters when every core does nothing else. Measured here, in the same
//! run, so the login figure can be read as a fraction of it: with the server stopped at the
//! start and the end of the run, and in turns with each login window's phases while the server
//! is idle (`load::Turn::Local`). It runs
//! the server's own verification (`verify_hash`, which keeps argon2's memory between hashes):
//! the limit is what the cores can hash at best, not what a slower implementation would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use coreauth::domain::password::verify_hash;

/// Verifications per second of `PASSWORD` against `hash` on `threads` threads for `duration`.
pub fn verifications_per_second(
    hash: &str,
    threads: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let count = verifications(hash, threads, duration)?;
    // Hashes still running at the stop finished after it: count them over the real time.
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Verifications of `PASSWORD` against `hash` done on `threads` threads in `duration`, and the
/// ones running at its end, which are waited for.
pub fn verifications(hash: &str, threads: usize, duration: Duration) -> anyhow::Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (done, stop, hash) = (done.clone(), stop.clone(), hash.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok = verify_hash(crate::seed::PASSWORD.as_bytes(), &hash);
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        if worker.join().is_err() {
            bail!("an argon2 thread panicked");
        }
    }
    let count = done.load(Ordering::Relaxed);
    if count == 0 {
        bail!("no verification succeeded: the hash does not match the bench password");
    }
    Ok(count)
}

/// Microseconds one core takes to sign a session token with coreauth's own signer (what every
/// login and renewal pays once), measured over `rounds` tokens.
pub fn signing_micros(rounds: u32) -> anyhow::Result<f64> {
    use coreauth::domain::tokens::{
        SESSION_AUDIENCE, SessionClaims, StoredSigningKey, TokenSigner,
    };
    let now = time::OffsetDateTime::now_utc();
    let key = StoredSigningKey::generate(now).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signer =
        TokenSigner::new("coreauth".into(), vec![key]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let claims = SessionClaims {
        iss: "coreauth".into(),
        aud: SESSION_AUDIENCE.into(),
        sub: "00000000-0000-4000-8000-000000000001".into(),
        uid: 1,
        org: 1,
        role: "member".into(),
        sid: "00000000-0000-4000-8000-000000000002".into(),
        iat: now.unix_timestamp(),
        exp: now.unix_timestamp() + 900,
        jti: "00000000-0000-4000-8000-000000000003".into(),
        scope: None,
        client_id: None,
    };
    let started = Instant::now();
    for _ in 0..rounds.max(1) {
        signer.sign(&claims).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds.max(1)))
}
