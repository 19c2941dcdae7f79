//! The backend's `dockerConfig` strings are laid over the agent's create
//! request; arbitrary text must give a body or a named error, never a panic.
#![no_main]

use ecs_agent::engine::create_config::{build, CreateContext};
use ecs_agent::engine::task::{IncomingTask, Task};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (config, host) = text.split_once('\u{0}').unwrap_or((&text, "{}"));
    let task: ecs_model::acs::Task = match serde_json::from_value(serde_json::json!({
        "arn": "arn:aws:ecs:us-east-1:1:task/c/fuzz", "family": "f", "version": "1",
        "desiredStatus": "RUNNING",
        "containers": [{"name": "c", "image": "i",
            "dockerConfig": {"config": config, "hostConfig": host}}]
    })) {
        Ok(t) => t,
        Err(_) => return,
    };
    let Ok(incoming) = IncomingTask::try_from(&task) else {
        return;
    };
    let task = Task::new(incoming, 0);
    let ctx = CreateContext {
        cluster: "c",
        region: "r",
        image_env: &["AWS_REGION=image".to_owned()],
        privileged_disabled: true,
        logging_drivers: &["json-file".to_owned(), "none".to_owned()],
        extra_env: &[("ECS_CONTAINER_METADATA_FILE".to_owned(), "/m".to_owned())],
        extra_binds: &["/host/m:/m".to_owned()],
        cgroup_parent: Some("/ecs/t"),
        secrets: None,
    };
    let _ = build(&task, 0, &ctx);
});
