//! `CreateCluster`, `ListClusters`, `DescribeClusters`, `DeleteCluster`.
//! A deleted cluster is INACTIVE: described as such, listed no more, and
//! refused (ClusterNotFoundException) by everything that acts on it, until
//! CreateCluster makes it ACTIVE again.

use super::{paginate, ApiError};
use crate::arn;
use crate::store::{ClusterRecord, State};
use crate::Context;
use ecs_model::ecs_api::{
    Cluster, CreateClusterRequest, CreateClusterResponse, DescribeClustersRequest,
    DescribeClustersResponse, KeyValuePair, ListClustersRequest, ListClustersResponse,
};

fn valid_cluster_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The API view of a cluster, with counts computed from the state.
pub(crate) fn view(state: &State, record: &ClusterRecord) -> Cluster {
    let instances = state
        .instances
        .values()
        .filter(|i| i.cluster == record.name && i.status != "INACTIVE")
        .count();
    let tasks: Vec<_> = state
        .tasks
        .values()
        .filter(|t| t.cluster == record.name)
        .collect();
    let count = |status: &str| tasks.iter().filter(|t| t.last_status() == status).count();
    let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let services = state
        .services
        .values()
        .filter(|s| s.cluster == record.name && s.status() == crate::services::ACTIVE)
        .count();
    Cluster {
        cluster_arn: Some(record.arn.clone()),
        cluster_name: Some(record.name.clone()),
        status: Some(record.status.clone()),
        registered_container_instances_count: Some(as_i64(instances)),
        running_tasks_count: Some(as_i64(count("RUNNING"))),
        pending_tasks_count: Some(as_i64(count("PENDING"))),
        active_services_count: Some(as_i64(services)),
        statistics: Some(vec![]),
        tags: Some(record.tags.clone().unwrap_or_default()),
        settings: record.settings.clone(),
        configuration: record.configuration.clone(),
        capacity_providers: Some(vec![]),
        ..Cluster::default()
    }
}

pub(super) fn create(
    ctx: &Context,
    req: CreateClusterRequest,
) -> Result<CreateClusterResponse, ApiError> {
    let name = req
        .cluster_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_owned();
    if !valid_cluster_name(&name) {
        return Err(ApiError::InvalidParameter(
            "Cluster name can contain only letters, numbers, hyphens and underscores, up to 255 characters."
                .to_owned(),
        ));
    }
    super::tags::validate_optional(req.tags.as_deref())?;
    let cluster = ctx.store.update(|st| {
        // Creating a cluster that exists returns it, as ECS does; one that
        // was deleted comes back with the new request's tags and settings.
        if !st.clusters.contains_key(&name) {
            let record = ClusterRecord {
                name: name.clone(),
                arn: ctx.arns.cluster(&name),
                status: "ACTIVE".to_owned(),
                tags: req.tags.clone(),
                settings: req.settings.clone(),
                configuration: req.configuration.clone(),
            };
            st.clusters.insert(name.clone(), record);
        }
        let Some(record) = st.clusters.get_mut(&name) else {
            return Err(ApiError::cluster_not_found());
        };
        if record.status != "ACTIVE" {
            record.status = "ACTIVE".to_owned();
            record.tags = req.tags.clone();
            record.settings = req.settings.clone();
            record.configuration = req.configuration.clone();
        }
        let record = record.clone();
        Ok::<_, ApiError>(view(st, &record))
    })?;
    tracing::info!(cluster = %name, "cluster created");
    Ok(CreateClusterResponse {
        cluster: Some(cluster),
    })
}

pub(super) fn list(
    ctx: &Context,
    req: ListClustersRequest,
) -> Result<ListClustersResponse, ApiError> {
    let arns: Vec<String> = ctx.store.read(|st| {
        st.clusters
            .values()
            .filter(|c| c.status == "ACTIVE")
            .map(|c| c.arn.clone())
            .collect()
    });
    let (cluster_arns, next_token) = paginate(arns, req.next_token.as_deref(), req.max_results)?;
    Ok(ListClustersResponse {
        cluster_arns,
        next_token,
    })
}

/// DescribeClusters' view: tags, settings and statistics only when
/// `include` asks for them, as ECS answers.
fn described(state: &State, record: &ClusterRecord, include: &[String]) -> Cluster {
    let wants = |what: &str| include.iter().any(|i| i == what);
    let mut cluster = view(state, record);
    if !wants("TAGS") {
        cluster.tags = None;
    }
    if !wants("SETTINGS") {
        cluster.settings = None;
    }
    if !wants("CONFIGURATIONS") {
        cluster.configuration = None;
    }
    if wants("STATISTICS") {
        let count = |n: Option<i64>| n.unwrap_or(0).to_string();
        let draining = state
            .services
            .values()
            .filter(|s| s.cluster == record.name && s.status() == crate::services::DRAINING)
            .count();
        let stat = |name: &str, value: String| KeyValuePair {
            name: Some(name.to_owned()),
            value: Some(value),
        };
        cluster.statistics = Some(vec![
            stat("runningEC2TasksCount", count(cluster.running_tasks_count)),
            stat("runningFargateTasksCount", "0".to_owned()),
            stat("pendingEC2TasksCount", count(cluster.pending_tasks_count)),
            stat("pendingFargateTasksCount", "0".to_owned()),
            stat(
                "activeEC2ServiceCount",
                count(cluster.active_services_count),
            ),
            stat("activeFargateServiceCount", "0".to_owned()),
            stat("drainingEC2ServiceCount", draining.to_string()),
            stat("drainingFargateServiceCount", "0".to_owned()),
        ]);
    }
    if wants("ATTACHMENTS") {
        cluster.attachments = Some(Vec::new());
    }
    cluster
}

pub(super) fn describe(
    ctx: &Context,
    req: DescribeClustersRequest,
) -> Result<DescribeClustersResponse, ApiError> {
    let wanted = req.clusters.unwrap_or_else(|| vec!["default".to_owned()]);
    let include: Vec<String> = req
        .include
        .unwrap_or_default()
        .iter()
        .map(|i| i.to_ascii_uppercase())
        .collect();
    if let Some(bad) = include.iter().find(|i| {
        ![
            "TAGS",
            "SETTINGS",
            "STATISTICS",
            "ATTACHMENTS",
            "CONFIGURATIONS",
        ]
        .contains(&i.as_str())
    }) {
        return Err(ApiError::InvalidParameter(format!(
            "Invalid include value '{bad}'; use TAGS, SETTINGS, STATISTICS, ATTACHMENTS or CONFIGURATIONS."
        )));
    }
    if wanted.len() > 100 {
        return Err(ApiError::InvalidParameter(
            "At most 100 clusters can be described at once.".to_owned(),
        ));
    }
    Ok(ctx.store.read(|st| {
        let mut out = DescribeClustersResponse::default();
        for param in &wanted {
            let name = arn::cluster_name(Some(param));
            match st.clusters.get(&name) {
                Some(record) => out.clusters.push(described(st, record, &include)),
                None => out
                    .failures
                    .push(super::missing(param, || ctx.arns.cluster(&name))),
            }
        }
        out
    }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteRequest {
    cluster: Option<String>,
}

/// Deletes (makes INACTIVE) a cluster with no registered instances, no
/// service that is not INACTIVE and no task that has not stopped, as ECS
/// refuses otherwise.
pub(super) fn delete(ctx: &Context, req: DeleteRequest) -> Result<serde_json::Value, ApiError> {
    let param = req
        .cluster
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::InvalidParameter("cluster is required.".to_owned()))?;
    let cluster = ctx.store.update(|st| {
        let name = require(st, Some(&param))?.name.clone();
        if st
            .instances
            .values()
            .any(|i| i.cluster == name && i.status != "INACTIVE")
        {
            return Err(ApiError::ClusterContainsContainerInstances(
                "The Cluster cannot be deleted while Container Instances are active or draining."
                    .to_owned(),
            ));
        }
        if st
            .services
            .values()
            .any(|s| s.cluster == name && s.status() != crate::services::INACTIVE)
        {
            return Err(ApiError::ClusterContainsServices(
                "The Cluster cannot be deleted while Services are active.".to_owned(),
            ));
        }
        if st
            .tasks
            .values()
            .any(|t| t.cluster == name && t.last_status() != "STOPPED")
        {
            return Err(ApiError::ClusterContainsTasks(
                "The Cluster cannot be deleted while Tasks are active.".to_owned(),
            ));
        }
        let record = st
            .clusters
            .get_mut(&name)
            .ok_or_else(ApiError::cluster_not_found)?;
        record.status = "INACTIVE".to_owned();
        let record = record.clone();
        Ok(view(st, &record))
    })?;
    tracing::info!(cluster = param, "cluster deleted");
    Ok(serde_json::json!({ "cluster": cluster }))
}

/// The cluster named by a request parameter, or ClusterNotFoundException.
pub(crate) fn require<'a>(
    state: &'a State,
    param: Option<&str>,
) -> Result<&'a ClusterRecord, ApiError> {
    let name = arn::cluster_name(param);
    state
        .clusters
        .get(&name)
        .filter(|c| c.status == "ACTIVE")
        .ok_or_else(ApiError::cluster_not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert!(valid_cluster_name("my_cluster-1"));
        assert!(!valid_cluster_name(""));
        assert!(!valid_cluster_name("a b"));
        assert!(!valid_cluster_name(&"x".repeat(256)));
    }
}
