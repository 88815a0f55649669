//! Outgoing mail against a real SMTP server: PyPI's `aiosmtpd`, started per test on a loopback
//! port (`tests/smtp/server.py`), which stores every message it accepts as a file.
//!
//! Run by `scripts/test`, which installs aiosmtpd into `.venv` and sets `COREAUTH_TEST_SMTP_PYTHON`
//! to that venv's python; without it these tests fail rather than pass silently. `scripts/test`
//! runs them on SQLite, then again on PostgreSQL (with `COREAUTH_TEST_POSTGRES_URL`).
//!
//! The messages are queued through the store, as the flows queue theirs; `harness` starts the
//! server and reads what it received; `delivery` holds the stories (a message whole, a server
//! down then up, a refusal, two instances on one database), `outbox` the default without SMTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod delivery;
mod flows;
mod harness;
mod outbox;
