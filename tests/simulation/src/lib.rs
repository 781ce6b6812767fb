//! A deterministic simulation of the whole bundle, the way FoundationDB and
//! TigerBeetle test: each seed builds a world of fakes with AWS's semantics
//! (DynamoDB with the events table's stream, SQS FIFO with its dead-letter
//! queue, Secrets Manager) and stand-ins for the partner and Revel's API,
//! runs the real receivers, stream processor, jobs worker and scheduler
//! fan-out on it, single-threaded on virtual time (tokio's paused clock),
//! injects faults at random, and checks what must hold once everything has
//! settled. Same seed, same run: a failing seed replays with its trace.
//!
//! Run it: `cargo test -p simulation` (500 seeds, part of `make test`);
//! `make simulate SEEDS=10000` (release build, every core); `make simulate
//! SEED=42` replays seed 42 and prints its trace, the bundle's own log lines
//! included.
//!
//! - [`traffic`]: what a seed sends and changes;
//! - [`faults`]: latency, refusals, lost answers, hangs, crashes, outages;
//! - [`dynamo`], [`stream`], [`sqs`], [`secrets`]: the AWS fakes;
//! - [`partner`], [`revel`]: the stand-ins for the systems the bundle calls;
//! - [`world`]: the wiring and the run; [`check`]: the invariants;
//! - [`trace`], [`logs`]: the readable trace.

pub mod check;
pub mod dynamo;
pub mod faults;
pub mod logs;
pub mod partner;
pub mod revel;
pub mod secrets;
pub mod sqs;
pub mod stream;
pub mod trace;
pub mod traffic;
pub mod world;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use world::{run_seed, run_world, Options, SeedReport, Settled};

/// What a run of many seeds came to.
#[derive(Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    /// Failing seeds, in seed order, with their reports.
    pub failures: Vec<SeedReport>,
    pub parked: usize,
    pub unexplained_parked: usize,
    /// Seeds with an unexplained parked item.
    pub seeds_with_unexplained: Vec<u64>,
    pub requests: usize,
    pub archived: usize,
    pub jobs: u64,
    pub steps: usize,
}

impl Summary {
    fn add(&mut self, report: SeedReport) {
        self.seeds += 1;
        let findings = &report.findings;
        self.parked += findings.parked.len();
        self.unexplained_parked += findings.unexplained_parked();
        if findings.unexplained_parked() > 0 {
            self.seeds_with_unexplained.push(report.seed);
        }
        self.requests += findings.stats.requests;
        self.archived += findings.stats.archived;
        self.jobs += findings.stats.jobs_received;
        self.steps += report.steps.len();
        // Only a failure's trace is kept: thousands of passing ones would
        // not fit in memory.
        if !report.passed() {
            self.failures.push(report);
        }
    }
}

/// Runs `seeds` on `threads` threads (each seed on a runtime of its own),
/// calling `progress` after each.
pub fn run_seeds(
    seeds: std::ops::Range<u64>,
    threads: usize,
    progress: &(dyn Fn(&SeedReport) + Sync),
) -> Summary {
    let next = AtomicU64::new(seeds.start);
    let summary = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= seeds.end {
                    break;
                }
                let report = run_seed(seed, Options::default());
                progress(&report);
                summary.lock().unwrap().add(report);
            });
        }
    });
    let mut summary = summary.into_inner().unwrap();
    summary.failures.sort_by_key(|r| r.seed);
    summary.seeds_with_unexplained.sort();
    summary
}
