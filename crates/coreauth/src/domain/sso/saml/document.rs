//! What coreauth checks of a SAML response before any signature is verified: the shape SAML's
//! Web Browser SSO profile allows and nothing more. xmlsec verifies signatures by the general
//! rules of XML signatures, which let a signed element sit anywhere and a document hold
//! elements no signature covers (signature wrapping); samael then reads only what verified, but
//! accepts such documents without a word. Refusing them here gives an attack its own error
//! code, and keeps DTDs (entity expansion, external entities) away from libxml2 altogether.
//! Written on `roxmltree`, which refuses DTDs and never fetches anything.

use roxmltree::{Document, Node, ParsingOptions};

use super::Inspected;
use crate::domain::error::SamlRefusal;

pub const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

pub fn named(node: Node<'_, '_>, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && node.tag_name().namespace() == Some(namespace)
}

/// `node`'s first child element of this name.
pub fn child<'a, 'input>(
    node: Node<'a, 'input>,
    namespace: &str,
    name: &str,
) -> Option<Node<'a, 'input>> {
    node.children().find(|c| named(*c, namespace, name))
}

fn malformed(detail: &str) -> SamlRefusal {
    SamlRefusal::Malformed(detail.to_owned())
}

/// Checks a decoded response: no DTD, a `samlp:Response` root with exactly one assertion (or
/// encrypted assertion) as its child, unique IDs, every signature a child of the response or
/// the assertion referring to exactly its parent. Whether what is signed suffices is the
/// connection's to say.
pub fn inspect(xml: &str) -> Result<Inspected, SamlRefusal> {
    // roxmltree refuses a DTD too; this also catches one it would stop at for another reason.
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err(SamlRefusal::Doctype);
    }
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: 20_000,
    };
    let document = Document::parse_with_options(xml, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => SamlRefusal::Doctype,
        other => SamlRefusal::Malformed(other.to_string()),
    })?;
    let root = document.root_element();
    if !named(root, PROTOCOL, "Response") {
        return Err(malformed("the root element is not a samlp:Response"));
    }
    let everything: Vec<Node<'_, '_>> = root.descendants().filter(Node::is_element).collect();
    let assertions: Vec<Node<'_, '_>> = everything
        .iter()
        .copied()
        .filter(|n| named(*n, ASSERTION, "Assertion") || named(*n, ASSERTION, "EncryptedAssertion"))
        .collect();
    let assertion = match assertions.as_slice() {
        [only] if only.parent() == Some(root) => *only,
        [] => return Err(malformed("the response holds no assertion")),
        _ => return Err(SamlRefusal::Wrapping),
    };
    let encrypted = named(assertion, ASSERTION, "EncryptedAssertion");
    let mut ids: Vec<&str> = everything
        .iter()
        .filter_map(|n| n.attribute("ID"))
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != count {
        return Err(SamlRefusal::Wrapping);
    }
    let mut named_certificates = Vec::new();
    for signature in everything.iter().filter(|n| named(**n, DSIG, "Signature")) {
        let parent = signature
            .parent()
            .filter(|p| *p == root || (*p == assertion && !encrypted));
        let Some(parent) = parent else {
            return Err(SamlRefusal::Wrapping);
        };
        if !refers_to_parent(*signature, parent) {
            return Err(SamlRefusal::Wrapping);
        }
        named_certificates.extend(
            signature
                .descendants()
                .filter(|n| named(*n, DSIG, "X509Certificate"))
                .filter_map(|n| n.text())
                .map(without_whitespace),
        );
    }
    let signed = |element: Node<'_, '_>| child(element, DSIG, "Signature").is_some();
    let issuer_of = |element: Node<'_, '_>| {
        child(element, ASSERTION, "Issuer")
            .and_then(|i| i.text())
            .map(|t| t.trim().to_owned())
    };
    // Until it is decrypted, an encrypted assertion is known by its response's issuer.
    let (issuer, assertion_id) = if encrypted {
        (issuer_of(root).unwrap_or_default(), String::new())
    } else {
        let issuer =
            issuer_of(assertion).ok_or_else(|| malformed("the assertion names no Issuer"))?;
        let id = assertion
            .attribute("ID")
            .ok_or_else(|| malformed("the assertion has no ID"))?;
        (issuer, id.to_owned())
    };
    Ok(Inspected {
        in_response_to: root.attribute("InResponseTo").map(str::to_owned),
        issuer,
        assertion_id,
        encrypted,
        response_signed: signed(root),
        assertion_signed: signed(assertion),
        named_certificates,
    })
}

/// Whether the signature's one reference is its parent (`URI="#<parent's ID>"`).
fn refers_to_parent(signature: Node<'_, '_>, parent: Node<'_, '_>) -> bool {
    let references: Vec<Node<'_, '_>> = signature
        .children()
        .filter(|c| named(*c, DSIG, "SignedInfo"))
        .flat_map(|info| info.children().filter(|c| named(*c, DSIG, "Reference")))
        .collect();
    match (references.as_slice(), parent.attribute("ID")) {
        ([reference], Some(id)) => reference
            .attribute("URI")
            .and_then(|uri| uri.strip_prefix('#'))
            .is_some_and(|target| target == id),
        _ => false,
    }
}

/// A base64 certificate as written in XML, without the line breaks and spaces it may carry.
pub fn without_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A response's skeleton (signature values are not checked here).
    fn response(response_signature: bool, assertions: &str) -> String {
        let signature = if response_signature {
            signature_of("r1")
        } else {
            String::new()
        };
        format!(
            r#"<samlp:Response xmlns:samlp="{PROTOCOL}" xmlns:saml="{ASSERTION}" ID="r1" InResponseTo="req-1"><saml:Issuer>urn:idp</saml:Issuer>{signature}{assertions}</samlp:Response>"#
        )
    }

    fn signature_of(id: &str) -> String {
        format!(
            r##"<ds:Signature xmlns:ds="{DSIG}"><ds:SignedInfo><ds:Reference URI="#{id}"/></ds:SignedInfo><ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIIB
AAAA</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##
        )
    }

    fn assertion(id: &str, signed: bool, who: &str) -> String {
        let signature = if signed {
            signature_of(id)
        } else {
            String::new()
        };
        format!(
            r#"<saml:Assertion ID="{id}"><saml:Issuer>urn:idp</saml:Issuer>{signature}<saml:Subject><saml:NameID>{who}</saml:NameID></saml:Subject></saml:Assertion>"#
        )
    }

    #[test]
    fn a_response_with_one_signed_assertion_is_read() {
        let seen = inspect(&response(false, &assertion("a1", true, "alice"))).unwrap();
        assert_eq!(seen.in_response_to.as_deref(), Some("req-1"));
        assert_eq!(seen.issuer, "urn:idp");
        assert_eq!(seen.assertion_id, "a1");
        assert!(seen.assertion_signed && !seen.response_signed);
        assert_eq!(seen.named_certificates, vec!["MIIBAAAA".to_owned()]);
        let both = inspect(&response(true, &assertion("a1", true, "alice"))).unwrap();
        assert!(both.assertion_signed && both.response_signed);
    }

    #[test]
    fn what_is_signed_is_told() {
        let seen = inspect(&response(false, &assertion("a1", false, "alice"))).unwrap();
        assert!(!seen.response_signed && !seen.assertion_signed && !seen.encrypted);
    }

    #[test]
    fn an_encrypted_assertion_is_one_assertion() {
        let encrypted = r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedAssertion>"#;
        let seen = inspect(&response(true, encrypted)).unwrap();
        assert!(seen.encrypted && seen.response_signed);
        assert_eq!(seen.issuer, "urn:idp");
        assert_eq!(seen.assertion_id, "");
        let beside = format!("{encrypted}{}", assertion("a1", true, "mallory"));
        assert_eq!(
            inspect(&response(true, &beside)),
            Err(SamlRefusal::Wrapping)
        );
    }

    #[test]
    fn wrapping_variants_are_refused() {
        let signed = assertion("a1", true, "alice");
        let evil = assertion("a2", false, "mallory");
        // An injected assertion before or after the signed one, with or without the response
        // signed.
        for assertions in [format!("{evil}{signed}"), format!("{signed}{evil}")] {
            assert_eq!(
                inspect(&response(true, &assertions)),
                Err(SamlRefusal::Wrapping)
            );
            assert_eq!(
                inspect(&response(false, &assertions)),
                Err(SamlRefusal::Wrapping)
            );
        }
        // The signed assertion hidden inside the evil one, or in Extensions.
        let nested = format!(
            r#"<saml:Assertion ID="a2"><saml:Issuer>urn:idp</saml:Issuer>{signed}</saml:Assertion>"#
        );
        assert_eq!(
            inspect(&response(false, &nested)),
            Err(SamlRefusal::Wrapping)
        );
        let hidden = format!("<samlp:Extensions>{signed}</samlp:Extensions>{evil}");
        assert_eq!(
            inspect(&response(false, &hidden)),
            Err(SamlRefusal::Wrapping)
        );
        // The evil assertion reusing the signed one's ID.
        let twin = format!("{signed}{}", assertion("a1", false, "mallory"));
        assert_eq!(inspect(&response(false, &twin)), Err(SamlRefusal::Wrapping));
        // A signature referring to something other than its parent.
        let elsewhere = assertion("a1", false, "mallory").replace(
            "<saml:Subject>",
            &format!("{}<saml:Subject>", signature_of("r1")),
        );
        assert_eq!(
            inspect(&response(false, &elsewhere)),
            Err(SamlRefusal::Wrapping)
        );
        // A signature in an unexpected place (a decoy in the subject).
        let decoy = assertion("a1", true, "alice").replace(
            "<saml:NameID>",
            &format!("{}<saml:NameID>", signature_of("a1")),
        );
        assert_eq!(
            inspect(&response(false, &decoy)),
            Err(SamlRefusal::Wrapping)
        );
    }

    #[test]
    fn dtds_and_other_roots_are_refused() {
        let body = response(false, &assertion("a1", true, "alice"));
        for dtd in [
            "<!DOCTYPE r [<!ENTITY x \"alice\">]>",
            "<!DOCTYPE r SYSTEM \"http://127.0.0.1:9/evil.dtd\">",
        ] {
            assert_eq!(inspect(&format!("{dtd}{body}")), Err(SamlRefusal::Doctype));
        }
        let bare = format!(
            r#"<saml:Assertion xmlns:saml="{ASSERTION}" ID="a1"><saml:Issuer>urn:idp</saml:Issuer>{}</saml:Assertion>"#,
            signature_of("a1")
        );
        assert!(matches!(inspect(&bare), Err(SamlRefusal::Malformed(_))));
        assert!(matches!(inspect("not xml"), Err(SamlRefusal::Malformed(_))));
        assert!(matches!(
            inspect(&response(true, "")),
            Err(SamlRefusal::Malformed(_))
        ));
    }
}
