//! One Lambda execution environment on loopback, to run the real function
//! binaries as Lambda runs them: the Runtime API ([`runtime`]), a function
//! process started with Lambda's environment ([`function`]), and a
//! recording proxy in front of the AWS endpoint ([`proxy`]) that counts
//! what an invocation asked of AWS and can refuse a chosen request.
//!
//! Used by `lambda-bench` (figures) and by the integration tests (the
//! production path under `make test`).

pub mod function;
pub mod proxy;
pub mod runtime;
pub mod stand_in;

use std::path::PathBuf;
use std::time::Duration;

pub use function::{Function, Launch};
pub use proxy::{Call, Proxy, Refusal, Reply};
pub use runtime::{Answer, Invoked, Sandbox};

/// What can go wrong running a function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{binary} does not exist")]
    Missing { binary: PathBuf },
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{function} exited ({status}){log}")]
    Exited {
        function: String,
        status: String,
        /// Where its output is, said as "; its output is in PATH" (or empty).
        log: String,
    },
    #[error("{function}: timed out after {limit:?} waiting for {what}")]
    TimedOut {
        function: String,
        what: &'static str,
        limit: Duration,
    },
    #[error("{function} reported an init error: {message}")]
    InitFailed { function: String, message: String },
    #[error("{function} answered with an error: {error}")]
    Failed { function: String, error: String },
    #[error("{function} answered something that isn't JSON: {why}")]
    Unreadable { function: String, why: String },
    #[error("{function}: an event of {size} bytes is over Lambda's 6 MB payload limit")]
    PayloadTooLarge { function: String, size: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the proxy's HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}
