//! Any bytes given as the Go agent's `agent.db` parse to buckets or give
//! an error; whatever parses encodes to a file that parses to the same
//! buckets.
#![no_main]

use ecs_agent::go_state::bolt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(buckets) = bolt::parse(data) {
        // Encoding refuses what bbolt's writer refuses (keys over 32 KiB),
        // which a file may still hold.
        if let Ok(file) = bolt::encode(&buckets) {
            assert_eq!(bolt::parse(&file).ok().as_ref(), Some(&buckets));
        }
    }
});
