//! Everything the functions do, reached through small traits so it can be
//! tested (and simulated) without AWS.
//!
//! The pipeline is an outbox on the events table: a receiver verifies a
//! request and makes one conditional put of its event record, then answers;
//! the table's stream hands each new record to the processor, which keeps
//! the entity and only then queues the follow-up; the jobs worker and the
//! scheduler do the rest. Everything after the put is retried by AWS, so it
//! is idempotent.
//!
//! Map of the crate, in the order an event meets it:
//!
//! | module | concept |
//! | --- | --- |
//! | [`config`] | settings read once from the environment at cold start |
//! | [`telemetry`] | JSON logs through `tracing`, metrics, dependency failures in one line |
//! | [`clock`] | wall-clock time behind a trait (the simulation runs on virtual time) |
//! | [`http`] | API Gateway request in, answer out: the one place errors become HTTP |
//! | [`request`] | the webhook request a receiver reads |
//! | [`local_time`] | an instance's time zone; Revel's wall-clock times read in it |
//! | [`secrets`] | per-instance webhook secrets from Secrets Manager, cached, kept through an outage |
//! | [`signature`] | `X-Revel-Signature`: hex HMAC-SHA1 of the raw body, constant-time check |
//! | [`sources`] | each platform described once: auth, identity, entity, follow-ups |
//! | [`projection`] | the receivers' parse: only the fields a key is made of become values |
//! | [`idempotency`] | the key an event is stored under, so it is stored once |
//! | [`ids`] | validated newtypes: [`ids::InstanceName`], [`ids::EventKey`], [`ids::EntityKey`] |
//! | [`receive`] | the receivers: verify, derive the key, one conditional put, answer |
//! | [`store`] | the event record, the events archive and the entities table (traits + DynamoDB adapters) |
//! | [`process`] | the stream processor: entity newest-wins, then the follow-up job |
//! | [`queue`] | follow-up jobs (trait + SQS FIFO adapter) |
//! | [`worker`] | the jobs worker: deliveries to the partner, writes to Revel, pulls |
//! | [`schedule`] | the scheduler's fan-out of end-of-day and 2-hourly tasks |
//! | [`partner_catalog`] | the partner's products and events, applied to Revel in one end-of-day batch |
//! | [`inventory_request`] | the partner's searches: Revel's stock of named products, pulled on demand |
//! | [`replay`] | an operator's replay of an archived event through the processor |
//! | [`aws`] | one `SdkConfig` from Lambda's environment, with timeouts that fit Revel's 10 s deadline |
//! | [`function`] | the entry points every function crate's `main` calls |
//! | [`error`] | the typed errors that cross modules |

pub mod apply;
pub mod aws;
pub mod clock;
pub mod config;
pub mod downstream;
pub mod error;
pub mod function;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod inventory_request;
pub mod local_time;
pub mod partner_catalog;
pub mod process;
pub mod projection;
pub mod queue;
pub mod receive;
pub mod replay;
pub mod request;
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
