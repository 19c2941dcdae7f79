//! The Go ECS agent's checkpoint: read to take a host over from the Go
//! agent, written to hand it back (docs/operations.md).
//!
//! The Go agent keeps its state in `agent.db`, a bbolt database of JSON
//! values in the data directory ([`bolt`] reads and writes the file
//! format). [`model`] holds the JSON shapes, [`import`] turns them into
//! this agent's checkpoint, and [`export`] turns this agent's checkpoint
//! back into them.

pub mod bolt;
pub mod export;
pub mod handback;
pub mod import;
pub mod model;
pub mod takeover;
