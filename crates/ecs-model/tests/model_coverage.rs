//! Checks, shape by shape, that the Rust wire types cover the reference models: every structure
//! shape of `acs-api-2.json` and `tcs-api-2.json` has a type, and every member survives a decode
//! and re-encode, with members written in the alphabetical order the Go agent uses.
#![allow(clippy::unwrap_used)]

use std::fmt;
use std::path::Path;

use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use ecs_model::spec;

/// Decodes `text` as `T` and re-encodes it, as a frame body would be.
fn round_trip<T: DeserializeOwned + Serialize>(text: &str) -> Result<String, String> {
    let value: T = serde_json::from_str(text).map_err(|e| format!("decode: {e}"))?;
    serde_json::to_string(&value).map_err(|e| format!("encode: {e}"))
}

type RoundTrip = fn(&str) -> Result<String, String>;

/// Maps shape names to the Rust type registered for them; also lists the names, so that a
/// registry entry without a shape is caught too.
macro_rules! registry {
    ($module:ident: $($shape:ident),* $(,)?) => {
        mod $module {
            use ecs_model::$module::*;

            pub const NAMES: &[&str] = &[$(stringify!($shape)),*];

            pub fn lookup(shape: &str) -> Option<super::RoundTrip> {
                match shape {
                    $(stringify!($shape) => Some(super::round_trip::<$shape>),)*
                    _ => None,
                }
            }
        }
    };
}

registry!(acs:
    ASMAuthData, AccessDeniedException, AckRequest, Association,
    AttachInstanceNetworkInterfacesMessage, AttachTaskNetworkInterfacesMessage, Attachment,
    AttachmentProperty, BadRequestException, CloseMessage, ConfirmAttachmentMessage, Container,
    ContainerDependency, Device, DockerConfig, DockerVolumeConfiguration, EBSVolumeConfiguration,
    ECRAuthData, EFSAuthorizationConfig, EFSVolumeConfiguration, ElasticNetworkInterface,
    EncodedString, EnvironmentFile, ErrorMessage, FSxWindowsFileServerAuthorizationConfig,
    FSxWindowsFileServerVolumeConfiguration, FirelensConfiguration, HeartbeatAckRequest,
    HeartbeatMessage, HostVolumeProperties, IAMRoleCredentials, IAMRoleCredentialsAckRequest,
    IAMRoleCredentialsMessage, IPv4AddressAssignment, IPv6AddressAssignment,
    InactiveInstanceException, InvalidClusterException, InvalidInstanceException,
    KernelCapabilities, LinuxParameters, LogDriverVolumeConfiguration, ManagedAgent, MountPoint,
    NackRequest, NetworkInterfaceTunnelProperties, NetworkInterfaceVethProperties,
    NetworkInterfaceVlanProperties, PayloadMessage, PerformUpdateMessage, PollRequest,
    PortMapping, ProxyConfiguration, RegistryAuthenticationData, RestartPolicy, Secret,
    ServerException, StageUpdateMessage, Task, TaskIdentifier, TaskManifestMessage,
    TaskStopVerificationAck, TaskStopVerificationMessage, TrustedExecutionConfiguration,
    UpdateInfo, VersionInfo, Volume, VolumeFrom,
);

registry!(tcs:
    AckPublishHealth, AckPublishInstanceStatus, AckPublishMetric, BadRequestException,
    CWStatsSet, ContainerHealth, ContainerMetric, Dimension, EphemeralStorageMetrics,
    GeneralMetric, GeneralMetricsWrapper, HealthMetadata, HeartbeatMessage, InstanceMetrics,
    InstanceStatus, InstanceStatusMetadata, InstanceStorageMetrics, InvalidParameterException,
    MetricsMetadata, NetworkStatsSet, PublishHealthRequest, PublishInstanceStatusRequest,
    PublishMetricsRequest, ResourceValidationException, RestartStatsSet, ServerException,
    StartTelemetrySessionRequest, StopTelemetrySessionMessage, StorageStatsSet, TaskHealth,
    TaskMetric, UDoubleCWStatsSet, ULongStatsSet, VolumeMetric,
);

/// Nested structures deeper than this are left out, in case a model ever becomes recursive.
const MAX_DEPTH: usize = 12;

/// A value for `shape` holding every member, derived from the model; `None` past the depth limit.
fn sample(shapes: &Map<String, Value>, shape: &str, member: &str, depth: usize) -> Option<Value> {
    let def = &shapes[shape];
    let target = |key: &str| def[key]["shape"].as_str().unwrap();
    Some(match def["type"].as_str().unwrap() {
        "string" => match def["enum"].as_array() {
            Some(values) => values[0].clone(),
            None => json!(format!("s-{member}")),
        },
        "integer" | "long" => json!(7),
        "double" => json!(1.5),
        "boolean" => json!(true),
        "timestamp" => json!(1_700_000_000.123),
        "list" => json!([sample(shapes, target("member"), member, depth + 1)?]),
        "map" => json!({ "k": sample(shapes, target("value"), member, depth + 1)? }),
        "structure" => {
            if depth > MAX_DEPTH {
                return None;
            }
            let mut object = Map::new();
            for (name, m) in def["members"].as_object().unwrap() {
                let member_shape = m["shape"].as_str().unwrap();
                if let Some(v) = sample(shapes, member_shape, name, depth + 1) {
                    object.insert(name.clone(), v);
                }
            }
            Value::Object(object)
        }
        other => panic!("shape {shape} has a type this test does not know: {other}"),
    })
}

/// The first difference between `want` and `got` as `path: problem`; numbers are equal when
/// their f64 values are.
fn difference(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    None => return Some(format!("{p}: member lost")),
                    Some(gv) => {
                        if let Some(d) = difference(&p, wv, gv) {
                            return Some(d);
                        }
                    }
                }
            }
            g.keys()
                .find(|k| !w.contains_key(*k))
                .map(|k| format!("{path}.{k}: member added"))
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (wv, gv))| difference(&format!("{path}[{i}]"), wv, gv)),
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => None,
        _ if want == got => None,
        _ => Some(format!("{path}: want {want}, got {got}")),
    }
}

/// Object keys of a JSON text that are not in strictly increasing byte order, as `path: a >= b`.
struct KeyOrder(Vec<String>);

impl<'de> Deserialize<'de> for KeyOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyOrderVisitor)
    }
}

struct KeyOrderVisitor;

impl<'de> Visitor<'de> for KeyOrderVisitor {
    type Value = KeyOrder;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder, A::Error> {
        let mut problems = Vec::new();
        let mut previous: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if let Some(p) = &previous {
                if p.as_str() >= key.as_str() {
                    problems.push(format!("{p} >= {key}"));
                }
            }
            let inner: KeyOrder = map.next_value()?;
            problems.extend(inner.0.into_iter().map(|e| format!("{key}.{e}")));
            previous = Some(key);
        }
        Ok(KeyOrder(problems))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyOrder, A::Error> {
        let mut problems = Vec::new();
        while let Some(inner) = seq.next_element::<KeyOrder>()? {
            problems.extend(inner.0);
        }
        Ok(KeyOrder(problems))
    }

    fn visit_bool<E>(self, _: bool) -> Result<KeyOrder, E> {
        Ok(KeyOrder(Vec::new()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<KeyOrder, E> {
        Ok(KeyOrder(Vec::new()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<KeyOrder, E> {
        Ok(KeyOrder(Vec::new()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<KeyOrder, E> {
        Ok(KeyOrder(Vec::new()))
    }
    fn visit_str<E>(self, _: &str) -> Result<KeyOrder, E> {
        Ok(KeyOrder(Vec::new()))
    }
    fn visit_unit<E>(self) -> Result<KeyOrder, E> {
        Ok(KeyOrder(Vec::new()))
    }
}

/// Checks every structure shape of one model against its registry; returns the failures.
fn check_model(
    path: &Path,
    names: &[&str],
    lookup: fn(&str) -> Option<RoundTrip>,
) -> (usize, Vec<String>) {
    let model: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let shapes = model["shapes"].as_object().unwrap();
    let model_name = path.file_name().unwrap().to_string_lossy();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (shape, def) in shapes {
        if def["type"] != "structure" {
            continue;
        }
        let Some(round_trip) = lookup(shape) else {
            failures.push(format!("{model_name}: {shape}: no Rust type registered"));
            continue;
        };
        checked += 1;
        let want = sample(shapes, shape, shape, 0).unwrap();
        let got = match round_trip(&want.to_string()) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("{model_name}: {shape}: {e}"));
                continue;
            }
        };
        let got_value: Value = serde_json::from_str(&got).unwrap();
        if let Some(d) = difference(shape, &want, &got_value) {
            failures.push(format!("{model_name}: {d}"));
        }
        let order: KeyOrder = serde_json::from_str(&got).unwrap();
        for problem in order.0 {
            failures.push(format!(
                "{model_name}: {shape}.{problem}: members not in alphabetical order"
            ));
        }
    }
    for name in names {
        if shapes.get(*name).map(|d| &d["type"]) != Some(&json!("structure")) {
            failures.push(format!(
                "{model_name}: {name}: registered but not a structure shape of the model"
            ));
        }
    }
    (checked, failures)
}

#[test]
fn every_structure_shape_round_trips_every_member() {
    let Some(dir) = spec::require_or_skip("model coverage") else {
        return;
    };
    let models = dir.join("models");
    let (acs_checked, mut failures) =
        check_model(&models.join("acs-api-2.json"), acs::NAMES, acs::lookup);
    let (tcs_checked, tcs_failures) =
        check_model(&models.join("tcs-api-2.json"), tcs::NAMES, tcs::lookup);
    failures.extend(tcs_failures);
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        acs_checked >= 60 && tcs_checked >= 30,
        "{acs_checked} {tcs_checked}"
    );
    eprintln!("checked {acs_checked} ACS and {tcs_checked} TCS structure shapes");
}

#[test]
fn the_checker_notices_a_lost_member() {
    let want = json!({"a": {"b": [1, {"c": 1.0}]}, "d": "x"});
    assert_eq!(difference("S", &want, &want.clone()), None);
    let got = json!({"a": {"b": [1.0, {}]}, "d": "x"});
    assert_eq!(
        difference("S", &want, &got).as_deref(),
        Some("S.a.b[1].c: member lost")
    );
    let order: KeyOrder = serde_json::from_str(r#"{"b":1,"a":[{"y":1,"x":2}]}"#).unwrap();
    assert_eq!(order.0, ["b >= a", "a.y >= x"]);
    let order: KeyOrder =
        serde_json::from_str(r#"{"metricValueStatsSet":1,"metricValues":2}"#).unwrap();
    assert!(order.0.is_empty());
}
