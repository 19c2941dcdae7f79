//! The task engine: owns every task the agent runs, drives each one toward
//! its desired status on the local Docker engine, and records every change
//! (with the report it owes the backend) in the store.

pub mod create_config;
pub mod labels;
pub mod reconcile;
pub mod status;
pub mod task;
