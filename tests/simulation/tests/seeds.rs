//! The simulation as part of `make test`: many seeds, every invariant; the
//! same seed gives the same run; and the checks do fail when the world
//! holds something wrong.

use std::time::Instant;

use simulation::trace::render;
use simulation::{run_seed, run_seeds, run_world, Options};

/// Seeds `make test` runs (`make simulate` runs more).
const SEEDS: u64 = 500;

#[test]
fn five_hundred_seeds_keep_every_invariant() {
    let started = Instant::now();
    let summary = run_seeds(0..SEEDS, 2, &|_| {});
    eprintln!(
        "{} seeds in {:.1?}: {} failed, {} parked ({} unexplained, seeds {:?})",
        summary.seeds,
        started.elapsed(),
        summary.failures.len(),
        summary.parked,
        summary.unexplained_parked,
        summary.seeds_with_unexplained
    );
    if let Some(first) = summary.failures.first() {
        for report in &summary.failures {
            eprintln!("seed {} failed:", report.seed);
            for violation in &report.findings.violations {
                eprintln!("  {violation}");
            }
        }
        let replay = run_seed(first.seed, Options { logs: true });
        panic!(
            "{} seed(s) failed; the trace of seed {} (make simulate SEED={}):\n{}",
            summary.failures.len(),
            first.seed,
            first.seed,
            render(&replay.steps)
        );
    }
    // Parked items that no injected outage explains come from runs of bad
    // luck: ten failed receives in a row of a job that makes many calls (a
    // pull), each of which the simulation fails more often than AWS would
    // (its fakes fail an attempt the SDK would retry). About 3 seeds in
    // 10,000 (`make simulate`); more than 1 in 100 here means jobs have
    // become fragile.
    assert!(
        summary.seeds_with_unexplained.len() as u64 * 100 <= SEEDS,
        "parked items without an outage to explain them in {} seeds: {:?}",
        summary.seeds_with_unexplained.len(),
        summary.seeds_with_unexplained
    );
    assert!(
        summary.requests as u64 > 20 * SEEDS,
        "the seeds sent little"
    );
}

#[test]
fn the_same_seed_runs_the_same_way_twice_and_another_seed_does_not() {
    for seed in [3, 17, 42] {
        let first = run_seed(seed, Options { logs: true });
        let second = run_seed(seed, Options { logs: true });
        assert!(first.steps.len() > 100, "seed {seed} did little");
        if let Some(n) = (0..first.steps.len().max(second.steps.len()))
            .find(|n| first.steps.get(*n) != second.steps.get(*n))
        {
            panic!(
                "seed {seed} differs at step {}: {:?} then {:?}",
                n + 1,
                first.steps.get(n),
                second.steps.get(n)
            );
        }
        assert_eq!(first.findings, second.findings, "seed {seed}");
    }
    assert_ne!(
        run_seed(1, Options::default()).steps,
        run_seed(2, Options::default()).steps
    );
}

#[test]
fn a_delivery_the_partner_lost_is_reported_with_the_entity_it_was_about() {
    let settled = run_world(5, Options::default());
    let world = &settled.world;
    let clean = settled.check();
    assert_eq!(clean.violations, Vec::<String>::new());
    let held = world.partner.held();
    let (key, _) = held
        .iter()
        .find(|((_, kind, _), _)| kind == "customer" || kind == "order")
        .expect("seed 5 delivers a customer or an order");
    world.partner.forget(key);
    let findings = settled.check();
    let entity = format!("revel:{}:{}:{}", key.0, key.1, key.2);
    assert!(
        findings
            .violations
            .iter()
            .any(|v| v.starts_with("partner: ") && v.contains(&entity)),
        "{:?}",
        findings.violations
    );
}

#[test]
fn an_unsettled_world_is_reported_stuck() {
    let settled = run_world(5, Options::default());
    let findings = settled.check_unsettled();
    assert!(findings.violations.iter().any(|v| v.starts_with("stuck")));
}

#[test]
fn a_seed_replayed_to_be_read_carries_the_bundles_own_log_lines() {
    let replay = run_seed(3, Options { logs: true });
    let logged: Vec<&str> = replay
        .steps
        .iter()
        .map(|step| step.what.as_str())
        .filter(|what| what.starts_with("log "))
        .collect();
    assert!(
        logged.len() > 10,
        "the trace has {} log line(s): {logged:?}",
        logged.len()
    );
    assert!(
        run_seed(3, Options::default())
            .steps
            .iter()
            .all(|step| !step.what.starts_with("log ")),
        "a seed run without logs has log lines"
    );
}
