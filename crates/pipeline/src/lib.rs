//! The pipeline: an outbox on the events table. A receiver verifies a
//! request and makes one conditional put of its event record, then answers;
//! the table's stream hands each new record to the processor, which keeps
//! the entity and only then queues the follow-up; the jobs worker and the
//! scheduler do the rest. Everything after the put is retried by AWS, so it
//! is idempotent.
//!
//! | module | concept |
//! | --- | --- |
//! | [`config`] | settings read once from the environment at cold start |
//! | [`receive`] | the receivers: verify, derive the key, one conditional put, answer |
//! | [`process`] | the stream processor: entity newest-wins, then the follow-up job |
//! | [`worker`] | the jobs worker: deliveries to the partner, writes to Revel, pulls |
//! | [`schedule`] | the scheduler's fan-out of end-of-day and 2-hourly tasks |
//! | [`sync`] | Revel's pulls: pages within the budget, kept newest-wins |
//! | [`backfill`] | a new instance's existing data, imported through the pulls and reconciliation |
//! | [`apply`] | the partner's changes written to Revel |
//! | [`pending`] | the partner's products and events waiting for the end-of-day batch |
//! | [`replay`] | an operator's replay of an archived event through the processor |

pub mod apply;
pub mod backfill;
pub mod config;
pub mod pending;
pub mod process;
pub mod receive;
pub mod replay;
pub mod schedule;
pub mod sync;
pub mod worker;

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
