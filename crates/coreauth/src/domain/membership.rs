//! Which org a login opens.

use crate::domain::error::{DomainError, DomainResult};
use crate::domain::org::MembershipRecord;
use crate::domain::user::UserRecord;

/// The membership a login opens: the one asked for; without one, the user's home org while
/// that membership is active, else the org they signed in to last, else their oldest active
/// membership. Never the org that happens to have the lowest id: another org's admin adding
/// the user must not move where their logins land.
pub(crate) fn choose_membership<'a>(
    memberships: &'a [MembershipRecord],
    selected_org: Option<i64>,
    user: &UserRecord,
) -> DomainResult<&'a MembershipRecord> {
    let active = |org_id: Option<i64>| {
        memberships
            .iter()
            .find(|m| m.is_active && Some(m.org_id) == org_id)
    };
    match selected_org {
        None | Some(0) => active(user.home_org_id)
            .or_else(|| active(user.last_org_id))
            .or_else(|| memberships.iter().find(|m| m.is_active)),
        Some(org_id) => active(Some(org_id)),
    }
    .ok_or(DomainError::NoActiveOrg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cache::MemberProfile;
    use crate::domain::org::Role;

    fn membership(org_id: i64, is_active: bool) -> MembershipRecord {
        MembershipRecord {
            user_id: 1,
            org_id,
            org_name: format!("org {org_id}"),
            role: Role::Member,
            is_active,
        }
    }

    fn user(home: Option<i64>, last: Option<i64>) -> UserRecord {
        let mut user = UserRecord::clone(MemberProfile::for_tests(1, 1).user());
        user.home_org_id = home;
        user.last_org_id = last;
        user
    }

    #[test]
    fn no_selected_org_means_the_home_org_then_the_last_then_the_first_active() {
        let ms = [
            membership(1, false),
            membership(2, true),
            membership(3, true),
            membership(4, true),
        ];
        let pick = |home, last| {
            choose_membership(&ms, None, &user(home, last))
                .unwrap()
                .org_id
        };
        assert_eq!(pick(Some(3), Some(4)), 3, "home");
        assert_eq!(pick(Some(1), Some(4)), 4, "home inactive: the last used");
        assert_eq!(
            pick(Some(1), Some(1)),
            2,
            "neither active: the first active"
        );
        assert_eq!(pick(None, None), 2);
        assert_eq!(pick(Some(9), None), 2, "home no longer a membership");
        let zero = choose_membership(&ms, Some(0), &user(Some(3), None));
        assert_eq!(zero.unwrap().org_id, 3);
    }

    #[test]
    fn a_selected_org_must_be_an_active_membership() {
        let ms = [membership(1, false), membership(2, true)];
        let anyone = user(Some(1), Some(1));
        assert_eq!(choose_membership(&ms, Some(2), &anyone).unwrap().org_id, 2);
        assert!(matches!(
            choose_membership(&ms, Some(1), &anyone),
            Err(DomainError::NoActiveOrg)
        ));
        assert!(matches!(
            choose_membership(&ms, Some(9), &anyone),
            Err(DomainError::NoActiveOrg)
        ));
        assert!(matches!(
            choose_membership(&[], None, &anyone),
            Err(DomainError::NoActiveOrg)
        ));
    }
}
