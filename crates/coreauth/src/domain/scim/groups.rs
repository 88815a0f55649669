//! The Groups of an org's SCIM service: the directory's groups, whose members are the org's
//! person members. Through the org's groups → role table they give roles (`store::scim`).

use std::collections::HashMap;

use serde_json::Value;
use time::OffsetDateTime;

use super::error::{ScimError, ScimResult};
use super::filter::{self, simple_equality};
use super::patch;
use super::resources::{GroupFields, parse_group, render_group};
use super::schemas::ResourceKind;
use super::{ListQuery, Projection, Scim, ScimCaller, page};
use crate::domain::clock::to_millis;
use crate::store::records::{ScimGroupLookup, ScimGroupRecord, ScimGroupWrite, ScimUserLookup};

/// Up to this many members are looked up one by one; a larger group reads the org's members.
const MEMBERS_LOOKED_UP_ONE_BY_ONE: usize = 20;

impl Scim {
    pub async fn create_group(
        &self,
        caller: &ScimCaller,
        resource: &Value,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        let fields = parse_group(resource)?;
        let public_id = uuid::Uuid::new_v4().to_string();
        let write = self.group_write(caller, public_id, &fields, now).await?;
        let audit = caller
            .audit("scim.group.created", now, self.group_details(&fields))
            .subject(write.public_id.clone());
        let group = self.store.create_scim_group(&write, &audit).await?;
        Ok(render_group(&group, &self.base))
    }

    pub async fn group(
        &self,
        caller: &ScimCaller,
        id: &str,
        shown: &Projection,
    ) -> ScimResult<Value> {
        let group = self
            .stored_group(caller, id, shown.shows("members"))
            .await?;
        let mut resource = render_group(&group, &self.base);
        shown.apply(&mut resource);
        Ok(resource)
    }

    pub async fn groups(&self, caller: &ScimCaller, query: &ListQuery) -> ScimResult<Value> {
        let filter = query
            .filter
            .as_deref()
            .map(|f| filter::parse(f, ResourceKind::Group))
            .transpose()?;
        let lookup = match filter.as_ref().and_then(simple_equality) {
            Some((attribute, value)) => match attribute.as_str() {
                "displayname" => ScimGroupLookup::DisplayNameKey(value.to_lowercase()),
                "externalid" => ScimGroupLookup::ExternalId(value.to_owned()),
                "id" => ScimGroupLookup::PublicId(value.to_owned()),
                _ => ScimGroupLookup::All,
            },
            None => ScimGroupLookup::All,
        };
        let shown = Projection {
            attributes: query.attributes.clone(),
            excluded_attributes: query.excluded_attributes.clone(),
        };
        // A filter on members needs them, shown or not.
        let filters_members = filter.as_ref().is_some_and(|f| filter::reads(f, "members"));
        let with_members = shown.shows("members") || filters_members;
        let groups = self
            .store
            .scim_groups(caller.org_id, &lookup, with_members)
            .await?;
        let mut resources: Vec<Value> = groups
            .iter()
            .map(|g| render_group(g, &self.base))
            .filter(|r| {
                filter
                    .as_ref()
                    .is_none_or(|f| filter::matches(f, r, ResourceKind::Group))
            })
            .collect();
        for resource in &mut resources {
            shown.apply(resource);
        }
        Ok(page(resources, query))
    }

    pub async fn replace_group(
        &self,
        caller: &ScimCaller,
        id: &str,
        resource: &Value,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        self.stored_group(caller, id, false).await?;
        let fields = parse_group(resource)?;
        self.write_group(caller, id, &fields, now).await
    }

    pub async fn patch_group(
        &self,
        caller: &ScimCaller,
        id: &str,
        body: &Value,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        let operations = patch::parse(body)?;
        let current = self.stored_group(caller, id, true).await?;
        let mut resource = render_group(&current, &self.base);
        patch::apply(&mut resource, operations, ResourceKind::Group)?;
        let fields = parse_group(&resource)?;
        self.write_group(caller, id, &fields, now).await
    }

    pub async fn delete_group(
        &self,
        caller: &ScimCaller,
        id: &str,
        now: OffsetDateTime,
    ) -> ScimResult<()> {
        let audit = caller
            .audit("scim.group.deleted", now, serde_json::json!({}))
            .subject(id);
        if self
            .store
            .delete_scim_group(caller.org_id, id, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(ScimError::not_found("Group"))
        }
    }

    async fn write_group(
        &self,
        caller: &ScimCaller,
        id: &str,
        fields: &GroupFields,
        now: OffsetDateTime,
    ) -> ScimResult<Value> {
        let write = self.group_write(caller, id.to_owned(), fields, now).await?;
        let audit = caller
            .audit("scim.group.updated", now, self.group_details(fields))
            .subject(id);
        let group = self
            .store
            .replace_scim_group(&write, &audit)
            .await?
            .ok_or_else(|| ScimError::not_found("Group"))?;
        Ok(render_group(&group, &self.base))
    }

    fn group_details(&self, fields: &GroupFields) -> Value {
        serde_json::json!({
            "displayName": fields.display_name,
            "externalId": fields.external_id,
            "members": fields.member_ids.len(),
        })
    }

    async fn stored_group(
        &self,
        caller: &ScimCaller,
        id: &str,
        with_members: bool,
    ) -> ScimResult<ScimGroupRecord> {
        self.store
            .scim_groups(
                caller.org_id,
                &ScimGroupLookup::PublicId(id.to_owned()),
                with_members,
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ScimError::not_found("Group"))
    }

    /// The write a group's fields make: its members' ids resolved among the org's members.
    async fn group_write(
        &self,
        caller: &ScimCaller,
        public_id: String,
        fields: &GroupFields,
        now: OffsetDateTime,
    ) -> ScimResult<ScimGroupWrite> {
        let mut members = Vec::with_capacity(fields.member_ids.len());
        if fields.member_ids.len() <= MEMBERS_LOOKED_UP_ONE_BY_ONE {
            for id in &fields.member_ids {
                let found = self
                    .store
                    .scim_users(caller.org_id, &ScimUserLookup::Uuid(id.clone()))
                    .await?;
                let user = found.first().ok_or_else(|| unknown_member(id))?;
                members.push(user.user.id);
            }
        } else {
            let everyone: HashMap<String, i64> = self
                .store
                .scim_users(caller.org_id, &ScimUserLookup::All)
                .await?
                .into_iter()
                .map(|u| (u.user.uuid, u.user.id))
                .collect();
            for id in &fields.member_ids {
                members.push(*everyone.get(id).ok_or_else(|| unknown_member(id))?);
            }
        }
        Ok(ScimGroupWrite {
            org_id: caller.org_id,
            public_id,
            display_name: fields.display_name.clone(),
            display_name_key: fields.name_key(),
            external_id: fields.external_id.clone(),
            members,
            now: to_millis(now),
        })
    }
}

fn unknown_member(id: &str) -> ScimError {
    ScimError::invalid_value(format!("member {id:?} is not a User of the org"))
}
