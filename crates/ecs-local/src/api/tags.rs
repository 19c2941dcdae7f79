//! `ListTagsForResource`, `TagResource`, `UntagResource` for clusters,
//! container instances, tasks, task definitions and services (the agent's
//! task metadata `taskWithTags` routes list the tags of the task and of its
//! container instance). Capacity providers and task sets do not exist here.

use super::ApiError;
use crate::arn;
use crate::store::{ServiceRecord, State};
use crate::Context;
use ecs_model::ecs_api::Tag;
use serde::{Deserialize, Serialize};

/// Most tags a resource may carry (keys starting with `aws:` do not count).
const MAX_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListTagsForResourceRequest {
    #[serde(default)]
    resource_arn: String,
}

#[derive(Debug, Serialize)]
pub(super) struct ListTagsForResourceResponse {
    tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TagResourceRequest {
    #[serde(default)]
    resource_arn: String,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UntagResourceRequest {
    #[serde(default)]
    resource_arn: String,
    #[serde(default)]
    tag_keys: Vec<String>,
}

/// `TagResource` and `UntagResource` answer an empty object.
#[derive(Debug, Serialize)]
pub(super) struct Empty {}

/// A taggable resource named by an ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Cluster(String),
    Instance { cluster: Option<String>, id: String },
    Task { cluster: Option<String>, id: String },
    TaskDefinition { family: String, revision: i64 },
    Service { cluster: String, name: String },
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter(message.into())
}

fn parse(resource_arn: &str) -> Result<Resource, ApiError> {
    let text = resource_arn.trim();
    if text.is_empty() {
        return Err(invalid("resourceArn must not be empty."));
    }
    let resource = text
        .strip_prefix("arn:")
        .and_then(|rest| rest.splitn(5, ':').nth(4))
        .ok_or_else(|| invalid(format!("Invalid resource ARN: {text}")))?;
    let (kind, path) = resource.split_once('/').unwrap_or((resource, ""));
    let cluster = arn::cluster_of(text).map(str::to_owned);
    let id = arn::resource_id(text).to_owned();
    match kind {
        "cluster" if !path.is_empty() => Ok(Resource::Cluster(path.to_owned())),
        "container-instance" if !path.is_empty() => Ok(Resource::Instance { cluster, id }),
        "task" if !path.is_empty() => Ok(Resource::Task { cluster, id }),
        "task-definition" => match arn::task_definition_ref(text) {
            Some(arn::TaskDefinitionRef {
                family,
                revision: Some(revision),
            }) => Ok(Resource::TaskDefinition { family, revision }),
            _ => Err(invalid(format!("Invalid task definition ARN: {text}"))),
        },
        // New-style service ARNs only: `service/<cluster>/<name>`.
        "service" => match path.split_once('/') {
            Some((cluster, name)) if !cluster.is_empty() && !name.is_empty() => {
                Ok(Resource::Service {
                    cluster: cluster.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(invalid(format!(
                "Invalid service ARN (use the service/<cluster>/<name> form): {text}"
            ))),
        },
        _ => Err(invalid(format!(
            "Tagging '{kind}' resources is not supported by ecs-local; tag clusters, container instances, tasks, task definitions and services."
        ))),
    }
}

fn in_cluster(actual: &str, wanted: &Option<String>) -> bool {
    wanted.as_deref().is_none_or(|w| w == actual)
}

/// The tags of a resource, if it exists.
fn current_tags(state: &State, resource: &Resource) -> Option<Vec<Tag>> {
    let tags = match resource {
        Resource::Cluster(name) => &state.clusters.get(name)?.tags,
        Resource::Instance { cluster, id } => {
            &state
                .instances
                .get(id)
                .filter(|i| in_cluster(&i.cluster, cluster))?
                .tags
        }
        Resource::Task { cluster, id } => {
            &state
                .tasks
                .get(id)
                .filter(|t| in_cluster(&t.cluster, cluster))?
                .task
                .tags
        }
        Resource::TaskDefinition { family, revision } => {
            state.task_definition(family, *revision)?;
            return Some(state.task_definition_tags(family, *revision).to_vec());
        }
        Resource::Service { cluster, name } => {
            &state
                .services
                .get(&ServiceRecord::key(cluster, name))?
                .service
                .tags
        }
    };
    Some(tags.clone().unwrap_or_default())
}

/// The tag list of a resource, if it exists, to change.
fn tags_of<'a>(state: &'a mut State, resource: &Resource) -> Option<&'a mut Vec<Tag>> {
    let list = match resource {
        Resource::Cluster(name) => &mut state.clusters.get_mut(name)?.tags,
        Resource::Instance { cluster, id } => {
            &mut state
                .instances
                .get_mut(id)
                .filter(|i| in_cluster(&i.cluster, cluster))?
                .tags
        }
        Resource::Task { cluster, id } => {
            &mut state
                .tasks
                .get_mut(id)
                .filter(|t| in_cluster(&t.cluster, cluster))?
                .task
                .tags
        }
        Resource::TaskDefinition { family, revision } => {
            state.task_definition(family, *revision)?;
            return Some(
                state
                    .task_definition_tags
                    .get_or_default(&format!("{family}:{revision}")),
            );
        }
        Resource::Service { cluster, name } => {
            &mut state
                .services
                .get_mut(&ServiceRecord::key(cluster, name))?
                .service
                .tags
        }
    };
    Some(list.get_or_insert_with(Vec::new))
}

fn not_found() -> ApiError {
    ApiError::ResourceNotFound("The specified resource wasn't found.".to_owned())
}

fn is_reserved(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

/// Checks tags given at creation (RegisterTaskDefinition, RunTask,
/// CreateService): none at all is fine there.
pub(super) fn validate_optional(tags: Option<&[Tag]>) -> Result<(), ApiError> {
    let Some(tags) = tags.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    validate(tags)?;
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "A resource can have at most {MAX_TAGS} tags; {} were given.",
            tags.len()
        )));
    }
    Ok(())
}

fn validate(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.is_empty() {
        return Err(invalid("tags must name at least one tag."));
    }
    for tag in tags {
        let key = tag.key.as_deref().unwrap_or_default();
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(invalid(format!(
                "Tag key '{key}' must be 1 to {MAX_KEY_CHARS} characters long."
            )));
        }
        if tag.value.as_deref().unwrap_or_default().chars().count() > MAX_VALUE_CHARS {
            return Err(invalid(format!(
                "The value of tag '{key}' is longer than {MAX_VALUE_CHARS} characters."
            )));
        }
        if is_reserved(key) {
            return Err(invalid(format!(
                "Tag key '{key}' uses the prefix aws:, which is reserved for AWS use."
            )));
        }
    }
    Ok(())
}

pub(super) fn list(
    ctx: &Context,
    req: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, ApiError> {
    let resource = parse(&req.resource_arn)?;
    let tags = ctx.store.read(|st| current_tags(st, &resource));
    match (tags, &resource) {
        (Some(tags), _) => Ok(ListTagsForResourceResponse { tags }),
        (None, Resource::Cluster(_)) => Err(ApiError::cluster_not_found()),
        (None, _) => Err(invalid("The specified resource wasn't found.")),
    }
}

pub(super) fn tag(ctx: &Context, req: TagResourceRequest) -> Result<Empty, ApiError> {
    let resource = parse(&req.resource_arn)?;
    validate(&req.tags)?;
    ctx.store.update(|st| {
        let tags = tags_of(st, &resource).ok_or_else(not_found)?;
        for tag in &req.tags {
            match tags.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value.clone(),
                None => tags.push(tag.clone()),
            }
        }
        let counted = tags
            .iter()
            .filter(|t| !is_reserved(t.key.as_deref().unwrap_or_default()))
            .count();
        if counted > MAX_TAGS {
            return Err(invalid(format!(
                "A resource can have at most {MAX_TAGS} tags; this request would give it {counted}."
            )));
        }
        Ok(())
    })?;
    tracing::info!(resource = req.resource_arn, "resource tagged");
    Ok(Empty {})
}

pub(super) fn untag(ctx: &Context, req: UntagResourceRequest) -> Result<Empty, ApiError> {
    let resource = parse(&req.resource_arn)?;
    if req.tag_keys.is_empty() {
        return Err(invalid("tagKeys must name at least one key."));
    }
    ctx.store.update(|st| {
        let tags = tags_of(st, &resource).ok_or_else(not_found)?;
        tags.retain(|t| {
            !req.tag_keys
                .iter()
                .any(|k| t.key.as_deref() == Some(k.as_str()))
        });
        Ok::<_, ApiError>(())
    })?;
    tracing::info!(resource = req.resource_arn, "resource untagged");
    Ok(Empty {})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_taggable_arns() {
        assert_eq!(
            parse("arn:aws:ecs:us-east-1:000000000000:cluster/demo").unwrap(),
            Resource::Cluster("demo".into())
        );
        assert_eq!(
            parse("arn:aws:ecs:us-east-1:000000000000:task/demo/abc").unwrap(),
            Resource::Task {
                cluster: Some("demo".into()),
                id: "abc".into()
            }
        );
        assert_eq!(
            parse("arn:aws:ecs:us-east-1:000000000000:container-instance/abc").unwrap(),
            Resource::Instance {
                cluster: None,
                id: "abc".into()
            }
        );
        assert_eq!(
            parse("arn:aws:ecs:us-east-1:000000000000:task-definition/web:3").unwrap(),
            Resource::TaskDefinition {
                family: "web".into(),
                revision: 3
            }
        );
        assert_eq!(
            parse("arn:aws:ecs:us-east-1:000000000000:service/demo/web").unwrap(),
            Resource::Service {
                cluster: "demo".into(),
                name: "web".into()
            }
        );
        for bad in [
            "",
            "abc",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web",
            "arn:aws:ecs:us-east-1:000000000000:service/web",
            "arn:aws:ecs:us-east-1:000000000000:capacity-provider/cp",
        ] {
            assert!(
                matches!(parse(bad), Err(ApiError::InvalidParameter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn tag_rules() {
        let tag = |k: &str, v: &str| Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        };
        validate(&[tag("team", "a"), tag("empty", "")]).unwrap();
        assert!(validate(&[]).is_err());
        assert!(validate(&[tag("", "x")]).is_err());
        assert!(validate(&[tag(&"k".repeat(129), "x")]).is_err());
        assert!(validate(&[tag("k", &"v".repeat(257))]).is_err());
        assert!(validate(&[tag("AWS:thing", "x")]).is_err());
    }
}
