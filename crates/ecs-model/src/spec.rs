//! Locates the reference spec (protocol documents, models, golden samples) that tests replay.
//!
//! The spec is reference data kept **outside** the repository, next to it by default
//! (`<workspace>/../shared/spec`). It must never be copied into the repository: tests read it
//! where it lives. `ECS_SPEC_DIR` points elsewhere; `ECS_SPEC_REQUIRED=1` (set by `.ci/run`)
//! turns a missing spec into a failure instead of a skip, so CI cannot pass without it.

use std::path::{Path, PathBuf};

/// Environment variable naming the spec directory.
pub const DIR_ENV: &str = "ECS_SPEC_DIR";

/// Environment variable that makes a missing spec fail tests (`1` or `true`).
pub const REQUIRED_ENV: &str = "ECS_SPEC_REQUIRED";

/// The spec directory: `ECS_SPEC_DIR` if set (even if it does not exist, so that a wrong setting
/// fails loudly), else the default location next to the workspace if it exists.
pub fn locate() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec");
    default.is_dir().then_some(default)
}

/// The spec directory for a test about `what`, or `None` after printing a skip notice, in which
/// case the test returns early.
///
/// # Panics
///
/// When the spec is absent and `ECS_SPEC_REQUIRED` is `1`/`true`, or when `ECS_SPEC_DIR` is set
/// but is not a directory: a test that was meant to run must not pass by skipping.
pub fn require_or_skip(what: &str) -> Option<PathBuf> {
    match locate() {
        Some(dir) if dir.is_dir() => Some(dir),
        Some(dir) => panic!(
            "{what}: {DIR_ENV}={} is not a directory",
            dir.display()
        ),
        None if required() => panic!(
            "{what}: reference spec not found and {REQUIRED_ENV} is set; set {DIR_ENV} to the spec directory"
        ),
        None => {
            eprintln!("skipped: {what}: reference spec not found (set {DIR_ENV})");
            None
        }
    }
}

fn required() -> bool {
    std::env::var(REQUIRED_ENV)
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}

/// Asserts that `ours` has the same members as the recorded `golden`,
/// recursively, with the same JSON types; values may differ. `path` names
/// the place in failure messages.
///
/// # Panics
///
/// On the first member or type that differs.
pub fn assert_same_shape(ours: &serde_json::Value, golden: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (ours, golden) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: std::collections::BTreeSet<&String> = a.keys().collect();
            let kb: std::collections::BTreeSet<&String> = b.keys().collect();
            assert_eq!(
                ka, kb,
                "members differ at {path}\nours:   {ours}\ngolden: {golden}"
            );
            for k in ka {
                assert_same_shape(&a[k], &b[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                assert_same_shape(x, y, &format!("{path}[0]"));
            }
        }
        (a, b) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "type differs at {path}: {a} vs {b}"
        ),
    }
}
