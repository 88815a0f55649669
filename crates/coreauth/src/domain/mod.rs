//! The rules of coreauth: users, orgs, memberships, sessions, tokens, passwords. No HTTP and no
//! SQL here: `http` calls in, and storage is reached through the `store::Store` trait.

pub mod admin;
pub mod apikey;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod credentials;
pub mod email;
pub mod error;
pub mod integrations;
pub mod invitations;
pub mod mail;
pub mod membership;
pub mod mfa;
pub mod org;
pub mod origin;
pub mod password;
pub mod policy;
pub mod recovery;
pub mod scim;
pub mod scopes;
pub mod secrets;
pub mod service_accounts;
pub mod session;
pub mod signing_keys;
pub mod sso;
pub mod throttle;
pub mod tokens;
pub mod user;
pub mod verification;
