//! A checkpoint record read back from disk decodes or is skipped; a decoded
//! one can be planned and saved again.
#![no_main]

use ecs_agent::engine::reconcile;
use ecs_agent::engine::task::Task;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut task) = serde_json::from_slice::<Task>(data) {
        let _ = reconcile::plan(&task, 0);
        reconcile::update_known_status(&mut task, 0);
        let _ = serde_json::to_vec(&task);
    }
});
