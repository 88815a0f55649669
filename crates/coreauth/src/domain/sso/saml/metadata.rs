//! The SP metadata of a SAML connection, for its IdP's admin to import: coreauth's entity id,
//! its ACS, and the key assertions may be encrypted to. Written from a template: it holds
//! nothing but coreauth's own values, each escaped.

use crate::domain::error::{DomainError, DomainResult};
use crate::domain::sso::Sso;

/// Escapes text for an XML attribute or element.
pub fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

impl Sso {
    /// The SP metadata of one of the SAML connections, for its IdP's admin.
    pub async fn saml_metadata(&self, connection_id: i64) -> DomainResult<String> {
        let connection = self
            .store
            .sso_connection(connection_id)
            .await?
            .filter(|c| c.saml.is_some())
            .ok_or(DomainError::NotFound("SAML connection"))?;
        let settings = connection
            .saml
            .as_ref()
            .ok_or(DomainError::NotFound("SAML connection"))?;
        let name_id_format = settings
            .name_id_format
            .as_deref()
            .map_or(String::new(), |f| {
                format!("\n    <md:NameIDFormat>{}</md:NameIDFormat>", escape_xml(f))
            });
        let encryption = settings
            .sp_certificate
            .as_deref()
            .map_or(String::new(), encryption_key_descriptor);
        Ok(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="{want}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{encryption}{name_id_format}
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
            entity = escape_xml(&self.saml_entity_id(connection.id)),
            want = settings.want_assertions_signed,
            acs = escape_xml(&self.saml_acs_url()),
        ))
    }
}

/// The SP metadata's key for encryption, with the algorithms `decrypt` reads.
fn encryption_key_descriptor(certificate: &str) -> String {
    let methods: String = [
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        "http://www.w3.org/2009/xmlenc11#aes128-gcm",
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    ]
    .iter()
    .map(|m| format!("\n      <md:EncryptionMethod Algorithm=\"{m}\"/>"))
    .collect();
    format!(
        "\n    <md:KeyDescriptor use=\"encryption\">\n      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{methods}\n    </md:KeyDescriptor>",
        escape_xml(certificate)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(escape_xml(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
