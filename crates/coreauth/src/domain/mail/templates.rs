//! The messages coreauth sends, built in, and as an org's admins may rewrite them: a subject, a
//! plain-text body and optionally an HTML one, with the variables `org` (the org's name),
//! `link`, `email`, `name` and `expires` (how long the link lives, in words). Templates are
//! minijinja's (Jinja) syntax, rendered with HTML escaping in the HTML body, a fuel limit (an
//! org admin's template cannot loop for ever) and undefined variables refused.

use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};

use super::MailContent;
use crate::domain::error::{DomainError, DomainResult};
use crate::store::records::EmailTemplate;

/// The kinds of message, by the name templates are stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Invitation,
    PasswordReset,
    /// A forgotten-password request from someone who signs in through their org's provider.
    PasswordResetSso,
    EmailVerification,
}

pub const KINDS: [MailKind; 4] = [
    MailKind::Invitation,
    MailKind::PasswordReset,
    MailKind::PasswordResetSso,
    MailKind::EmailVerification,
];

/// What a template is rendered with.
#[derive(Debug, Clone)]
pub struct MailVars {
    pub org: String,
    pub link: Option<String>,
    pub email: String,
    pub name: String,
    pub expires: String,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::PasswordReset => "password_reset",
            Self::PasswordResetSso => "password_reset_sso",
            Self::EmailVerification => "email_verification",
        }
    }

    pub fn parse(text: &str) -> DomainResult<Self> {
        KINDS
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = KINDS.iter().map(|k| k.as_str()).collect();
                DomainError::invalid(format!(
                    "unknown template; the templates are {}",
                    names.join(", ")
                ))
            })
    }

    /// The built-in template.
    pub fn default_template(self) -> EmailTemplate {
        let (subject, text, html) = match self {
            Self::Invitation => (
                "You are invited to {{ org }}",
                "Hello,\n\nYou are invited to join {{ org }}. Accept the invitation here:\n\n\
                 {{ link }}\n\nThe link works for {{ expires }}. If you did not expect it, \
                 ignore this message.\n",
                "<p>Hello,</p><p>You are invited to join <strong>{{ org }}</strong>.</p>\
                 <p><a href=\"{{ link }}\">Accept the invitation</a></p>\
                 <p>The link works for {{ expires }}. If you did not expect it, ignore this \
                 message.</p>",
            ),
            Self::PasswordReset => (
                "Reset your {{ org }} password",
                "Hello {{ name }},\n\nSomeone asked to reset the password of {{ email }}. \
                 Choose a new one here:\n\n{{ link }}\n\nThe link works once, for \
                 {{ expires }}. If it was not you, ignore this message: your password stays \
                 as it is.\n",
                "<p>Hello {{ name }},</p><p>Someone asked to reset the password of \
                 {{ email }}.</p><p><a href=\"{{ link }}\">Choose a new password</a></p>\
                 <p>The link works once, for {{ expires }}. If it was not you, ignore this \
                 message: your password stays as it is.</p>",
            ),
            Self::PasswordResetSso => (
                "Signing in to {{ org }}",
                "Hello {{ name }},\n\nSomeone asked to reset the password of {{ email }}. \
                 {{ org }} signs you in through its single sign-on: use your organisation's \
                 sign-in, where your password is managed. Nothing was changed here.\n",
                "<p>Hello {{ name }},</p><p>Someone asked to reset the password of \
                 {{ email }}. {{ org }} signs you in through its single sign-on: use your \
                 organisation's sign-in, where your password is managed. Nothing was changed \
                 here.</p>",
            ),
            Self::EmailVerification => (
                "Confirm your address for {{ org }}",
                "Hello {{ name }},\n\nConfirm that {{ email }} is yours:\n\n{{ link }}\n\n\
                 The link works once, for {{ expires }}.\n",
                "<p>Hello {{ name }},</p><p>Confirm that {{ email }} is yours:</p>\
                 <p><a href=\"{{ link }}\">Confirm my address</a></p>\
                 <p>The link works once, for {{ expires }}.</p>",
            ),
        };
        EmailTemplate {
            kind: self.as_str().to_owned(),
            subject: subject.to_owned(),
            text_body: text.to_owned(),
            html_body: Some(html.to_owned()),
        }
    }

    fn sample(self) -> MailVars {
        MailVars {
            org: "Acme".into(),
            link: (self != Self::PasswordResetSso)
                .then(|| "https://auth.example/user/password/reset#token=x".into()),
            email: "jane@acme.example".into(),
            name: "Jane".into(),
            expires: "30 minutes".into(),
        }
    }
}

/// Limits on what an org admin may store: enough for any real message.
const MAX_SUBJECT_CHARS: usize = 200;
const MAX_BODY_BYTES: usize = 20 * 1024;
/// Template steps a render may take: a message is some hundred.
const FUEL: u64 = 50_000;

/// Renders `template` (the org's, or the built-in one) with `vars`.
pub fn render(template: &EmailTemplate, vars: &MailVars) -> DomainResult<MailContent> {
    let env = environment();
    let values = context! {
        org => vars.org,
        link => vars.link,
        email => vars.email,
        name => vars.name,
        expires => vars.expires,
    };
    let one = |name: &str, source: &str| -> DomainResult<String> {
        env.render_named_str(name, source, &values)
            .map_err(|e| DomainError::invalid(format!("template {name}: {e}")))
    };
    let subject = one("subject.txt", &template.subject)?;
    // A subject is one line: a template cannot add headers.
    let subject: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Ok(MailContent {
        subject: subject.trim().to_owned(),
        text: one("body.txt", &template.text_body)?,
        html: template
            .html_body
            .as_deref()
            .map(|html| one("body.html", html))
            .transpose()?,
        link: vars.link.clone(),
        from_name: None,
        reply_to: None,
    })
}

/// Checks an org admin's template before it is stored: within bounds, and rendering its
/// kind's variables without error.
pub fn check(kind: MailKind, template: &EmailTemplate) -> DomainResult<()> {
    if template.subject.trim().is_empty() || template.subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(DomainError::invalid(format!(
            "subject must be 1-{MAX_SUBJECT_CHARS} characters"
        )));
    }
    let bodies = [Some(&template.text_body), template.html_body.as_ref()];
    if bodies.iter().flatten().any(|b| b.len() > MAX_BODY_BYTES) || template.text_body.is_empty() {
        return Err(DomainError::invalid(format!(
            "a body must be 1 byte to {} KiB",
            MAX_BODY_BYTES / 1024
        )));
    }
    render(template, &kind.sample()).map(|_| ())
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> MailVars {
        MailVars {
            org: "<Acme & Co>".into(),
            link: Some("https://auth.example/x#token=a&b".into()),
            email: "jane@acme.example".into(),
            name: "Jane".into(),
            expires: "7 days".into(),
        }
    }

    #[test]
    fn every_built_in_template_renders() {
        for kind in KINDS {
            let content = render(&kind.default_template(), &vars()).unwrap();
            assert!(!content.subject.is_empty());
            assert!(content.text.contains("Jane") || kind == MailKind::Invitation);
            check(kind, &kind.default_template()).unwrap();
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let content = render(&MailKind::Invitation.default_template(), &vars()).unwrap();
        let html = content.html.unwrap();
        assert!(html.contains("&lt;Acme &amp; Co&gt;"), "{html}");
        assert!(html.contains("token=a&amp;b"), "{html}");
        assert!(content.text.contains("<Acme & Co>"));
        assert!(content.subject.contains("<Acme & Co>"));
    }

    #[test]
    fn a_subject_cannot_add_a_header() {
        let template = EmailTemplate {
            subject: "Hi\r\nBcc: evil@example.com".into(),
            ..MailKind::PasswordReset.default_template()
        };
        let content = render(&template, &vars()).unwrap();
        assert!(!content.subject.contains('\n') && !content.subject.contains('\r'));
    }

    #[test]
    fn bad_templates_are_refused_before_they_are_stored() {
        let kind = MailKind::PasswordReset;
        let base = kind.default_template();
        for template in [
            EmailTemplate { subject: String::new(), ..base.clone() },
            EmailTemplate { text_body: "{{ unknown_variable }}".into(), ..base.clone() },
            EmailTemplate { text_body: "{% for x in y %}".into(), ..base.clone() },
            EmailTemplate {
                text_body: "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                    .into(),
                ..base.clone()
            },
            EmailTemplate { text_body: "x".repeat(MAX_BODY_BYTES + 1), ..base },
        ] {
            assert!(check(kind, &template).is_err(), "{:?}", template.text_body.get(..40));
        }
    }
}
