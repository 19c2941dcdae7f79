//! Every recorded ECS API body in the golden samples decodes into the
//! `ecs_api` types and re-encodes without losing or changing a member.
#![allow(clippy::unwrap_used)]

use ecs_model::ecs_api::{
    DiscoverPollEndpointRequest, DiscoverPollEndpointResponse, RegisterContainerInstanceRequest,
    RegisterContainerInstanceResponse, SubmitContainerStateChangeRequest,
    SubmitTaskStateChangeRequest, TARGET_PREFIX,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn samples() -> Option<PathBuf> {
    ecs_model::spec::require_or_skip("ECS API samples").map(|spec| spec.join("samples"))
}

/// Equal as JSON, numbers compared by their f64 value (so `1.0` == `1`).
fn same(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.as_f64() == y.as_f64() {
                Ok(())
            } else {
                Err(format!("{path}: {x} != {y}"))
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => same(u, v, &format!("{path}.{key}"))?,
                    (Some(_), None) => return Err(format!("{path}.{key}: lost")),
                    (None, Some(_)) => return Err(format!("{path}.{key}: added")),
                    (None, None) => {}
                }
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: {} items != {}", x.len(), y.len()));
            }
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                same(u, v, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} != {b}")),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(name: &str, body: &[u8]) {
    let original: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
    let typed: T = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{name}: does not decode into {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let again = serde_json::to_value(&typed).unwrap();
    if let Err(diff) = same(&original, &again, "$") {
        panic!(
            "{name}: round trip through {} changed {diff}",
            std::any::type_name::<T>()
        );
    }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Splits a recorded `*.request.http` (CRLF head, blank line, body) into
/// its `X-Amz-Target` action and its body.
fn http_request(bytes: &[u8]) -> (String, Vec<u8>) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a request head ending in CRLF CRLF");
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let target = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, v)| v.trim().to_owned())
        .expect("an X-Amz-Target header");
    let action = target.strip_prefix(TARGET_PREFIX).unwrap().to_owned();
    (action, bytes[end + 4..].to_vec())
}

#[test]
fn json_bodies_round_trip() {
    let Some(dir) = samples() else { return };
    round_trip::<RegisterContainerInstanceRequest>(
        "register-container-instance.request.json",
        &read(&dir, "register-container-instance.request.json"),
    );
    round_trip::<RegisterContainerInstanceResponse>(
        "register-container-instance.response.json",
        &read(&dir, "register-container-instance.response.json"),
    );
    round_trip::<RegisterContainerInstanceRequest>(
        "re-register.request.json",
        &read(&dir, "re-register.request.json"),
    );
    round_trip::<RegisterContainerInstanceResponse>(
        "re-register.response.json",
        &read(&dir, "re-register.response.json"),
    );
    round_trip::<DiscoverPollEndpointRequest>(
        "discover-poll-endpoint.request.json",
        &read(&dir, "discover-poll-endpoint.request.json"),
    );
    round_trip::<DiscoverPollEndpointResponse>(
        "discover-poll-endpoint.response.json",
        &read(&dir, "discover-poll-endpoint.response.json"),
    );
    let mut state_changes = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("submit-task-state-change") && name.ends_with(".json") {
            round_trip::<SubmitTaskStateChangeRequest>(&name, &read(&dir, &name));
            state_changes += 1;
        }
    }
    assert!(
        state_changes >= 5,
        "expected the five recorded state changes, found {state_changes}"
    );
}

#[test]
fn http_request_bodies_round_trip() {
    let Some(dir) = samples() else { return };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".request.http") {
            continue;
        }
        let (action, body) = http_request(&read(&dir, &name));
        match action.as_str() {
            "RegisterContainerInstance" => {
                round_trip::<RegisterContainerInstanceRequest>(&name, &body)
            }
            "DiscoverPollEndpoint" => round_trip::<DiscoverPollEndpointRequest>(&name, &body),
            "SubmitTaskStateChange" => round_trip::<SubmitTaskStateChangeRequest>(&name, &body),
            "SubmitContainerStateChange" => {
                round_trip::<SubmitContainerStateChangeRequest>(&name, &body)
            }
            other => panic!("{name}: no type for action {other}"),
        }
        seen += 1;
    }
    assert!(
        seen >= 6,
        "expected the recorded ECS API requests, found {seen}"
    );
}

#[test]
fn comparison_catches_changes() {
    let a: Value = serde_json::json!({"a": [1, {"b": "x"}], "t": 1.5});
    assert!(same(
        &a,
        &serde_json::json!({"a": [1.0, {"b": "x"}], "t": 1.5}),
        "$"
    )
    .is_ok());
    assert!(same(
        &a,
        &serde_json::json!({"a": [1, {"b": "y"}], "t": 1.5}),
        "$"
    )
    .is_err());
    assert!(same(&a, &serde_json::json!({"a": [1, {}], "t": 1.5}), "$").is_err());
    assert!(same(&a, &serde_json::json!({"a": [1, {"b": "x"}]}), "$").is_err());
}
