//! `xtask fuzz`: the cargo-fuzz targets in `fuzz/`, each for a while.
//!
//! cargo-fuzz [`CARGO_FUZZ_VERSION`] and a nightly toolchain are installed
//! first if missing; the targets are built once (`--sanitizer none`), then
//! each runs from `fuzz/corpus/<target>/` (and the samples in `events/` for
//! the targets that read them, [`seed_dir`]) for `--seconds`, its output in
//! `fuzz/logs/<target>.log`. A line per target says how many runs and how
//! big its corpus is, or what it found; any finding fails the command.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::builder::PossibleValuesParser;

use crate::{cargo, exit_code, Error};

/// The cargo-fuzz this is run with.
pub const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// The fuzz targets (fuzz/Cargo.toml's binaries), all run by default.
pub const TARGETS: [&str; 7] = [
    "revel_signature",
    "standard_webhooks",
    "payloads",
    "payloads_structured",
    "apigw_request",
    "event_key",
    "ingest_revel",
];
/// Lines of a finding's log shown after the line that names it.
const FINDING_CONTEXT: usize = 12;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long each target runs, in seconds.
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// The targets to run, comma- or space-separated [default: all]
    #[arg(long, value_name = "TARGET", num_args = 1.., value_delimiter = ',',
          value_parser = PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
}

impl Args {
    /// The targets asked for, or all of them.
    pub fn targets(&self) -> Vec<String> {
        if self.targets.is_empty() {
            TARGETS.iter().map(|t| t.to_string()).collect()
        } else {
            self.targets.clone()
        }
    }
}

/// The samples a target starts from beside its own corpus: the API Gateway
/// requests in `events/` for the request decoder, the bodies in
/// `events/payloads/` for the payload parsers and Revel's ingest.
pub fn seed_dir(target: &str) -> Option<&'static str> {
    match target {
        "apigw_request" => Some("events"),
        "payloads" | "ingest_revel" => Some("events/payloads"),
        _ => None,
    }
}

/// How one target's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran its time out: libFuzzer's last "Done N runs in S second(s)"
    /// if the log has one, and the corpus size after.
    Clean { done: Option<String>, corpus: usize },
    /// It stopped on something: the log from the line naming it.
    Found { excerpt: String },
}

/// The line printed for a target.
pub fn summary(target: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Clean { done, corpus } => format!(
            "fuzz: {target}: {}, corpus {corpus}, no findings",
            done.as_deref().unwrap_or("no run count in its log")
        ),
        Outcome::Found { excerpt } => {
            let mut line = format!(
                "fuzz: {target} FOUND SOMETHING (input in fuzz/artifacts/{target}/, log fuzz/logs/{target}.log):"
            );
            if !excerpt.is_empty() {
                line.push('\n');
                line.push_str(excerpt);
            }
            line
        }
    }
}

/// The command's last line and exit code: findings name their targets and fail it.
pub fn verdict(outcomes: &[(String, Outcome)]) -> (Option<String>, u8) {
    let found: Vec<&str> = outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Found { .. }))
        .map(|(target, _)| target.as_str())
        .collect();
    if found.is_empty() {
        (None, 0)
    } else {
        (Some(format!("fuzz: findings in: {}", found.join(" "))), 1)
    }
}

/// libFuzzer's last "Done N runs in S second(s)" in `log`.
pub fn last_done(log: &str) -> Option<String> {
    let mut last = None;
    let mut rest = log;
    while let Some(at) = rest.find("Done ") {
        let candidate = &rest[at..];
        if let Some(len) = done_len(candidate) {
            last = Some(candidate[..len].to_owned());
        }
        rest = &rest[at + "Done ".len()..];
    }
    last
}

/// The length of `Done <digits> runs in <digits> second(s)` at the start
/// of `text`, if it is there.
fn done_len(text: &str) -> Option<usize> {
    let mut at = "Done ".len();
    for literal in [" runs in ", " second(s)"] {
        let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !text[at + digits..].starts_with(literal) {
            return None;
        }
        at += digits + literal.len();
    }
    Some(at)
}

/// The first line naming a finding (a panic, or libFuzzer's ERROR: a
/// crash, leak, timeout or out-of-memory) and the [`FINDING_CONTEXT`]
/// lines after it; empty if no line names one.
pub fn finding_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    match lines
        .iter()
        .position(|line| line.contains("panicked") || line.contains("ERROR: libFuzzer"))
    {
        Some(at) => lines[at..lines.len().min(at + 1 + FINDING_CONTEXT)].join("\n"),
        None => String::new(),
    }
}

/// Whether `cargo fuzz --version` printed exactly the pinned version.
pub fn is_pinned_cargo_fuzz(version_output: &str) -> bool {
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    version_output.lines().any(|line| line == wanted)
}

/// Whether `rustup toolchain list` lists a nightly.
pub fn has_nightly(toolchains: &str) -> bool {
    toolchains.lines().any(|line| line.starts_with("nightly"))
}

/// Files in a corpus directory (as `ls` counts them: not the hidden ones).
fn corpus_size(dir: &Path) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .count())
}

fn output_of(command: &mut std::process::Command) -> String {
    command
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs `command`, echoed first as make would; fails unless it succeeds.
fn step(command: &mut std::process::Command) -> Result<(), Error> {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    println!("{shown}");
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed (exit code {})", exit_code(status)).into())
    }
}

pub fn run(root: &Path, args: Args) -> Result<u8, Error> {
    if !is_pinned_cargo_fuzz(&output_of(cargo(root).args(["fuzz", "--version"]))) {
        step(cargo(root).args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ]))?;
    }
    if !has_nightly(&output_of(
        std::process::Command::new("rustup").args(["toolchain", "list"]),
    )) {
        step(std::process::Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    step(cargo(root).args(["+nightly", "fuzz", "build", "--sanitizer", "none"]))?;

    std::fs::create_dir_all(root.join("fuzz/logs"))?;
    let mut outcomes = Vec::new();
    for target in args.targets() {
        let corpus = PathBuf::from("fuzz/corpus").join(&target);
        std::fs::create_dir_all(root.join(&corpus))?;
        let log_path = root.join("fuzz/logs").join(format!("{target}.log"));
        let log = std::fs::File::create(&log_path)?;
        let status = cargo(root)
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none", &target])
            .arg(&corpus)
            .args(seed_dir(&target))
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        let text = String::from_utf8_lossy(&std::fs::read(&log_path)?).into_owned();
        let outcome = if status.success() {
            Outcome::Clean {
                done: last_done(&text),
                corpus: corpus_size(&root.join(&corpus))?,
            }
        } else {
            Outcome::Found {
                excerpt: finding_excerpt(&text),
            }
        };
        println!("{}", summary(&target, &outcome));
        outcomes.push((target, outcome));
    }
    let (last, code) = verdict(&outcomes);
    if let Some(line) = last {
        println!("{line}");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, clap::Error> {
        crate::tests::parse_args::<Args>("fuzz", line)
    }

    #[test]
    fn by_default_every_target_runs_for_60_seconds() {
        let args = parse("").unwrap();
        assert_eq!(args.seconds, 60);
        assert_eq!(args.targets(), TARGETS);
    }

    #[test]
    fn targets_are_taken_comma_or_space_separated() {
        for line in [
            "--seconds 5 --targets payloads,event_key",
            "--targets payloads event_key --seconds 5",
        ] {
            let args = parse(line).unwrap();
            assert_eq!(
                (args.seconds, args.targets()),
                (5, vec!["payloads".into(), "event_key".into()]),
                "{line}"
            );
        }
    }

    #[test]
    fn an_unknown_target_or_no_seconds_is_a_usage_error() {
        for line in [
            "--targets payload",
            "--seconds 0",
            "--seconds x",
            "--targets",
        ] {
            let error = parse(line).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn the_targets_are_exactly_the_fuzz_crates_binaries() {
        let dir = crate::workspace_root().join("fuzz/fuzz_targets");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".rs").map(str::to_owned))
            .collect();
        files.sort();
        let mut targets = TARGETS.map(str::to_owned).to_vec();
        targets.sort();
        assert_eq!(files, targets);
    }

    #[test]
    fn the_request_payload_and_ingest_targets_start_from_the_samples_and_the_rest_from_their_corpus(
    ) {
        assert_eq!(seed_dir("apigw_request"), Some("events"));
        assert_eq!(seed_dir("payloads"), Some("events/payloads"));
        assert_eq!(seed_dir("ingest_revel"), Some("events/payloads"));
        for target in [
            "revel_signature",
            "standard_webhooks",
            "payloads_structured",
            "event_key",
        ] {
            assert_eq!(seed_dir(target), None, "{target}");
        }
        for target in TARGETS {
            if let Some(dir) = seed_dir(target) {
                assert!(crate::workspace_root().join(dir).is_dir(), "{dir}");
            }
        }
    }

    #[test]
    fn the_last_run_count_in_the_log_is_reported() {
        let log = "#2 INITED\nDone 10 runs in 1 second(s)\nDone x runs\nstat::number_of_executed_units: 99\nDone 123456 runs in 61 second(s)\nDone 7 runs in";
        assert_eq!(
            last_done(log).as_deref(),
            Some("Done 123456 runs in 61 second(s)")
        );
        assert_eq!(last_done("INFO: Loaded 1 modules"), None);
    }

    #[test]
    fn a_finding_shows_its_first_line_and_twelve_after() {
        let mut log = String::from("INFO: Seed: 1\n");
        log.push_str("thread '<unnamed>' panicked at src/lib.rs:1:1:\n");
        for n in 1..=20 {
            log.push_str(&format!("after {n}\n"));
        }
        log.push_str("==1== ERROR: libFuzzer: deadly signal\n");
        let excerpt = finding_excerpt(&log);
        let lines: Vec<&str> = excerpt.lines().collect();
        assert_eq!(lines.len(), 13);
        assert!(lines[0].contains("panicked"));
        assert_eq!(lines[12], "after 12");
        assert_eq!(
            finding_excerpt("ERROR: libFuzzer: timeout after 10 seconds"),
            "ERROR: libFuzzer: timeout after 10 seconds"
        );
        assert_eq!(finding_excerpt("error: could not compile"), "");
    }

    #[test]
    fn a_clean_target_reports_runs_and_corpus_and_a_finding_names_where_its_input_is() {
        let clean = Outcome::Clean {
            done: Some("Done 5 runs in 1 second(s)".into()),
            corpus: 3,
        };
        assert_eq!(
            summary("payloads", &clean),
            "fuzz: payloads: Done 5 runs in 1 second(s), corpus 3, no findings"
        );
        let found = Outcome::Found {
            excerpt: "thread panicked".into(),
        };
        assert_eq!(
            summary("event_key", &found),
            "fuzz: event_key FOUND SOMETHING (input in fuzz/artifacts/event_key/, log fuzz/logs/event_key.log):\nthread panicked"
        );
    }

    #[test]
    fn any_finding_fails_the_run_and_is_named_in_the_last_line() {
        let clean = || Outcome::Clean {
            done: None,
            corpus: 0,
        };
        let found = || Outcome::Found {
            excerpt: String::new(),
        };
        assert_eq!(verdict(&[]), (None, 0));
        assert_eq!(
            verdict(&[("a".into(), clean()), ("b".into(), clean())]),
            (None, 0)
        );
        assert_eq!(
            verdict(&[
                ("a".into(), found()),
                ("b".into(), clean()),
                ("c".into(), found())
            ]),
            (Some("fuzz: findings in: a c".into()), 1)
        );
    }

    #[test]
    fn only_the_pinned_cargo_fuzz_and_an_installed_nightly_are_taken_as_present() {
        assert!(is_pinned_cargo_fuzz("cargo-fuzz 0.13.1\n"));
        assert!(!is_pinned_cargo_fuzz("cargo-fuzz 0.12.0\n"));
        assert!(!is_pinned_cargo_fuzz("cargo-fuzz 0.13.10\n"));
        assert!(!is_pinned_cargo_fuzz(""));
        assert!(has_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\nnightly-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\n1.95.0-x86_64-unknown-linux-gnu\n"
        ));
    }
}
