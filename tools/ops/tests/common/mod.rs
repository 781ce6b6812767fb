//! Running the `revel-ops` binary as an operator would, against the
//! integration harness's local AWS endpoint.

#![allow(dead_code)] // each test binary uses its own part

use std::process::Output;

use integration_tests::{local_aws, Stack};
use serde_json::Value;

/// Runs the binary with the functions' environment of `stack` and the
/// standard AWS variables pointing at the local endpoint.
pub fn ops(stack: &Stack, args: &[&str]) -> Output {
    ops_with(stack, args, &[], &[])
}

pub fn ops_with(stack: &Stack, args: &[&str], unset: &[&str], set: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_revel-ops"));
    for name in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"] {
        command.env_remove(name);
    }
    command
        .envs(&stack.provisioned.env)
        .env("AWS_ENDPOINT_URL", &local_aws().endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .envs(set.iter().copied())
        .args(args);
    for name in unset {
        command.env_remove(name);
    }
    command.output().expect("revel-ops runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(output)
}

/// The JSON lines of a `--json` run that succeeded.
#[track_caller]
pub fn json_lines(output: &Output) -> Vec<Value> {
    succeeded(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}
