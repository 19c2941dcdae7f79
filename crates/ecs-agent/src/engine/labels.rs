//! The labels the agent puts on every container it creates. They let a
//! restarted agent (or an operator) find a task's containers in Docker even
//! without the agent's state (docs/engine.md §7.5).

use super::task::Task;

pub const TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
pub const CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
pub const TASK_DEFINITION_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
pub const TASK_DEFINITION_VERSION: &str = "com.amazonaws.ecs.task-definition-version";
pub const CLUSTER: &str = "com.amazonaws.ecs.cluster";

/// The five agent labels for one container, cluster as configured.
pub fn for_container<'a>(
    task: &'a Task,
    container_name: &'a str,
    cluster: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        (TASK_ARN, task.arn()),
        (CONTAINER_NAME, container_name),
        (TASK_DEFINITION_FAMILY, &task.spec.family),
        (TASK_DEFINITION_VERSION, &task.spec.version),
        (CLUSTER, cluster),
    ]
}
