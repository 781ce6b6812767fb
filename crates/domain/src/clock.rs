//! Wall-clock time behind a trait. Receipt times become versions and keys,
//! so the deterministic simulation must be able to run the pipeline on
//! virtual time: it passes a [`TokioClock`] over tokio's paused clock, and
//! everything else runs on [`SystemClock`].

use std::sync::Arc;

use time::OffsetDateTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;

    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64 {
        i64::try_from(self.now().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
    }
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The machine's clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that reads tokio's clock from a fixed starting instant: with
/// tokio's time paused, it moves only when the runtime advances it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: OffsetDateTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `base` now, and moves with tokio's clock from here on.
    pub fn starting_at(base: OffsetDateTime) -> Self {
        Self {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        self.base + (tokio::time::Instant::now() - self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokios_clock() {
        let base = time::macros::datetime!(2026-11-29 12:00 UTC);
        let clock = TokioClock::starting_at(base);
        assert_eq!(clock.now(), base);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), base + Duration::from_secs(90));
        assert_eq!(clock.now_micros(), (base.unix_timestamp() + 90) * 1_000_000);
    }
}
