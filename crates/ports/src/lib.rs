//! The ports: every trait an AWS service or the sync state stands behind,
//! with the types that cross it, and (feature `fakes`) an in-memory fake
//! of each that keeps what the service guarantees and no more.
//!
//! | module | port |
//! | --- | --- |
//! | [`store`] | the event record, the events table and the entities table |
//! | [`queue`] | follow-up jobs and the FIFO queue they go to |
//! | [`secrets`] | the per-instance secret document, cached, kept through an outage |
//! | [`sync_state`] | pull cursors, the daily API budget, on-demand allowance, echo marks |

pub mod queue;
pub mod secrets;
pub mod store;
pub mod sync_state;

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
