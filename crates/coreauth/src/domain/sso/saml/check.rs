//! The checks of one response against its connection, run as one blocking call: decryption,
//! the connection's signature requirements, the issuer, then `engine`'s verification of
//! signatures and conditions.

use super::{Expected, Inspected, Signatures, Verified, backend};
use crate::domain::error::SamlRefusal;
use crate::store::records::SamlSettings;

/// A refusal, and what was seen of the response by then (for the audit trail).
pub(super) struct Rejected {
    pub(super) refusal: SamlRefusal,
    pub(super) seen: Inspected,
}

fn rejected(refusal: SamlRefusal, seen: &Inspected) -> Box<Rejected> {
    Box::new(Rejected {
        refusal,
        seen: seen.clone(),
    })
}

/// A response to check against its connection, in one blocking call.
pub(super) struct Check {
    pub(super) xml: String,
    pub(super) seen: Inspected,
    /// The SP key, for an encrypted assertion.
    pub(super) key: Option<zeroize::Zeroizing<Vec<u8>>>,
    pub(super) settings: SamlSettings,
    pub(super) idp_entity_id: String,
    pub(super) sp_entity_id: String,
    pub(super) acs_url: String,
    /// `None` for a response the IdP sent unasked.
    pub(super) request_id: Option<String>,
}

impl Check {
    /// Decrypts (when encrypted), applies the connection's signature requirements and has
    /// `engine` verify signatures and conditions; answers the assertion, and what was seen of
    /// the response in the clear.
    pub(super) fn run(self) -> Result<(Verified, Inspected), Box<Rejected>> {
        let (xml, seen) = match &self.key {
            Some(key) => self.decrypted(key)?,
            None => (self.xml.clone(), self.seen.clone()),
        };
        // A signed response counts for an encrypted assertion once its signature over the
        // ciphertext held (`decrypted`).
        let unsigned = (!seen.assertion_signed
            && (self.settings.want_assertions_signed || !seen.response_signed))
            || (self.settings.want_response_signed && !seen.response_signed);
        if unsigned {
            return Err(rejected(SamlRefusal::Unsigned, &seen));
        }
        if seen.issuer != self.idp_entity_id {
            return Err(rejected(SamlRefusal::WrongIssuer, &seen));
        }
        let signatures = if seen.encrypted && !seen.assertion_signed {
            Signatures::VerifiedOverCiphertext
        } else {
            Signatures::Check(&self.settings.certificates)
        };
        let verified = backend::verify(
            &xml,
            &Expected {
                idp_entity_id: &self.idp_entity_id,
                signatures,
                sp_entity_id: &self.sp_entity_id,
                acs_url: &self.acs_url,
                request_id: self.request_id.as_deref(),
                clock_skew: std::time::Duration::from_secs(u64::from(
                    self.settings.clock_skew_seconds,
                )),
            },
        );
        match verified {
            Ok(verified) => Ok((verified, seen)),
            Err(refusal) => Err(rejected(self.named(refusal, &seen), &seen)),
        }
    }

    /// A signature failure named for what the signatures claim: a stranger's certificate.
    fn named(&self, refusal: SamlRefusal, seen: &Inspected) -> SamlRefusal {
        match refusal {
            SamlRefusal::BadSignature if signed_by_stranger(seen, &self.settings) => {
                SamlRefusal::UntrustedCertificate
            }
            other => other,
        }
    }

    /// The response decrypted and inspected again, its own signature (over the ciphertext)
    /// verified first.
    fn decrypted(&self, key: &[u8]) -> Result<(String, Inspected), Box<Rejected>> {
        let fail = |refusal: SamlRefusal| rejected(refusal, &self.seen);
        if self.seen.response_signed {
            backend::verify_signatures(&self.xml, &self.settings.certificates)
                .map_err(|e| fail(self.named(e, &self.seen)))?;
        }
        let plain = backend::decrypt(&self.xml, key).map_err(fail)?;
        let mut again = backend::inspect(&plain).map_err(fail)?;
        if again.encrypted {
            return Err(fail(SamlRefusal::Wrapping));
        }
        again.encrypted = true;
        again.response_signed = self.seen.response_signed;
        again
            .named_certificates
            .extend(self.seen.named_certificates.iter().cloned());
        Ok((plain, again))
    }
}

/// Whether the signatures name only certificates the connection does not hold (the message's
/// own `KeyInfo` is never trusted; this only names the reason of a failure).
fn signed_by_stranger(inspected: &Inspected, settings: &SamlSettings) -> bool {
    !inspected.named_certificates.is_empty()
        && inspected
            .named_certificates
            .iter()
            .all(|c| !settings.certificates.contains(c))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_stranger_is_one_only_the_message_names() {
        let settings = SamlSettings {
            sp_certificate: None,
            sealed_sp_key: None,
            sso_url: String::new(),
            certificates: vec!["known".into()],
            name_id_format: None,
            want_assertions_signed: true,
            want_response_signed: false,
            clock_skew_seconds: 0,
            allow_idp_initiated: false,
            first_name_attribute: None,
            last_name_attribute: None,
            metadata_url: None,
        };
        let mut inspected = Inspected {
            in_response_to: None,
            issuer: String::new(),
            assertion_id: String::new(),
            encrypted: false,
            response_signed: false,
            assertion_signed: true,
            named_certificates: vec!["other".into()],
        };
        assert!(signed_by_stranger(&inspected, &settings));
        inspected.named_certificates.push("known".into());
        assert!(!signed_by_stranger(&inspected, &settings));
        inspected.named_certificates.clear();
        assert!(!signed_by_stranger(&inspected, &settings));
    }
}
