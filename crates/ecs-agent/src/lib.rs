//! The Amazon ECS container agent for Linux: registers the instance with a
//! cluster, runs the tasks ACS sends on the local Docker engine, reports
//! their state, and survives restarts (see docs/architecture.md).
// No unsafe code, with two audited exceptions that take no pointer: the
// allocator call in `memory`, and kill(2) in `init::supervise`.
#![deny(unsafe_code)]

pub mod acs;
pub mod agent;
pub mod aws;
pub mod backoff;
pub mod capabilities;
pub mod config;
pub mod credentials;
pub mod docker;
pub mod ecs_client;
pub mod endpoints;
pub mod engine;
pub mod exit;
pub mod failpoint;
pub mod flags;
pub mod go_state;
pub mod host;
pub mod host_setup;
pub mod https;
pub mod images;
pub mod imds;
pub mod init;
pub mod logging;
pub mod memory;
pub mod metadata_file;
pub mod metrics;
pub mod reporter;
pub mod secrets;
pub mod signer;
pub mod state_change;
pub mod store;
pub mod supervisor;
pub mod task_cgroup;
pub mod task_manifest;
pub mod tcs;
pub mod trust;
pub mod update;
pub mod version;
pub mod websocket;
