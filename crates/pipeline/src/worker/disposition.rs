//! What becomes of a message whose job did not finish. The job's error
//! says it ([`crate::worker::JobError::disposition`], each job's file for
//! its own errors); the runner ([`crate::worker::batch`]) carries it out
//! through [`ports::queue::InFlightJobs`].
//!
//! Waits are SQS visibility timeouts: a message put off comes back then, on
//! the same receive count, and at most [`MAX_VISIBILITY_TIMEOUT`] (12 h)
//! ahead; one that comes back early waits again.

use std::time::Duration;

use ports::queue::MAX_VISIBILITY_TIMEOUT;
use time::OffsetDateTime;

/// What becomes of a message whose job did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A failure worth trying again soon: back after [`backoff`] (30 s,
    /// 1 min, 2 min, ... at most 15 min), so a partner that is down for a
    /// while isn't hammered and a short blip costs little delay; the
    /// queue's redrive policy parks it once its receives run out.
    Retry,
    /// A failure that can't succeed before a known time (the daily API
    /// budget is spent): back then, instead of using up its receives.
    RetryAfter(Duration),
    /// Not a failure: the job is due later (or was not started for lack of
    /// time, and is due at once); back then, uncounted.
    Later(Duration),
    /// A failure that repeats every time (not a job, a change refused as
    /// invalid): parked in the dead-letter queue at once, so it does not
    /// hold its group back until the jobs behind it run out of receives
    /// too. Where it can't be parked, retried as [`Disposition::Retry`].
    Park,
    /// Not a failure of the job: it can't run until the deployment is fixed
    /// (no partner URL). Parked where an operator's redrive finds it once
    /// fixed, or with no dead-letter queue kept on the queue as long as SQS
    /// allows.
    Hold,
}

/// The wait before the `receive_count`th retry: 30 s doubling to 15 min.
pub fn backoff(receive_count: u32) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(5);
    Duration::from_secs((30u64 << exponent).min(900))
}

/// A minute past the next UTC midnight: when the daily API budget is new
/// again, and jobs stopped by a spent budget come back.
pub fn after_budget_resets(now: OffsetDateTime) -> OffsetDateTime {
    now.date().midnight().assume_utc() + time::Duration::DAY + time::Duration::MINUTE
}

/// Until [`after_budget_resets`] (SQS allows at most 12 hours), in whole
/// seconds.
pub fn until_budget_resets(now: OffsetDateTime) -> Duration {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    until_due(now, after_budget_resets(now))
}

/// Until `due` (none when it has passed), at most 12 hours: a job due
/// later that comes back early waits again.
pub fn until_due(now: OffsetDateTime, due: OffsetDateTime) -> Duration {
    Duration::try_from(due - now)
        .unwrap_or(Duration::ZERO)
        .min(MAX_VISIBILITY_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_fifteen_minutes() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900, 900]);
    }
}
