//! An org's mail settings, for its admins: the sender's display name and reply-to address, and
//! templates replacing the built-in ones (checked by rendering them before they are stored).

use std::sync::Arc;

use time::OffsetDateTime;

use super::MailContent;
use super::templates::{self, KINDS, MailKind, MailVars};
use crate::domain::audit::NewAuditEvent;
use crate::domain::clock::to_millis;
use crate::domain::email::Email;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::org::Name;
use crate::domain::session::Principal;
use crate::store::Store;
use crate::store::records::{EmailSettings, EmailTemplate};

const MAX_FROM_NAME_CHARS: usize = 100;

/// One kind of message as the org sends it: its own template, or the built-in one.
#[derive(Debug, Clone)]
pub struct TemplateInUse {
    pub template: EmailTemplate,
    pub custom: bool,
}

pub struct MailSettings {
    store: Arc<dyn Store>,
}

impl MailSettings {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The org's settings and every kind of message's template.
    pub async fn get(
        &self,
        caller: &Principal,
        org_id: i64,
    ) -> DomainResult<(EmailSettings, Vec<TemplateInUse>)> {
        self.check(caller, org_id).await?;
        let settings = self.store.email_settings(org_id).await?;
        let custom = self.store.email_templates(org_id).await?;
        let templates = KINDS
            .into_iter()
            .map(
                |kind| match custom.iter().find(|t| t.kind == kind.as_str()) {
                    Some(template) => TemplateInUse {
                        template: template.clone(),
                        custom: true,
                    },
                    None => TemplateInUse {
                        template: kind.default_template(),
                        custom: false,
                    },
                },
            )
            .collect();
        Ok((settings, templates))
    }

    pub async fn set(
        &self,
        caller: &Principal,
        org_id: i64,
        (from_name, reply_to): (Option<String>, Option<String>),
        now: OffsetDateTime,
    ) -> DomainResult<EmailSettings> {
        self.check(caller, org_id).await?;
        let from_name = from_name
            .filter(|n| !n.trim().is_empty())
            .map(|n| Name::parse("fromName", &n, false))
            .transpose()?
            .map(Name::into_string);
        if from_name
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_FROM_NAME_CHARS)
        {
            return Err(DomainError::invalid(format!(
                "fromName must be at most {MAX_FROM_NAME_CHARS} characters"
            )));
        }
        let reply_to = reply_to
            .filter(|r| !r.trim().is_empty())
            .map(|r| Email::parse(&r).map(|e| e.as_str().to_owned()))
            .transpose()?;
        let settings = EmailSettings {
            from_name,
            reply_to,
        };
        let audit = NewAuditEvent::new("email.settings_updated", now)
            .by(caller)
            .org(org_id)
            .details(serde_json::json!({
                "fromName": settings.from_name,
                "replyTo": settings.reply_to,
            }));
        self.store
            .set_email_settings(org_id, &settings, to_millis(now), &audit)
            .await?;
        Ok(settings)
    }

    /// Sets the org's template of `kind`, or with `None` returns to the built-in one.
    pub async fn set_template(
        &self,
        caller: &Principal,
        org_id: i64,
        kind: &str,
        template: Option<EmailTemplate>,
        now: OffsetDateTime,
    ) -> DomainResult<TemplateInUse> {
        self.check(caller, org_id).await?;
        let kind = MailKind::parse(kind)?;
        let template = template.map(|t| EmailTemplate {
            kind: kind.as_str().to_owned(),
            html_body: t.html_body.filter(|h| !h.trim().is_empty()),
            ..t
        });
        if let Some(template) = &template {
            templates::check(kind, template)?;
        }
        let audit = NewAuditEvent::new("email.template_updated", now)
            .by(caller)
            .org(org_id)
            .subject(kind.as_str())
            .details(serde_json::json!({ "custom": template.is_some() }));
        self.store
            .set_email_template(
                org_id,
                kind.as_str(),
                template.as_ref(),
                to_millis(now),
                &audit,
            )
            .await?;
        Ok(match template {
            Some(template) => TemplateInUse {
                template,
                custom: true,
            },
            None => TemplateInUse {
                template: kind.default_template(),
                custom: false,
            },
        })
    }

    async fn check(&self, caller: &Principal, org_id: i64) -> DomainResult<()> {
        if !caller.administers_org(org_id) {
            return Err(DomainError::Forbidden);
        }
        if self.store.org(org_id).await?.is_none() {
            return Err(DomainError::NotFound("org"));
        }
        Ok(())
    }
}

/// The org's template of `kind` (or the built-in one) rendered with `vars`, with the org's
/// sender settings.
pub async fn compose(
    store: &Arc<dyn Store>,
    org_id: Option<i64>,
    kind: MailKind,
    vars: &MailVars,
) -> DomainResult<MailContent> {
    let (template, settings) = match org_id {
        Some(id) => (
            store
                .email_templates(id)
                .await?
                .into_iter()
                .find(|t| t.kind == kind.as_str()),
            store.email_settings(id).await?,
        ),
        None => (None, Default::default()),
    };
    let template = template.unwrap_or_else(|| kind.default_template());
    let content = match templates::render(&template, vars) {
        Ok(content) => content,
        // A stored template rendered when it was saved; should it fail now, the message
        // still goes out, in the built-in words.
        Err(e) => {
            tracing::warn!(
                org_id,
                kind = kind.as_str(),
                "an org's mail template failed: {e}"
            );
            templates::render(&kind.default_template(), vars)?
        }
    };
    Ok(MailContent {
        from_name: settings.from_name,
        reply_to: settings.reply_to,
        ..content
    })
}
