//! Everything the webhook functions do, reached through small traits so it
//! can be tested without AWS.
//!
//! Map of the crate, in the order a delivery meets it:
//!
//! | module | concept |
//! | --- | --- |
//! | [`config`] | settings read once from the environment at cold start |
//! | [`telemetry`] | JSON logs through `tracing` |
//! | [`http`] | API Gateway request in, answer out: the one place errors become HTTP |
//! | [`secrets`] | per-instance webhook secrets from Secrets Manager, cached with a TTL |
//! | [`signature`] | `X-Revel-Signature`: hex HMAC-SHA1 of the raw body, constant-time check |
//! | [`sources`] | each platform described once: auth, idempotency key, entity, follow-ups |
//! | [`idempotency`] | the key an event is stored under, so it is stored once |
//! | [`ids`] | validated newtypes: [`ids::InstanceName`], [`ids::EventKey`], [`ids::EntityKey`] |
//! | [`ingest`] | the pipeline: verify, store once, keep current state, fan out |
//! | [`store`] | the events archive and the entities table (traits + DynamoDB adapters) |
//! | [`queue`] | follow-up jobs (trait + SQS FIFO adapter) |
//! | [`aws`] | one `SdkConfig` with timeouts that fit Revel's 10 s deadline |
//! | [`function`] | the entry point every function crate's `main` calls |
//! | [`after_answer`] | an internal Lambda extension that finishes bookkeeping after the answer |
//! | [`error`] | the typed errors of all of the above |

pub mod after_answer;
pub mod apply;
pub mod aws;
pub mod config;
pub mod downstream;
pub mod error;
pub mod function;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod ingest;
pub mod queue;
pub mod revel_api;
pub mod schedule;
pub mod secrets;
pub mod signature;
pub mod sources;
pub mod store;
pub mod sync;
pub mod sync_state;
pub mod telemetry;
pub mod winesitting_api;
pub mod worker;

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
