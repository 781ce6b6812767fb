//! `xtask`: the workspace's longer chores, in Rust rather than Makefile shell.
//!
//! - `bench-load` (`make bench-load`): builds `local-stack`, starts
//!   `local-stack up --no-worker` on two free loopback ports with its output
//!   in `.local/bench-load-stack.log`, waits until it answers HTTP, runs
//!   `local-stack load` against it, then stops it and puts back the
//!   `.local/stack.json` and `.local/functions.env` of a running `make
//!   local` (also when load fails or on Ctrl-C). Its exit code is load's.
//! - `fuzz` (`make fuzz`): installs the pinned cargo-fuzz and a nightly
//!   toolchain if missing, builds the targets in `fuzz/`, runs each for a
//!   while from its corpus (and the samples in `events/` for the targets
//!   that read them), prints a line per target and fails if any found
//!   something.
//! - `deploy-guided` (`make deploy-guided`): prints what `sam deploy
//!   --guided` will ask, in its order, with each parameter's group, label,
//!   default and description from template.yaml (SAM shows only
//!   `Parameter Name [default]:`), then runs `sam deploy --guided`.
//!
//! Every path is taken from the workspace root, wherever it is run from.

mod bench_load;
mod deploy_guided;
mod fuzz;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use clap::{Parser, Subcommand};

pub type Error = Box<dyn std::error::Error>;

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    about = "The workspace's longer chores: the load benchmark, the fuzz run and the guided deploy",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Load test against a local stack of its own: starts `local-stack up
    /// --no-worker` on two free loopback ports, runs `local-stack load`
    /// against it (10,000 signed deliveries, 30% repeats, concurrency 32,
    /// then checks each distinct event was stored once), and stops it;
    /// exits with load's code.
    ///
    /// A running `make local` keeps its .local/stack.json and
    /// .local/functions.env: they are put back after. The stack's output is
    /// in .local/bench-load-stack.log.
    #[command(
        after_help = "Every argument after the options goes to `local-stack load` as it is: \
                      xtask bench-load --count 2000 --concurrency 8"
    )]
    BenchLoad(bench_load::Args),
    /// Runs each cargo-fuzz target in fuzz/ for a while on nightly (both
    /// installed first if missing) and fails if any found something.
    ///
    /// New corpus entries go to fuzz/corpus/TARGET/, a crash's input to
    /// fuzz/artifacts/TARGET/, each run's output to fuzz/logs/TARGET.log.
    /// The payload and API Gateway targets also start from the samples in
    /// events/.
    Fuzz(fuzz::Args),
    /// Explains what `sam deploy --guided` will ask, then runs it.
    ///
    /// SAM asks for each parameter as `Parameter Name [default]:` and shows
    /// no description (aws/aws-sam-cli#2789). This prints, in the order SAM
    /// asks, each parameter's group, label, default, allowed values and
    /// description from template.yaml, then runs `sam deploy --guided`
    /// (after Enter, on a terminal). Build first: `make build`.
    #[command(
        after_help = "Every argument after the options goes to `sam deploy --guided` as it is: \
                      xtask deploy-guided --stack-name revel-sync --region eu-west-1"
    )]
    DeployGuided(deploy_guided::Args),
}

/// The workspace root: two levels above this crate.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `cargo`, as found on PATH: rustup's proxy, so `+nightly` works.
pub fn cargo(root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(root);
    command
}

/// The exit code a shell would report for `status`: the process's own, or
/// 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Task::BenchLoad(args) => bench_load::run(&root, args),
        Task::Fuzz(args) => fuzz::run(&root, args),
        Task::DeployGuided(args) => deploy_guided::run(&root, args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One subcommand's arguments, parsed from `line` as clap parses them.
    pub fn parse_args<A: clap::Args>(name: &str, line: &str) -> Result<A, clap::Error> {
        #[derive(Debug, Parser)]
        struct One<A: clap::Args> {
            #[command(flatten)]
            args: A,
        }
        One::<A>::try_parse_from(std::iter::once(name).chain(line.split_whitespace()))
            .map(|one| one.args)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn an_unknown_task_is_refused_with_clap_usage_error_code_2() {
        let error = Cli::try_parse_from(["xtask", "bench"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidSubcommand);
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn the_makefiles_command_lines_parse_with_load_flags_passed_through() {
        let cli = Cli::try_parse_from(
            "xtask bench-load --python /r/.venv/bin/python --count 500 --url http://x".split(' '),
        )
        .unwrap();
        let Task::BenchLoad(args) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(args.load_args, ["--count", "500", "--url", "http://x"]);
        let cli =
            Cli::try_parse_from("xtask fuzz --seconds 5 --targets payloads event_key".split(' '))
                .unwrap();
        let Task::Fuzz(args) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(
            (args.seconds, args.targets()),
            (5, vec!["payloads".into(), "event_key".into()])
        );
        let cli = Cli::try_parse_from(
            "xtask deploy-guided --sam /r/.venv/bin/sam --stack-name s --region eu-west-1"
                .split(' '),
        )
        .unwrap();
        let Task::DeployGuided(args) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(args.sam.as_deref(), Some(Path::new("/r/.venv/bin/sam")));
        assert!(!args.print_only);
        assert_eq!(
            args.sam_args,
            ["--stack-name", "s", "--region", "eu-west-1"]
        );
    }

    #[test]
    fn a_process_exit_code_is_passed_on_and_a_signal_is_128_plus_its_number() {
        let code = |script: &str| {
            exit_code(
                Command::new("sh")
                    .args(["-c", script])
                    .status()
                    .expect("sh runs"),
            )
        };
        assert_eq!(code("exit 0"), 0);
        assert_eq!(code("exit 3"), 3);
        assert_eq!(code("kill -TERM $$"), 128 + 15);
    }

    #[test]
    fn the_workspace_root_is_the_one_with_the_makefile_and_fuzz_directory() {
        let root = workspace_root();
        assert!(root.join("Makefile").is_file(), "{}", root.display());
        assert!(root.join("fuzz/Cargo.toml").is_file(), "{}", root.display());
    }
}
