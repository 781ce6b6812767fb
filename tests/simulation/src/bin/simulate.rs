//! Runs the deterministic simulation: `--seeds N` runs seeds 0..N (on all
//! cores) and reports; `--seed n` replays one seed and prints its trace.
//! A failing seed prints its number, what failed and its trace.

use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use simulation::trace::render;
use simulation::{run_seed, run_seeds, Options, SeedReport};

#[derive(Parser)]
#[command(about = "The deterministic simulation of the webhook bundle")]
struct Args {
    /// How many seeds to run (from --first).
    #[arg(long, default_value_t = 10_000)]
    seeds: u64,
    /// The first seed of the run.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Replay this one seed and print its trace (with the bundle's log lines).
    #[arg(long)]
    seed: Option<u64>,
    /// Threads to spread the seeds over (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn print_report(report: &SeedReport) {
    println!("{}", render(&report.steps));
    print_verdict(report);
}

fn print_verdict(report: &SeedReport) {
    let findings = &report.findings;
    println!(
        "seed {}: {} after {} of virtual time ({} requests, {} events archived, {} jobs received, {} parked, {} unexplained)",
        report.seed,
        if report.passed() { "passed" } else { "FAILED" },
        simulation::trace::clock(report.virtual_time),
        findings.stats.requests,
        findings.stats.archived,
        findings.stats.jobs_received,
        findings.parked.len(),
        findings.unexplained_parked(),
    );
    for violation in &findings.violations {
        println!("  violated: {violation}");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(seed) = args.seed {
        let report = run_seed(seed, Options { logs: true });
        print_report(&report);
        return if report.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let bar = ProgressBar::new(args.seeds);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {elapsed} ({eta} left) {msg}")
            .expect("a valid template"),
    );
    let started = std::time::Instant::now();
    let summary = run_seeds(args.first..args.first + args.seeds, threads, &|report| {
        bar.inc(1);
        if !report.passed() {
            bar.println(format!("seed {} FAILED", report.seed));
        }
    });
    bar.finish_and_clear();
    println!(
        "{} seeds in {:.1?} on {threads} thread(s): {} failed; {} requests, {} events archived, {} jobs received, {} steps; {} item(s) parked in a DLQ or on the on-failure destination, {} not explained by an injected outage{}",
        summary.seeds,
        started.elapsed(),
        summary.failures.len(),
        summary.requests,
        summary.archived,
        summary.jobs,
        summary.steps,
        summary.parked,
        summary.unexplained_parked,
        if summary.seeds_with_unexplained.is_empty() {
            String::new()
        } else {
            format!(" (seeds {:?})", summary.seeds_with_unexplained)
        }
    );
    let Some(first) = summary.failures.first() else {
        return ExitCode::SUCCESS;
    };
    for report in &summary.failures {
        print_verdict(report);
    }
    println!(
        "\nthe trace of seed {} (replay it with --seed {}):\n",
        first.seed, first.seed
    );
    print_report(&run_seed(first.seed, Options { logs: true }));
    ExitCode::FAILURE
}
