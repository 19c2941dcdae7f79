//! Any ACS task JSON is either turned into an engine task or rejected with
//! a reason; a valid one survives the engine's planning rules.
#![no_main]

use ecs_agent::engine::reconcile;
use ecs_agent::engine::task::{IncomingTask, Task};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(task) = serde_json::from_slice::<ecs_model::acs::Task>(data) else {
        return;
    };
    match IncomingTask::try_from(&task) {
        Ok(incoming) => {
            let mut task = Task::new(incoming, 0);
            let _ = reconcile::validate_dependencies(&task);
            let _ = reconcile::plan(&task, 0);
            reconcile::update_known_status(&mut task, 0);
            reconcile::update_desired_status(&mut task);
            let _ = reconcile::take_report(&mut task, false);
        }
        Err(e) => assert!(!e.reason().is_empty()),
    }
});
