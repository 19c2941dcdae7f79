//! Replays the golden ACS and TCS frames captured from the Go agent 1.105.1 (`spec/samples/`):
//! each decodes, re-encodes without losing or changing a member, and what the agent sent is
//! reproduced byte for byte. The ECS API samples belong to the `ecs_api` tests.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

use ecs_model::acs::AcsMessage;
use ecs_model::envelope::{join_signed_frame, split_signed_frame};
use ecs_model::spec;
use ecs_model::tcs::TcsMessage;

/// ACS frames the agent sent: `encode()` must reproduce them exactly.
const AGENT_SENT_ACS: &[&str] = &[
    "acs-ack.json",
    "acs-ack-manifest.json",
    "acs-ack-stop.json",
    "acs-heartbeat-ack.json",
    "acs-credentials-ack.json",
    "acs-payload-credentials-ack.json",
    "acs-task-stop-verification.json",
];

/// True when `want` and `got` hold the same members and values; numbers are equal when their
/// f64 values are (the Go agent writes `0` where a double may be written as `0.0`).
fn same(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, wv)| g.get(k).is_some_and(|gv| same(wv, gv)))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| same(a, b))
        }
        (Value::Number(w), Value::Number(g)) => w.as_f64() == g.as_f64(),
        _ => want == got,
    }
}

fn assert_same(file: &str, original: &str, encoded: &str) {
    let want: Value = serde_json::from_str(original).unwrap();
    let got: Value = serde_json::from_str(encoded).unwrap();
    assert!(
        same(&want, &got),
        "{file}: re-encoding changed the frame\n want {original}\n  got {encoded}"
    );
}

fn samples_dir() -> Option<std::path::PathBuf> {
    spec::require_or_skip("golden samples").map(|d| d.join("samples"))
}

fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| keep(name))
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    found.sort();
    found
}

#[test]
fn acs_samples_round_trip() {
    let Some(dir) = samples_dir() else {
        return;
    };
    let samples = files(&dir, |n| n.starts_with("acs-") && n.ends_with(".json"));
    assert!(samples.len() >= 15, "only {} ACS samples", samples.len());
    for (name, bytes) in &samples {
        let text = std::str::from_utf8(bytes).unwrap();
        let message = AcsMessage::decode(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(original["type"], message.type_name(), "{name}");
        let encoded = message.encode();
        assert_same(name, text, &encoded);
        if AGENT_SENT_ACS.contains(&name.as_str()) {
            assert_eq!(
                encoded, text,
                "{name}: not byte for byte what the Go agent sent"
            );
        }
    }
    for name in AGENT_SENT_ACS {
        assert!(
            samples.iter().any(|(n, _)| n == name),
            "{name} missing from the samples"
        );
    }
}

#[test]
fn tcs_server_samples_round_trip() {
    let Some(dir) = samples_dir() else {
        return;
    };
    let samples = files(&dir, |n| n.starts_with("tcs-") && n.ends_with(".json"));
    assert!(samples.len() >= 4, "only {} TCS samples", samples.len());
    for (name, bytes) in &samples {
        let text = std::str::from_utf8(bytes).unwrap();
        let message = TcsMessage::decode(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same(name, text, &message.encode());
        // The server side of these is the fake control plane, which also writes compact JSON in
        // member order, so they come back exactly too.
        assert_eq!(message.encode(), text, "{name}");
    }
}

#[test]
fn tcs_agent_frames_round_trip_byte_for_byte() {
    let Some(dir) = samples_dir() else {
        return;
    };
    let samples = files(&dir, |n| n.ends_with(".frame.txt"));
    assert!(samples.len() >= 5, "only {} TCS frames", samples.len());
    for (name, bytes) in &samples {
        let (headers, json) = split_signed_frame(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            &names[..3],
            ["Authorization", "Host", "X-Amz-Date"],
            "{name}"
        );
        assert!(
            names.len() == 3 || names[3..] == ["X-Amz-Security-Token"],
            "{name}: {names:?}"
        );
        let text = std::str::from_utf8(json).unwrap();
        let message = TcsMessage::decode(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            matches!(
                message,
                TcsMessage::PublishMetricsRequest(_)
                    | TcsMessage::PublishHealthRequest(_)
                    | TcsMessage::PublishInstanceStatusRequest(_)
            ),
            "{name}: {}",
            message.type_name()
        );
        let encoded = message.encode();
        assert_same(name, text, &encoded);
        assert_eq!(
            encoded, text,
            "{name}: JSON not byte for byte what the Go agent sent"
        );
        let frame = join_signed_frame(&headers, &encoded);
        assert_eq!(frame.as_bytes(), bytes.as_slice(), "{name}: frame differs");
    }
}
