//! `PutAttributes`, `DeleteAttributes` and `ListAttributes`: custom
//! attributes of container instances, which placement checks like the
//! capabilities agents register with (a name set here wins over the
//! agent's, and outlasts its re-registrations).

use super::{clusters, paginate, ApiError};
use crate::arn;
use crate::store::{InstanceRecord, State};
use crate::Context;
use ecs_model::ecs_api::Attribute;

/// The only target type ECS has attributes for.
const CONTAINER_INSTANCE: &str = "container-instance";
/// Custom attributes one container instance may have.
const MAX_CUSTOM: usize = 10;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChangeRequest {
    cluster: Option<String>,
    attributes: Option<Vec<Attribute>>,
}

fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
}

fn valid_value(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@:() ".contains(c))
}

/// The attributes of a Put or Delete, checked: names, values, targets.
fn checked(req: ChangeRequest, with_values: bool) -> Result<Vec<Attribute>, ApiError> {
    let attributes = req.attributes.unwrap_or_default();
    if attributes.is_empty() || attributes.len() > MAX_CUSTOM {
        return Err(ApiError::InvalidParameter(format!(
            "attributes must hold 1 to {MAX_CUSTOM} attributes."
        )));
    }
    for a in &attributes {
        if !valid_name(&a.name) {
            return Err(ApiError::InvalidParameter(format!(
                "Invalid attribute name {:?}: up to 128 letters, numbers, hyphens, underscores, periods, at signs and slashes.",
                a.name
            )));
        }
        if with_values && a.value.as_deref().is_some_and(|v| !valid_value(v)) {
            return Err(ApiError::InvalidParameter(format!(
                "Invalid value for attribute {:?}.",
                a.name
            )));
        }
        if a.target_type
            .as_deref()
            .is_some_and(|t| t != CONTAINER_INSTANCE)
        {
            return Err(ApiError::InvalidParameter(
                "targetType must be container-instance.".to_owned(),
            ));
        }
        if a.target_id.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::InvalidParameter(format!(
                "Attribute {:?} needs a targetId (a container instance ID or ARN).",
                a.name
            )));
        }
    }
    Ok(attributes)
}

/// The registered instance `id` of `cluster`, or TargetNotFoundException.
fn target<'a>(state: &'a State, cluster: &str, id: &str) -> Result<&'a InstanceRecord, ApiError> {
    state
        .instances
        .get(id)
        .filter(|i| i.cluster == cluster && i.status != "INACTIVE")
        .ok_or_else(|| ApiError::TargetNotFound(format!("Could not find {id}.")))
}

/// As ECS echoes an attribute: the target named by its ID.
fn echoed(a: &Attribute) -> Attribute {
    Attribute {
        name: a.name.clone(),
        value: a.value.clone(),
        target_type: Some(CONTAINER_INSTANCE.to_owned()),
        target_id: a.target_id.clone(),
    }
}

pub(super) fn put(ctx: &Context, req: ChangeRequest) -> Result<serde_json::Value, ApiError> {
    let cluster_param = req.cluster.clone();
    let attributes = checked(req, true)?;
    ctx.store.update(|st| {
        let cluster = clusters::require(st, cluster_param.as_deref())?
            .name
            .clone();
        // All or nothing: every target is checked before any changes.
        for a in &attributes {
            let id = arn::resource_id(a.target_id.as_deref().unwrap_or_default());
            let record = target(st, &cluster, id)?;
            let mut names: Vec<&str> = record
                .custom_attributes
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            for b in attributes
                .iter()
                .filter(|b| arn::resource_id(b.target_id.as_deref().unwrap_or_default()) == id)
            {
                if !names.contains(&b.name.as_str()) {
                    names.push(&b.name);
                }
            }
            if names.len() > MAX_CUSTOM {
                return Err(ApiError::AttributeLimitExceeded(format!(
                    "A container instance may have at most {MAX_CUSTOM} custom attributes."
                )));
            }
        }
        for a in &attributes {
            let id = arn::resource_id(a.target_id.as_deref().unwrap_or_default()).to_owned();
            if let Some(record) = st.instances.get_mut(&id) {
                record.custom_attributes.retain(|c| c.name != a.name);
                record.custom_attributes.push(Attribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                    target_type: None,
                    target_id: None,
                });
                record.version = record.version.saturating_add(1);
            }
        }
        Ok::<_, ApiError>(())
    })?;
    let echoed: Vec<Attribute> = attributes.iter().map(echoed).collect();
    Ok(serde_json::json!({ "attributes": echoed }))
}

pub(super) fn delete(ctx: &Context, req: ChangeRequest) -> Result<serde_json::Value, ApiError> {
    let cluster_param = req.cluster.clone();
    let attributes = checked(req, false)?;
    ctx.store.update(|st| {
        let cluster = clusters::require(st, cluster_param.as_deref())?
            .name
            .clone();
        for a in &attributes {
            target(
                st,
                &cluster,
                arn::resource_id(a.target_id.as_deref().unwrap_or_default()),
            )?;
        }
        for a in &attributes {
            let id = arn::resource_id(a.target_id.as_deref().unwrap_or_default()).to_owned();
            if let Some(record) = st.instances.get_mut(&id) {
                record.custom_attributes.retain(|c| c.name != a.name);
                record.version = record.version.saturating_add(1);
            }
        }
        Ok::<_, ApiError>(())
    })?;
    let echoed: Vec<Attribute> = attributes.iter().map(echoed).collect();
    Ok(serde_json::json!({ "attributes": echoed }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListRequest {
    cluster: Option<String>,
    target_type: Option<String>,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// Every attribute of the cluster's registered instances (the agent's and
/// the custom ones), optionally one name, and with it one value.
pub(super) fn list(ctx: &Context, req: ListRequest) -> Result<serde_json::Value, ApiError> {
    if req.target_type.as_deref() != Some(CONTAINER_INSTANCE) {
        return Err(ApiError::InvalidParameter(
            "targetType must be container-instance.".to_owned(),
        ));
    }
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(ApiError::InvalidParameter(
            "attributeValue needs attributeName.".to_owned(),
        ));
    }
    let found: Vec<Attribute> = ctx.store.read(|st| {
        let cluster = clusters::require(st, req.cluster.as_deref())?.name.clone();
        Ok::<_, ApiError>(
            st.instances
                .values()
                .filter(|i| i.cluster == cluster && i.status != "INACTIVE")
                .flat_map(|i| {
                    i.all_attributes().into_iter().map(move |a| Attribute {
                        target_type: Some(CONTAINER_INSTANCE.to_owned()),
                        target_id: Some(i.arn.clone()),
                        ..a
                    })
                })
                .filter(|a| req.attribute_name.as_ref().is_none_or(|n| *n == a.name))
                .filter(|a| {
                    req.attribute_value
                        .as_ref()
                        .is_none_or(|v| a.value.as_ref() == Some(v))
                })
                .collect(),
        )
    })?;
    let (page, next_token) = paginate(found, req.next_token.as_deref(), req.max_results)?;
    let mut out = serde_json::json!({ "attributes": page });
    if let Some(token) = next_token {
        out["nextToken"] = serde_json::json!(token);
    }
    Ok(out)
}
