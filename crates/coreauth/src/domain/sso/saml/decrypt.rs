//! Encrypted assertions (XML Encryption), decrypted here on the `openssl` crate rather than by
//! samael: samael 0.0.22 decrypts AES-128 only, refuses a `KeyInfo` without a `ds` prefix and
//! verifies nothing of what it decrypts, while ADFS and Entra encrypt with AES-256. The key
//! transport is RSA-OAEP only (RSA PKCS#1 v1.5 is refused: its padding oracle is the classic
//! attack on XML Encryption); the content AES-CBC or AES-GCM.
//!
//! What comes out is the response with the assertion in the clear in the encrypted one's place,
//! which then goes through the same checks and signature verification as any response. A
//! signature over the whole response covered the ciphertext, so it is verified before
//! decrypting and removed from the result.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use roxmltree::{Document, Node, ParsingOptions};

use super::document::{ASSERTION, DSIG, child, named};
use crate::domain::error::SamlRefusal;

const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";

fn invalid(detail: &str) -> SamlRefusal {
    SamlRefusal::Invalid(format!("encrypted assertion: {detail}"))
}

fn algorithm<'a>(node: Node<'a, '_>) -> Option<&'a str> {
    child(node, XENC, "EncryptionMethod").and_then(|m| m.attribute("Algorithm"))
}

fn cipher_value(node: Node<'_, '_>) -> Result<Vec<u8>, SamlRefusal> {
    let text = child(node, XENC, "CipherData")
        .and_then(|d| child(d, XENC, "CipherValue"))
        .and_then(|v| v.text())
        .ok_or_else(|| invalid("no CipherValue"))?;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(compact)
        .map_err(|_| invalid("CipherValue is not base64"))
}

/// Unwraps the content key with the SP's private key.
fn content_key(encrypted_key: Node<'_, '_>, key: &PKey<Private>) -> Result<Vec<u8>, SamlRefusal> {
    let method = child(encrypted_key, XENC, "EncryptionMethod")
        .ok_or_else(|| invalid("no key transport method"))?;
    let oaep_digest = child(method, DSIG, "DigestMethod").and_then(|d| d.attribute("Algorithm"));
    match (method.attribute("Algorithm"), oaep_digest) {
        (Some("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"), None)
        | (
            Some(
                "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
                | "http://www.w3.org/2009/xmlenc11#rsa-oaep",
            ),
            Some("http://www.w3.org/2000/09/xmldsig#sha1"),
        ) => {}
        (Some(other), _) => {
            return Err(SamlRefusal::Unsupported(format!(
                "the key transport {other} is not supported: use RSA-OAEP (rsa-oaep-mgf1p)"
            )));
        }
        (None, _) => return Err(invalid("no key transport algorithm")),
    }
    let wrapped = cipher_value(encrypted_key)?;
    let rsa = key.rsa().map_err(|_| invalid("the SP key is not RSA"))?;
    let mut unwrapped = vec![0u8; rsa.size() as usize];
    let length = rsa
        .private_decrypt(&wrapped, &mut unwrapped, Padding::PKCS1_OAEP)
        .map_err(|_| invalid("the content key does not decrypt with this connection's key"))?;
    unwrapped.truncate(length);
    Ok(unwrapped)
}

/// Decrypts the content with the content key.
fn content(algorithm: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, SamlRefusal> {
    let (cipher, gcm) = match (algorithm, key.len()) {
        ("http://www.w3.org/2001/04/xmlenc#aes128-cbc", 16) => (Cipher::aes_128_cbc(), false),
        ("http://www.w3.org/2001/04/xmlenc#aes192-cbc", 24) => (Cipher::aes_192_cbc(), false),
        ("http://www.w3.org/2001/04/xmlenc#aes256-cbc", 32) => (Cipher::aes_256_cbc(), false),
        ("http://www.w3.org/2009/xmlenc11#aes128-gcm", 16) => (Cipher::aes_128_gcm(), true),
        ("http://www.w3.org/2009/xmlenc11#aes192-gcm", 24) => (Cipher::aes_192_gcm(), true),
        ("http://www.w3.org/2009/xmlenc11#aes256-gcm", 32) => (Cipher::aes_256_gcm(), true),
        (other, _) => {
            return Err(SamlRefusal::Unsupported(format!(
                "the content encryption {other} is not supported (or its key has the wrong size): use AES-CBC or AES-GCM"
            )));
        }
    };
    let (iv_length, tag_length) = if gcm { (12, 16) } else { (16, 0) };
    if data.len() < iv_length + tag_length {
        return Err(invalid("the ciphertext is too short"));
    }
    let (iv, rest) = data.split_at(iv_length);
    let (ciphertext, tag) = rest.split_at(rest.len() - tag_length);
    let mut crypter = Crypter::new(cipher, Mode::Decrypt, key, Some(iv))
        .map_err(|_| invalid("the cipher cannot start"))?;
    // XML Encryption's CBC padding (ISO 10126) is not PKCS#7's: removed below.
    crypter.pad(false);
    if gcm {
        crypter
            .set_tag(tag)
            .map_err(|_| invalid("the GCM tag is unusable"))?;
    }
    let mut plain = vec![0u8; ciphertext.len() + cipher.block_size()];
    let mut length = crypter
        .update(ciphertext, &mut plain)
        .map_err(|_| invalid("the content does not decrypt"))?;
    length += crypter
        .finalize(&mut plain[length..])
        .map_err(|_| invalid("the content does not decrypt (or was changed)"))?;
    plain.truncate(length);
    if !gcm {
        let pad = usize::from(*plain.last().ok_or_else(|| invalid("empty content"))?);
        if pad == 0 || pad > 16 || pad > plain.len() {
            return Err(invalid("the content's padding is wrong"));
        }
        plain.truncate(plain.len() - pad);
    }
    Ok(plain)
}

/// The response with its one `EncryptedAssertion` decrypted in place and its own signature
/// (over the ciphertext, verified by the caller) removed.
pub fn decrypt(xml: &str, key_pem: &[u8]) -> Result<String, SamlRefusal> {
    let key =
        PKey::private_key_from_pem(key_pem).map_err(|_| invalid("the SP key is unreadable"))?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: 20_000,
    };
    let document = Document::parse_with_options(xml, options)
        .map_err(|e| SamlRefusal::Malformed(e.to_string()))?;
    let root = document.root_element();
    let encrypted = child(root, ASSERTION, "EncryptedAssertion")
        .ok_or_else(|| invalid("none in the response"))?;
    let data =
        child(encrypted, XENC, "EncryptedData").ok_or_else(|| invalid("no EncryptedData"))?;
    // The key sits in the data's KeyInfo, or beside the data (referred to by RetrievalMethod).
    let encrypted_key = encrypted
        .descendants()
        .find(|n| named(*n, XENC, "EncryptedKey"))
        .ok_or_else(|| invalid("no EncryptedKey"))?;
    let content_key = content_key(encrypted_key, &key)?;
    let method = algorithm(data).ok_or_else(|| invalid("no content encryption method"))?;
    let plain = content(method, &content_key, &cipher_value(data)?)?;
    let plain = String::from_utf8(plain).map_err(|_| invalid("the content is not UTF-8"))?;
    let mut cut: Vec<(std::ops::Range<usize>, &str)> = root
        .children()
        .filter(|c| named(*c, DSIG, "Signature"))
        .map(|s| (s.range(), ""))
        .collect();
    cut.push((encrypted.range(), plain.as_str()));
    cut.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = xml.to_owned();
    for (range, with) in cut {
        out.replace_range(range, with);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use openssl::rsa::Rsa;
    use openssl::symm::encrypt_aead;

    use super::*;

    const ASSERTION_XML: &str = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1"><saml:Issuer>urn:idp</saml:Issuer></saml:Assertion>"#;
    const CBC256: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
    const GCM128: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
    const OAEP: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn pem(key: &PKey<Private>) -> Vec<u8> {
        key.private_key_to_pem_pkcs8().unwrap()
    }

    fn random(n: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; n];
        openssl::rand::rand_bytes(&mut bytes).unwrap();
        bytes
    }

    /// The content encrypted as XML Encryption writes it: IV, ciphertext (and GCM's tag).
    fn encrypt_content(algorithm: &str, key: &[u8], plain: &[u8]) -> Vec<u8> {
        if algorithm == GCM128 {
            let iv = random(12);
            let mut tag = [0u8; 16];
            let sealed =
                encrypt_aead(Cipher::aes_128_gcm(), key, Some(&iv), &[], plain, &mut tag).unwrap();
            [iv, sealed, tag.to_vec()].concat()
        } else {
            let iv = random(16);
            let pad = 16 - plain.len() % 16;
            let mut padded = plain.to_vec();
            // ISO 10126: any bytes, then the length.
            padded.extend(random(pad - 1));
            padded.push(u8::try_from(pad).unwrap());
            let mut crypter =
                Crypter::new(Cipher::aes_256_cbc(), Mode::Encrypt, key, Some(&iv)).unwrap();
            crypter.pad(false);
            let mut out = vec![0u8; padded.len() + 16];
            let n = crypter.update(&padded, &mut out).unwrap();
            out.truncate(n);
            [iv, out].concat()
        }
    }

    fn response(algorithm: &str, transport: &str, to: &PKey<Private>, content: &[u8]) -> String {
        let content_key = random(if algorithm == GCM128 { 16 } else { 32 });
        let rsa = to.rsa().unwrap();
        let mut wrapped = vec![0u8; rsa.size() as usize];
        let n = rsa
            .public_encrypt(&content_key, &mut wrapped, Padding::PKCS1_OAEP)
            .unwrap();
        wrapped.truncate(n);
        let data = encrypt_content(algorithm, &content_key, content);
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="{ASSERTION}" ID="r1"><saml:Issuer>urn:idp</saml:Issuer><ds:Signature xmlns:ds="{DSIG}"/><saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="{XENC}"><xenc:EncryptionMethod Algorithm="{algorithm}"/><ds:KeyInfo xmlns:ds="{DSIG}"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="{transport}"/><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"#,
            STANDARD.encode(wrapped),
            STANDARD.encode(data),
        )
    }

    #[test]
    fn aes_cbc_and_gcm_assertions_are_decrypted_in_place() {
        let key = key();
        for algorithm in [CBC256, GCM128] {
            let xml = response(algorithm, OAEP, &key, ASSERTION_XML.as_bytes());
            let out = decrypt(&xml, &pem(&key)).unwrap();
            assert!(out.contains(ASSERTION_XML), "{out}");
            assert!(!out.contains("EncryptedAssertion"), "{out}");
            assert!(
                !out.contains("<ds:Signature"),
                "the signature over the ciphertext is gone: {out}"
            );
            assert!(out.starts_with("<samlp:Response") && out.ends_with("</samlp:Response>"));
        }
    }

    #[test]
    fn another_key_a_changed_byte_and_other_algorithms_are_refused() {
        let key = key();
        let xml = response(CBC256, OAEP, &key, ASSERTION_XML.as_bytes());
        assert!(matches!(
            decrypt(&xml, &pem(&self::key())),
            Err(SamlRefusal::Invalid(_))
        ));
        // GCM's tag notices a changed byte.
        let xml = response(GCM128, OAEP, &key, ASSERTION_XML.as_bytes());
        let at = xml.rfind("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 30;
        let flipped = if &xml[at..=at] == "A" { "B" } else { "A" };
        let changed = format!("{}{flipped}{}", &xml[..at], &xml[at + 1..]);
        assert!(matches!(
            decrypt(&changed, &pem(&key)),
            Err(SamlRefusal::Invalid(_))
        ));
        // RSA PKCS#1 v1.5 key transport is refused outright.
        let legacy = xml.replace(OAEP, "http://www.w3.org/2001/04/xmlenc#rsa-1_5");
        assert!(matches!(
            decrypt(&legacy, &pem(&key)),
            Err(SamlRefusal::Unsupported(_))
        ));
        // An unknown content algorithm, or a key of the wrong size for it.
        let other = xml.replace(GCM128, "http://www.w3.org/2001/04/xmlenc#tripledes-cbc");
        assert!(matches!(
            decrypt(&other, &pem(&key)),
            Err(SamlRefusal::Unsupported(_))
        ));
        let mismatched = xml.replace(GCM128, CBC256);
        assert!(decrypt(&mismatched, &pem(&key)).is_err());
    }

    #[test]
    fn a_padding_length_out_of_range_is_refused() {
        let content_key = random(32);
        let iv = random(16);
        // A final byte of 0 claims no padding, which XML Encryption never writes.
        let mut padded = ASSERTION_XML.as_bytes().to_vec();
        padded.extend(vec![0u8; 16 - padded.len() % 16]);
        let mut crypter = Crypter::new(
            Cipher::aes_256_cbc(),
            Mode::Encrypt,
            &content_key,
            Some(&iv),
        )
        .unwrap();
        crypter.pad(false);
        let mut out = vec![0u8; padded.len() + 16];
        let n = crypter.update(&padded, &mut out).unwrap();
        out.truncate(n);
        let data = [iv, out].concat();
        assert!(matches!(
            content(CBC256, &content_key, &data),
            Err(SamlRefusal::Invalid(_))
        ));
        assert!(matches!(
            content(CBC256, &content_key, &data[..10]),
            Err(SamlRefusal::Invalid(_))
        ));
    }
}
