//! Starting tasks: placing each one and creating its record. RunTask,
//! StartTask and the service scheduler all start tasks this way.

use crate::arn::{self, ArnBuilder};
use crate::lifecycle::{self, SpecError, TaskSpec};
use crate::placement::{self, Capacity, Constraint, Shortfall, Strategy};
use crate::store::State;
use ecs_model::ecs_api::{Tag, TaskDefinition, TaskOverride};
use std::time::Duration;

/// What to start, the same for every task of one call.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// Cluster name.
    pub cluster: &'a str,
    pub definition: &'a TaskDefinition,
    pub overrides: Option<&'a TaskOverride>,
    /// `family:<name>`, `service:<name>` or RunTask's `group`.
    pub group: String,
    pub started_by: Option<String>,
    pub tags: Option<Vec<Tag>>,
    pub enable_execute_command: bool,
    pub service: Option<String>,
    pub constraints: &'a [Constraint],
    pub strategies: &'a [Strategy],
}

/// What a launch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Launched {
    /// Ids of the tasks created, in order.
    pub tasks: Vec<String>,
    /// Ids of the instances they went to (to deliver to), each once.
    pub instances: Vec<String>,
    /// For each task that could not be placed, every instance's shortfall.
    pub shortfalls: Vec<Vec<(String, Shortfall)>>,
}

/// The tags a task gets: those propagated from its task definition or
/// service, with the ones given for the task itself laid over them (same
/// key: the given value wins).
pub fn task_tags(propagated: &[Tag], given: Option<&[Tag]>) -> Option<Vec<Tag>> {
    let given = given.unwrap_or_default();
    if propagated.is_empty() && given.is_empty() {
        return None;
    }
    let mut out: Vec<Tag> = propagated
        .iter()
        .filter(|p| !given.iter().any(|g| g.key == p.key))
        .cloned()
        .collect();
    out.extend(given.iter().cloned());
    Some(out)
}

/// The instances of a cluster new tasks may go to: registered and ACTIVE
/// (not DRAINING).
pub fn capacities(state: &State, cluster: &str) -> Vec<Capacity> {
    Capacity::of_all(
        state,
        state
            .instances
            .values()
            .filter(|i| i.cluster == cluster && i.status == "ACTIVE"),
    )
}

/// Places and creates `count` tasks on `capacities` (reduced as they are
/// taken), inserting them into `state` with their role credentials issued.
pub fn launch(
    arns: &ArnBuilder,
    state: &mut State,
    capacities: &mut [Capacity],
    launch: &Launch<'_>,
    count: usize,
    now: f64,
    credentials_ttl: Duration,
) -> Result<Launched, SpecError> {
    let demand = placement::demand(launch.definition, launch.overrides);
    let (task_role, execution_role) =
        lifecycle::effective_roles(launch.definition, launch.overrides);
    let required = placement::required_attributes(
        launch.definition,
        task_role.is_some(),
        execution_role.is_some(),
    );
    let request = placement::Request {
        demand: &demand,
        required: &required,
        group: &launch.group,
        constraints: launch.constraints,
        strategies: launch.strategies,
    };
    let mut out = Launched::default();
    for _ in 0..count {
        let index = match placement::place(capacities, &request) {
            Ok(index) => index,
            Err(shortfalls) => {
                // Capacity only shrinks and constraints only tighten as
                // tasks are placed: the rest would not fit either.
                out.shortfalls.push(shortfalls);
                break;
            }
        };
        let instance_id = capacities[index].instance_id.clone();
        let spec = TaskSpec {
            task_arn: arns.task(launch.cluster, &arn::new_id()),
            cluster: launch.cluster.to_owned(),
            family: launch.definition.family.clone().unwrap_or_default(),
            revision: launch.definition.revision.unwrap_or(1),
            instance_id: instance_id.clone(),
            overrides: launch.overrides.cloned(),
            started_by: launch.started_by.clone(),
            group: Some(launch.group.clone()),
            tags: launch.tags.clone(),
            enable_execute_command: launch.enable_execute_command,
            service: launch.service.clone(),
        };
        let mut record = lifecycle::new_task(arns, state, spec, now)?;
        lifecycle::issue_credentials(&mut record, now, credentials_ttl);
        out.tasks.push(record.id.clone());
        state.tasks.insert(record.id.clone(), record);
        if !out.instances.contains(&instance_id) {
            out.instances.push(instance_id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn given_tags_win_over_propagated_ones() {
        assert_eq!(task_tags(&[], None), None);
        assert_eq!(task_tags(&[], Some(&[])), None);
        assert_eq!(
            task_tags(
                &[tag("team", "a"), tag("app", "web")],
                Some(&[tag("team", "b")])
            ),
            Some(vec![tag("app", "web"), tag("team", "b")])
        );
    }
}
