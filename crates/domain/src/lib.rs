//! The core: what an event is, whoever sends it and wherever it is kept.
//! Nothing here knows AWS, a vendor or the pipeline; every other crate of
//! the bundle builds on these types and traits.
//!
//! | module | concept |
//! | --- | --- |
//! | [`ids`] | validated newtypes: [`ids::InstanceName`], [`ids::EventKey`], [`ids::EntityKey`] |
//! | [`request`] | the webhook request a receiver reads |
//! | [`sources`] | the [`sources::Source`] and [`sources::EventKind`] traits: identity, entity, version, follow-up |
//! | [`idempotency`] | the key an event is stored under, so it is stored once |
//! | [`projection`] | the receivers' parse: only the fields a key is made of become values |
//! | [`local_time`] | an instance's time zone; naive wall-clock times read in it |
//! | [`clock`] | wall-clock time behind a trait (the simulation runs on virtual time) |
//! | [`error`] | the typed errors that cross crates |

pub mod clock;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod local_time;
pub mod projection;
pub mod request;
pub mod sources;
