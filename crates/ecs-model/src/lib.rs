//! Wire types shared by the ECS agent and the local control plane.
//!
//! Serde only, no I/O. Member names are the exact wire names of the reference
//! models (`spec/models/acs-api-2.json`, `spec/models/tcs-api-2.json`) and of the
//! ECS API. Unknown members are ignored on input; absent members are omitted on
//! output, never sent as `null`.
#![forbid(unsafe_code)]

pub mod acs;
pub mod ecs_api;
pub mod envelope;
pub mod spec;
pub mod tcs;
