//! Deliberate internal failures, for the end-to-end tests of crash
//! handling (docs/architecture.md §3.1). Only debug builds have them: in a
//! release build [`hit`] is empty. `ECS_AGENT_FAILPOINT=<name>` panics at
//! the first hit of the point `<name>`, `<name>@<n>` at its n-th hit.

/// Panics here if the environment asks for it.
#[cfg(debug_assertions)]
pub fn hit(point: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static WANTED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let wanted = WANTED.get_or_init(|| {
        let spec = std::env::var("ECS_AGENT_FAILPOINT").ok()?;
        match spec.split_once('@') {
            Some((name, n)) => Some((name.to_string(), n.parse().ok()?)),
            None => Some((spec, 1)),
        }
    });
    if let Some((name, at)) = wanted {
        if name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *at {
            panic!("failpoint {point} reached (ECS_AGENT_FAILPOINT)");
        }
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_point: &str) {}
