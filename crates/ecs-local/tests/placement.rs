//! Placement constraints and strategies of RunTask, its clientToken, and
//! ListContainerInstances' filter, through the Rust SDK against three
//! simulated instances.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::types::{
    Attribute, ContainerDefinition, PlacementConstraint, PlacementConstraintType,
    PlacementStrategy, PlacementStrategyType,
};
use common::*;
use std::collections::BTreeMap;

const CLUSTER: &str = "place";
/// Each instance has room for 4 tasks of [`TASK_MEMORY`].
const INSTANCE_MEMORY: i64 = 2048;
const TASK_MEMORY: i32 = 512;

/// A cluster with three connected instances (their ARNs, sorted, and the
/// agent of each, in the same order) and the task definition `app`.
async fn three_instances(h: &Harness) -> (Vec<String>, Vec<Ws>) {
    let ecs = h.client();
    ecs.create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("app")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("busybox:latest")
                .memory(TASK_MEMORY)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(connected_instance(h, CLUSTER, 1024, INSTANCE_MEMORY).await);
    }
    instances.sort_by(|a, b| a.0.cmp(&b.0));
    instances.into_iter().unzip()
}

fn member_of(expression: &str) -> PlacementConstraint {
    PlacementConstraint::builder()
        .r#type(PlacementConstraintType::MemberOf)
        .expression(expression)
        .build()
}

fn distinct_instance() -> PlacementConstraint {
    PlacementConstraint::builder()
        .r#type(PlacementConstraintType::DistinctInstance)
        .build()
}

fn strategy(kind: &str, field: Option<&str>) -> PlacementStrategy {
    PlacementStrategy::builder()
        .r#type(PlacementStrategyType::from(kind))
        .set_field(field.map(str::to_owned))
        .build()
}

/// Tasks of the response per container instance ARN.
fn per_instance(run: &RunTaskOutput) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for task in run.tasks() {
        *out.entry(task.container_instance_arn().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

/// The response's failures as (instance ARN, reason), sorted.
fn failures(run: &RunTaskOutput) -> Vec<(String, String)> {
    let mut out: Vec<_> = run
        .failures()
        .iter()
        .map(|f| (f.arn().unwrap().to_owned(), f.reason().unwrap().to_owned()))
        .collect();
    out.sort();
    out
}

fn every_instance(arns: &[String], reason: &str) -> Vec<(String, String)> {
    arns.iter()
        .map(|a| (a.clone(), reason.to_owned()))
        .collect()
}

fn task_count(h: &Harness) -> usize {
    h.plane.store().read(|st| st.tasks.len())
}

async fn put_attribute(ecs: &aws_sdk_ecs::Client, instance: &str, name: &str, value: &str) {
    ecs.put_attributes()
        .cluster(CLUSTER)
        .attributes(
            Attribute::builder()
                .name(name)
                .value(value)
                .target_id(instance)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn member_of_places_only_where_a_custom_attribute_matches() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arns, _agents) = three_instances(&h).await;
    put_attribute(&ecs, &arns[1], "stack", "prod").await;
    put_attribute(&ecs, &arns[2], "stack", "staging").await;

    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .count(3)
        .placement_constraints(member_of("attribute:stack == prod"))
        .send()
        .await
        .unwrap();
    assert_eq!(run.failures(), []);
    assert_eq!(per_instance(&run), BTreeMap::from([(arns[1].clone(), 3)]));
    let stored_on: Vec<String> = h.plane.store().read(|st| {
        st.tasks
            .values()
            .map(|t| t.instance_id.clone().unwrap())
            .collect()
    });
    let prod_id = arns[1].rsplit('/').next().unwrap();
    assert_eq!(stored_on, vec![prod_id; 3]);

    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .placement_constraints(member_of("attribute:stack == nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(run.tasks(), []);
    assert_eq!(
        failures(&run),
        every_instance(&arns, "MemberOf placement constraint unsatisfied.")
    );
    assert_eq!(task_count(&h), 3);
}

#[tokio::test]
async fn distinct_instance_puts_one_task_of_a_group_per_instance() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arns, _agents) = three_instances(&h).await;
    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .count(3)
        .placement_constraints(distinct_instance())
        .send()
        .await
        .unwrap();
    assert_eq!(run.failures(), []);
    let one_each: BTreeMap<String, usize> = arns.iter().map(|a| (a.clone(), 1)).collect();
    assert_eq!(per_instance(&run), one_each);

    // The default group is family:app, as the first call's was.
    let again = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .placement_constraints(distinct_instance())
        .send()
        .await
        .unwrap();
    assert_eq!(again.tasks(), []);
    assert_eq!(
        failures(&again),
        every_instance(&arns, "DistinctInstance placement constraint unsatisfied.")
    );

    let other_group = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .group("batch")
        .count(3)
        .placement_constraints(distinct_instance())
        .send()
        .await
        .unwrap();
    assert_eq!(per_instance(&other_group), one_each);
    assert_eq!(task_count(&h), 6);
}

#[tokio::test]
async fn spread_over_instance_id_balances_the_tasks() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arns, _agents) = three_instances(&h).await;
    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .count(6)
        .placement_strategy(strategy("spread", Some("instanceId")))
        .send()
        .await
        .unwrap();
    assert_eq!(run.failures(), []);
    let two_each: BTreeMap<String, usize> = arns.iter().map(|a| (a.clone(), 2)).collect();
    assert_eq!(per_instance(&run), two_each);
}

#[tokio::test]
async fn binpack_on_memory_fills_the_fullest_instance_first() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arns, _agents) = three_instances(&h).await;
    put_attribute(&ecs, &arns[2], "stack", "prod").await;
    // One task makes the last instance the fullest.
    ecs.run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .placement_constraints(member_of("attribute:stack == prod"))
        .send()
        .await
        .unwrap();

    let binpack = strategy("binpack", Some("memory"));
    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .count(3)
        .placement_strategy(binpack.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(run.failures(), []);
    assert_eq!(per_instance(&run), BTreeMap::from([(arns[2].clone(), 3)]));

    // It is full now: the next task goes to one of the others.
    let next = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .placement_strategy(binpack)
        .send()
        .await
        .unwrap();
    assert_eq!(next.tasks().len(), 1, "{:?}", next.failures());
    let went_to = next.tasks()[0].container_instance_arn().unwrap();
    assert!(went_to == arns[0] || went_to == arns[1], "{went_to}");
    let described = ecs
        .describe_container_instances()
        .cluster(CLUSTER)
        .container_instances(&arns[2])
        .send()
        .await
        .unwrap();
    let memory_left = described.container_instances()[0]
        .remaining_resources()
        .iter()
        .find(|r| r.name() == Some("MEMORY"))
        .unwrap()
        .integer_value();
    assert_eq!(memory_left, 0);
}

#[tokio::test]
async fn the_same_client_token_returns_the_first_calls_tasks() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (_arns, _agents) = three_instances(&h).await;
    let run = |token: &str| {
        ecs.run_task()
            .cluster(CLUSTER)
            .task_definition("app")
            .count(2)
            .client_token(token)
            .send()
    };
    let task_arns = |out: &RunTaskOutput| {
        let mut arns: Vec<String> = out
            .tasks()
            .iter()
            .map(|t| t.task_arn().unwrap().to_owned())
            .collect();
        arns.sort();
        arns
    };
    let first = run("deploy-42").await.unwrap();
    assert_eq!(first.tasks().len(), 2);
    let again = run("deploy-42").await.unwrap();
    assert_eq!(task_arns(&again), task_arns(&first));
    assert_eq!(again.failures(), []);
    assert_eq!(task_count(&h), 2);

    let other = run("deploy-43").await.unwrap();
    assert_eq!(other.tasks().len(), 2);
    assert!(task_arns(&other)
        .iter()
        .all(|a| !task_arns(&first).contains(a)));
    assert_eq!(task_count(&h), 4);

    let err = run(&"t".repeat(65)).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    assert_eq!(
        err.message(),
        Some("clientToken must be at most 64 characters.")
    );
    assert_eq!(task_count(&h), 4);
}

#[tokio::test]
async fn bad_constraints_and_strategies_are_invalid_parameters() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (_arns, _agents) = three_instances(&h).await;
    let refused = |constraint: Option<PlacementConstraint>, strategy: Option<PlacementStrategy>| {
        ecs.run_task()
            .cluster(CLUSTER)
            .task_definition("app")
            .set_placement_constraints(constraint.map(|c| vec![c]))
            .set_placement_strategy(strategy.map(|s| vec![s]))
            .send()
    };
    let cases = [
        (
            None,
            Some(strategy("binpack", Some("disk"))),
            "The binpack placement strategy needs the field cpu or memory.",
        ),
        (
            None,
            Some(strategy("spread", None)),
            "The spread placement strategy needs a field.",
        ),
        (
            None,
            Some(strategy("scatter", Some("instanceId"))),
            "Invalid placement strategy type 'scatter'; use random, spread or binpack.",
        ),
        (
            Some(
                PlacementConstraint::builder()
                    .r#type(PlacementConstraintType::MemberOf)
                    .build(),
            ),
            None,
            "An expression is required for the memberOf placement constraint.",
        ),
        (
            Some(member_of("attribute:stack = prod")),
            None,
            "Invalid memberOf expression: Invalid expression: unexpected character '=' at \
             position 16",
        ),
    ];
    for (constraint, strategy, message) in cases {
        let err = refused(constraint, strategy).await.unwrap_err();
        assert_eq!(err.code(), Some("InvalidParameterException"), "{message}");
        assert_eq!(err.message(), Some(message));
    }
    let six = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .set_placement_strategy(Some(vec![strategy("random", None); 6]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        six.message(),
        Some("A maximum of 5 placement strategies may be specified.")
    );
    assert_eq!(task_count(&h), 0);
}

#[tokio::test]
async fn list_container_instances_filters_with_the_cluster_query_language() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arns, _agents) = three_instances(&h).await;
    put_attribute(&ecs, &arns[0], "stack", "prod").await;
    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .placement_constraints(member_of("attribute:stack != prod"))
        .placement_strategy(strategy("binpack", Some("memory")))
        .send()
        .await
        .unwrap();
    let busy = run.tasks()[0].container_instance_arn().unwrap().to_owned();
    assert_ne!(busy, arns[0]);
    // As its agent would, report the task running.
    ecs.submit_task_state_change()
        .cluster(CLUSTER)
        .task(run.tasks()[0].task_arn().unwrap())
        .status("RUNNING")
        .send()
        .await
        .unwrap();

    let list = |filter: &str| {
        ecs.list_container_instances()
            .cluster(CLUSTER)
            .filter(filter)
            .send()
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let prod = list("attribute:stack == prod").await.unwrap();
    assert_eq!(prod.container_instance_arns(), &arns[..1]);
    let not_prod = list("attribute:stack != prod").await.unwrap();
    assert_eq!(
        sorted(not_prod.container_instance_arns().to_vec()),
        arns[1..].to_vec()
    );
    let busy_ones = list("runningTasksCount > 0").await.unwrap();
    assert_eq!(
        busy_ones.container_instance_arns(),
        std::slice::from_ref(&busy)
    );
    let idle = list("runningTasksCount == 0 and agentConnected == true")
        .await
        .unwrap();
    let expected_idle: Vec<String> = arns.iter().filter(|a| **a != busy).cloned().collect();
    assert_eq!(
        sorted(idle.container_instance_arns().to_vec()),
        expected_idle
    );
    let by_group = list("task:group == family:app").await.unwrap();
    assert_eq!(by_group.container_instance_arns(), [busy]);
    let everyone = list("").await.unwrap();
    assert_eq!(sorted(everyone.container_instance_arns().to_vec()), arns);

    let err = list("attribute:stack == (prod").await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    let err = list("runningTasksCount > many").await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
    assert!(
        err.message().unwrap().starts_with("Invalid expression: "),
        "{:?}",
        err.message()
    );
}

#[tokio::test]
async fn an_instance_whose_agent_disconnected_is_refused_with_agent() {
    let h = Harness::start().await;
    let ecs = h.client();
    let (arns, mut agents) = three_instances(&h).await;
    let lost_id = arns[1].rsplit('/').next().unwrap().to_owned();
    drop(agents.remove(1));
    eventually(&h.plane, "agent disconnected", |st| {
        !st.instances[&lost_id].agent_connected
    })
    .await;

    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .count(3)
        .placement_constraints(distinct_instance())
        .send()
        .await
        .unwrap();
    let placed = per_instance(&run);
    assert_eq!(
        placed,
        BTreeMap::from([(arns[0].clone(), 1), (arns[2].clone(), 1)])
    );
    assert_eq!(
        failures(&run),
        vec![
            (
                arns[0].clone(),
                "DistinctInstance placement constraint unsatisfied.".to_owned()
            ),
            (arns[1].clone(), "AGENT".to_owned()),
            (
                arns[2].clone(),
                "DistinctInstance placement constraint unsatisfied.".to_owned()
            ),
        ]
    );
}
