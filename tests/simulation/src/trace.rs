//! The readable trace of one seed: a numbered list of steps, each with the
//! virtual time it happened at, who did it and what came of it (the faults
//! injected included). Two runs of one seed must produce the same trace.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Virtual time since the seed started.
    pub at: Duration,
    /// The invocation or stand-in that acted (`processor@shard1`, `revel`).
    pub actor: String,
    pub what: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {:<24} {}", clock(self.at), self.actor, self.what)
    }
}

/// `hh:mm:ss.mmm` of a virtual time.
pub fn clock(at: Duration) -> String {
    let ms = at.as_millis();
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The steps of one seed, shared by every actor of its world.
#[derive(Clone)]
pub struct Trace {
    steps: Arc<Mutex<Vec<Step>>>,
    start: Instant,
}

impl Trace {
    /// A trace whose time zero is now (on tokio's clock).
    pub fn starting_now() -> Self {
        Self {
            steps: Arc::default(),
            start: Instant::now(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        Instant::now() - self.start
    }

    /// The instant `offset` after the start.
    pub fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }

    pub fn note(&self, actor: impl Into<String>, what: impl Into<String>) {
        let step = Step {
            at: self.elapsed(),
            actor: actor.into(),
            what: what.into(),
        };
        self.steps.lock().unwrap().push(step);
    }

    pub fn steps(&self) -> Vec<Step> {
        self.steps.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.steps.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Steps as the numbered list a person reads.
pub fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for (n, step) in steps.iter().enumerate() {
        out.push_str(&format!("{:>5}. {step}\n", n + 1));
    }
    out
}
