//! A checkpoint record read back from disk decodes to a task or gives an
//! error (the store then refuses the checkpoint); a decoded task can be
//! planned and encoded for saving again.
#![no_main]

use ecs_agent::engine::reconcile;
use ecs_agent::engine::task::Task;
use ecs_agent::store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut task) = serde_json::from_slice::<Task>(data) {
        let _ = reconcile::plan(&task, 0);
        reconcile::update_known_status(&mut task, 0);
        let _ = store::encode_task(&task);
    }
});
