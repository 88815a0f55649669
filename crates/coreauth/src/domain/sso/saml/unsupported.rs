//! What a build without the `saml` feature answers: SAML needs xmlsec, a C library a bare Rust
//! toolchain lacks (see the README), so such a build refuses to save SAML connections and to
//! read SAML responses, saying how to get a build that does.

use super::{AuthnRequestSpec, Expected, IdpDescriptor, Inspected, Verified};
use crate::domain::error::SamlRefusal;

const NOT_BUILT: &str =
    "this build of coreauth has no SAML: build it with `--features saml` (see the README)";

pub fn read_idp_metadata(_xml: &str) -> Result<IdpDescriptor, String> {
    Err(NOT_BUILT.into())
}

pub fn certificate_is_valid(_text: &str) -> bool {
    false
}

pub fn authn_request_url(_spec: &AuthnRequestSpec<'_>) -> Result<String, String> {
    Err(NOT_BUILT.into())
}

pub fn inspect(_xml: &str) -> Result<Inspected, SamlRefusal> {
    Err(SamlRefusal::Unsupported(NOT_BUILT.into()))
}

pub fn verify_signatures(_xml: &str, _certificates: &[String]) -> Result<(), SamlRefusal> {
    Err(SamlRefusal::Unsupported(NOT_BUILT.into()))
}

pub fn decrypt(_xml: &str, _key_pem: &[u8]) -> Result<String, SamlRefusal> {
    Err(SamlRefusal::Unsupported(NOT_BUILT.into()))
}

pub fn new_sp_key() -> Result<(String, Vec<u8>), String> {
    Err(NOT_BUILT.into())
}

pub fn verify(_xml: &str, _expected: &Expected<'_>) -> Result<Verified, SamlRefusal> {
    Err(SamlRefusal::Unsupported(NOT_BUILT.into()))
}

/// Whether this build speaks SAML.
pub const BUILT: bool = false;
