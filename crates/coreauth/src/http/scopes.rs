//! Which scope an API key needs for each route: one table, so that what a key may reach is
//! read in one place and a route cannot be added without a decision here (an unlisted route is
//! closed to keys, and `tests/api/scopes.rs` fails until the route is listed). Sessions are not
//! scoped; a key is also still bound by its owner's role, which the handlers check.

use axum::http::Method;

use crate::domain::scopes::Scope;

/// The scope a key needs to call `method route` (`route` as the router matched it, e.g.
/// `/admin/orgs/{org_id}/members`), or `None` where only a session may act: the account's own
/// security (password, second factor, its sessions), renewal and logout, SSO linking.
pub fn needed(method: &Method, route: &str) -> Option<Scope> {
    let reads = method.is_safe();
    let area = |read: Scope, write: Scope| Some(if reads { read } else { write });
    let keys = route.starts_with("/authheader/")
        || route.starts_with("/admin/orgs/{org_id}/authheaders")
        || route.starts_with("/admin/orgs/{org_id}/service-accounts");
    let users = matches!(route, "/user/me" | "/user/orgs")
        || route.starts_with("/admin/users")
        || route.starts_with("/admin/orgs/{org_id}/members")
        || route.starts_with("/admin/orgs/{org_id}/invitations");
    let org = route == "/admin/orgs" || route.starts_with("/admin/orgs/{org_id}/");
    match route {
        "/token/introspect" => Some(Scope::TokensIntrospect),
        "/user/authenticate/{name}" => Some(Scope::IntegrationsMint),
        "/admin/audit" => Some(Scope::AuditRead),
        _ if keys => area(Scope::KeysRead, Scope::KeysWrite),
        _ if users => area(Scope::UsersRead, Scope::UsersWrite),
        _ if org => area(Scope::OrgRead, Scope::OrgWrite),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_split_by_path_and_method() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(needed(&get, "/authheader/list"), Some(Scope::KeysRead));
        assert_eq!(needed(&post, "/authheader/add"), Some(Scope::KeysWrite));
        assert_eq!(
            needed(&post, "/admin/orgs/{org_id}/service-accounts/{id}/keys"),
            Some(Scope::KeysWrite)
        );
        assert_eq!(needed(&get, "/user/me"), Some(Scope::UsersRead));
        assert_eq!(
            needed(&Method::PATCH, "/admin/orgs/{org_id}/members/{user_id}"),
            Some(Scope::UsersWrite)
        );
        assert_eq!(
            needed(&Method::PUT, "/admin/orgs/{org_id}/password-policy"),
            Some(Scope::OrgWrite)
        );
        assert_eq!(
            needed(&post, "/token/introspect"),
            Some(Scope::TokensIntrospect)
        );
        assert_eq!(needed(&post, "/user/password"), None);
        assert_eq!(needed(&post, "/user/mfa/totp/enroll"), None);
        assert_eq!(needed(&get, "/user/sessions"), None);
    }
}
