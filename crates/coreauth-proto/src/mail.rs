//! What mail carries and leads to: password reset, invitations, address verification, and an
//! org's mail settings and templates.

use serde::{Deserialize, Serialize};

use crate::SecretText;

/// `POST /user/password/forgot`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    pub email: String,
}

/// `POST /user/password/reset`: the token from the mailed link.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetWithLinkRequest {
    pub token: SecretText,
    pub new_password: SecretText,
}

/// `POST /admin/orgs/{orgId}/invitations`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvitationRequest {
    pub email: String,
    /// `admin` or `member`.
    pub role: String,
}

/// An invitation, as its org's admins see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    pub id: String,
    pub org_id: i64,
    pub email: String,
    pub role: String,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub state: String,
    pub created: String,
    /// Unix epoch milliseconds.
    pub expires_at: i64,
    pub invited_by: Option<i64>,
    pub accepted_by: Option<i64>,
}

/// `POST /user/invitations/accept`: the token from the mailed link, and for a new account its
/// password and names (an existing account accepts with its session instead).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    pub token: SecretText,
    #[serde(default)]
    pub password: Option<SecretText>,
    #[serde(default)]
    pub first: Option<String>,
    #[serde(default)]
    pub last: Option<String>,
}

/// The answer of an accepted invitation: who joined which org.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedInvitation {
    pub user_id: i64,
    pub org_id: i64,
}

/// `POST /user/email/verify`: the token from the mailed link.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyEmailRequest {
    pub token: SecretText,
}

/// `POST /user/email/verify/resend`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResendVerificationRequest {
    pub email: String,
}

/// An org's mail settings and the templates it sends (`GET /admin/orgs/{orgId}/email-settings`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailSettingsView {
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub templates: Vec<EmailTemplateView>,
}

/// `PUT /admin/orgs/{orgId}/email-settings`: the sender's display name and reply-to address
/// (absent or empty: none).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetEmailSettingsRequest {
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// One kind of message: `invitation`, `password_reset`, `password_reset_sso` or
/// `email_verification`, as the org sends it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailTemplateView {
    pub kind: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
    /// The org's own; false: the built-in one.
    pub custom: bool,
}

/// `PUT /admin/orgs/{orgId}/email-templates/{kind}`: Jinja templates with the variables
/// `org`, `link`, `email`, `name` and `expires`; the HTML body is escaped.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetEmailTemplateRequest {
    pub subject: String,
    pub text_body: String,
    #[serde(default)]
    pub html_body: Option<String>,
}
