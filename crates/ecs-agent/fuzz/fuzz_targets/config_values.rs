//! Config file text and environment values: a config, warnings, or a
//! fatal error naming the problem, never a panic.
#![no_main]

use ecs_agent::config::{value, Config, Env, FileConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = value::go_duration(&text);
    let _ = value::port_range(&text);
    let _ = value::port_list(&text);
    let _ = value::string_map(&text);
    if let Ok(file) = FileConfig::parse(&text) {
        let _ = Config::from_sources(&Env::default(), &file, None);
    }
    let env = Env::from_pairs([
        ("ECS_RESERVED_PORTS", text.as_ref()),
        ("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", text.as_ref()),
        ("ECS_INSTANCE_ATTRIBUTES", text.as_ref()),
        ("ECS_TASK_METADATA_RPS_LIMIT", text.as_ref()),
        ("ECS_DYNAMIC_HOST_PORT_RANGE", text.as_ref()),
    ]);
    let _ = Config::from_sources(&env, &FileConfig::default(), None);
});
