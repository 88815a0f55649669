//! The Users of an org's SCIM service: its person members.
//!
//! A directory creates accounts only in the org's verified email domains (as org admins do:
//! `admin::Admin::create_user` says why); an account that already exists in such a domain is
//! made a member instead. The account's own fields (address, names, username) change only when
//! the org is its home org; elsewhere the directory manages the membership alone.

use std::collections::HashMap;

use serde_json::Value;
use time::OffsetDateTime;

use super::error::{ScimError, ScimResult};
use super::filter::{self, simple_equality};
use super::patch;
use super::resources::{UserFields, parse_user, render_user};
use super::schemas::ResourceKind;
use super::{ListQuery, Projection, Scim, ScimCaller, page};
use crate::domain::clock::to_millis;
use crate::domain::email::Email;
use crate::domain::org::Role;
use crate::domain::user::{NewUser, Username, unaddressed_key};
use crate::store::records::{
    ScimAccountFields, ScimGroupLookup, ScimUserLookup, ScimUserRecord, ScimUserWrite,
};

impl Scim {
    pub async fn create_user(
        &self,
        caller: &ScimCaller,
        resource: &Value,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        let fields = parse_user(resource)?;
        let address = self.usable_address(caller, &fields).await?;
        let write = ScimUserWrite {
            org_id: caller.org_id,
            account: None,
            member_active: fields.active,
            external_id: fields.external_id.clone(),
            attributes: fields.attributes.clone(),
            now: to_millis(now),
        };
        let details = serde_json::json!({
            "email": address.as_ref().map(Email::as_str),
            "username": fields.username.as_ref().map(Username::as_str),
            "externalId": fields.external_id,
            "active": fields.active,
        });
        let existing = match &address {
            Some(address) => self.store.user_by_email(&address.key()).await?,
            None => None,
        };
        let created = match existing {
            Some(existing) => {
                if self
                    .store
                    .membership(existing.id, caller.org_id)
                    .await?
                    .is_some()
                {
                    return Err(ScimError::uniqueness(
                        "a member of the org has this userName",
                    ));
                }
                let audit = caller.audit("scim.user.linked", now, details);
                self.store
                    .link_scim_user(existing.id, Role::Member, &write, &audit)
                    .await?
            }
            None => {
                let audit = caller.audit("scim.user.created", now, details);
                let (first, last) = (fields.first.clone(), fields.last.clone());
                let person = match &address {
                    Some(address) => NewUser::person(address, first, last, to_millis(now)),
                    None => NewUser::person_without_email(first, last, to_millis(now)),
                };
                let user = NewUser {
                    membership: Some((caller.org_id, Role::Member)),
                    username: fields.username.as_ref().map(Username::stored),
                    ..person
                };
                self.store.create_scim_user(user, &write, &audit).await?
            }
        };
        Ok(render_user(&created, &[], &self.base))
    }

    pub async fn user(
        &self,
        caller: &ScimCaller,
        id: &str,
        shown: &Projection,
    ) -> ScimResult<Value> {
        let user = self.member(caller, id).await?;
        self.show_user(caller, &user, shown).await
    }

    pub async fn users(&self, caller: &ScimCaller, query: &ListQuery) -> ScimResult<Value> {
        let filter = query
            .filter
            .as_deref()
            .map(|f| filter::parse(f, ResourceKind::User))
            .transpose()?;
        let lookup = match filter.as_ref().and_then(simple_equality) {
            Some((attribute, value)) => indexed_lookup(&attribute, value),
            None => Some(ScimUserLookup::All),
        };
        let members = match lookup {
            Some(lookup) => self.store.scim_users(caller.org_id, &lookup).await?,
            None => Vec::new(),
        };
        let shown = Projection {
            attributes: query.attributes.clone(),
            excluded_attributes: query.excluded_attributes.clone(),
        };
        let groups = if shown.shows("groups") && !members.is_empty() {
            self.groups_by_member(caller, (members.len() == 1).then(|| members[0].user.id))
                .await?
        } else {
            HashMap::new()
        };
        let mut resources = Vec::new();
        for member in &members {
            let of_member: Vec<(&str, &str)> = groups
                .get(&member.user.id)
                .map(|g| {
                    g.iter()
                        .map(|(id, name)| (id.as_str(), name.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            let resource = render_user(member, &of_member, &self.base);
            if filter
                .as_ref()
                .is_none_or(|f| filter::matches(f, &resource, ResourceKind::User))
            {
                resources.push(resource);
            }
        }
        let mut list = page(resources, query);
        if let Some(Value::Array(shown_resources)) = list.get_mut("Resources") {
            for resource in shown_resources {
                shown.apply(resource);
            }
        }
        Ok(list)
    }

    pub async fn replace_user(
        &self,
        caller: &ScimCaller,
        id: &str,
        resource: &Value,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        let current = self.member(caller, id).await?;
        let fields = parse_user(resource)?;
        self.write_user(caller, &current, fields, now).await
    }

    pub async fn patch_user(
        &self,
        caller: &ScimCaller,
        id: &str,
        body: &Value,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        let operations = patch::parse(body)?;
        let current = self.member(caller, id).await?;
        let mut resource = render_user(&current, &[], &self.base);
        patch::apply(&mut resource, operations, ResourceKind::User)?;
        let fields = parse_user(&resource)?;
        self.write_user(caller, &current, fields, now).await
    }

    /// Removes the membership: the person's sessions and API keys in the org end with it.
    pub async fn delete_user(
        &self,
        caller: &ScimCaller,
        id: &str,
        now: OffsetDateTime,
    ) -> ScimResult<()> {
        let current = self.member(caller, id).await?;
        let audit = caller
            .audit("scim.user.removed", now, serde_json::json!({}))
            .subject_user(current.user.id);
        self.store
            .remove_scim_user(caller.org_id, current.user.id, to_millis(now), &audit)
            .await?
            .ok_or_else(|| ScimError::not_found("User"))?;
        Ok(())
    }

    async fn write_user(
        &self,
        caller: &ScimCaller,
        current: &ScimUserRecord,
        fields: UserFields,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        let account = &current.user;
        let home = account.home_org_id == Some(caller.org_id) && !account.is_platform_admin;
        let address = if home {
            self.usable_address(caller, &fields).await?
        } else {
            None
        };
        let username = match (&fields.username, &account.username) {
            (Some(name), _) => Some(name.stored()),
            // A userName that is the address leaves a username set by an admin as it is.
            (None, Some(kept)) => Username::parse(kept).ok().map(|u| u.stored()),
            (None, None) => None,
        };
        let event = match (current.member_active, fields.active) {
            (true, false) => "scim.user.deactivated",
            (false, true) => "scim.user.reactivated",
            _ => "scim.user.updated",
        };
        let details = serde_json::json!({
            "externalId": fields.external_id,
            "active": fields.active,
            "accountChanged": home,
        });
        let audit = caller.audit(event, now, details).subject_user(account.id);
        // An address the org may not give leaves the account's as it is.
        let (email, email_key) = match &address {
            Some(address) => (address.as_str().to_owned(), address.key()),
            None => match Email::parse(&account.email) {
                Ok(kept) => (kept.as_str().to_owned(), kept.key()),
                Err(_) => (String::new(), unaddressed_key(&account.uuid)),
            },
        };
        let write = ScimUserWrite {
            org_id: caller.org_id,
            account: home.then(|| ScimAccountFields {
                email,
                email_key,
                first: fields.first.as_str().to_owned(),
                last: fields.last.as_str().to_owned(),
                username,
            }),
            member_active: fields.active,
            external_id: fields.external_id,
            attributes: fields.attributes,
            now: to_millis(now),
        };
        let (updated, _) = self
            .store
            .update_scim_user(account.id, &write, &audit)
            .await?
            .ok_or_else(|| ScimError::not_found("User"))?;
        self.show_user(caller, &updated, &Projection::default())
            .await
    }

    async fn member(&self, caller: &ScimCaller, id: &str) -> ScimResult<ScimUserRecord> {
        self.store
            .scim_users(caller.org_id, &ScimUserLookup::Uuid(id.to_owned()))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ScimError::not_found("User"))
    }

    async fn show_user(
        &self,
        caller: &ScimCaller,
        user: &ScimUserRecord,
        shown: &Projection,
    ) -> ScimResult<Value> {
        let groups = if shown.shows("groups") {
            self.groups_by_member(caller, Some(user.user.id)).await?
        } else {
            HashMap::new()
        };
        let of_member: Vec<(&str, &str)> = groups
            .get(&user.user.id)
            .map(|g| {
                g.iter()
                    .map(|(id, name)| (id.as_str(), name.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let mut resource = render_user(user, &of_member, &self.base);
        shown.apply(&mut resource);
        Ok(resource)
    }

    /// The org's groups each member is in (id, displayName): of one member, or of everyone.
    async fn groups_by_member(
        &self,
        caller: &ScimCaller,
        member: Option<i64>,
    ) -> ScimResult<HashMap<i64, Vec<(String, String)>>> {
        let mut by_member: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        if let Some(user_id) = member {
            let lookup = ScimGroupLookup::WithMember(user_id);
            let groups = self
                .store
                .scim_groups(caller.org_id, &lookup, false)
                .await?;
            let named = groups.into_iter().map(|g| (g.public_id, g.display_name));
            by_member.insert(user_id, named.collect());
            return Ok(by_member);
        }
        let groups = self
            .store
            .scim_groups(caller.org_id, &ScimGroupLookup::All, true)
            .await?;
        for group in groups {
            for m in &group.members {
                by_member
                    .entry(m.user_id)
                    .or_default()
                    .push((group.public_id.clone(), group.display_name.clone()));
            }
        }
        Ok(by_member)
    }

    /// The address the account gets from the resource: a `userName` that is an address must be
    /// in the org's verified email domains (refused otherwise: it is who the person is); an
    /// address from `emails` outside them is kept in the resource only.
    async fn usable_address(
        &self,
        caller: &ScimCaller,
        fields: &UserFields,
    ) -> ScimResult<Option<Email>> {
        let Some(email) = &fields.email else {
            return Ok(None);
        };
        let holders = self
            .store
            .orgs_holding_domain(email.domain().as_str())
            .await?;
        match (holders.contains(&caller.org_id), fields.user_name_is_email) {
            (true, _) => Ok(Some(email.clone())),
            (false, false) => Ok(None),
            (false, true) => Err(ScimError::forbidden(
                "a directory provisions addresses only in the org's verified email domains",
            )),
        }
    }
}

/// The index a `attr eq "value"` filter can be answered from; `None`: nothing can match.
fn indexed_lookup(attribute: &str, value: &str) -> Option<ScimUserLookup> {
    match attribute {
        "username" if value.contains('@') => Email::parse(value)
            .ok()
            .map(|e| ScimUserLookup::EmailKey(e.key())),
        "username" => Username::parse(value)
            .ok()
            .map(|u| ScimUserLookup::UsernameKey(u.key())),
        "externalid" => Some(ScimUserLookup::ExternalId(value.to_owned())),
        "id" => Some(ScimUserLookup::Uuid(value.to_owned())),
        _ => Some(ScimUserLookup::All),
    }
}
