//! What can go wrong, in short messages, and the exit code of each.

use domain::error::DependencyError;
use pipeline::replay::ReplayError;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A resource the command needs is named neither by flag nor by env.
    #[error("{env} is not set (or pass --{flag})")]
    Missing {
        env: &'static str,
        flag: &'static str,
    },
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("{}", domain::error::summary(.0))]
    Aws(#[from] DependencyError),
    #[error("no event {0}")]
    NotFound(String),
    /// A stored item that doesn't read as what it should be.
    #[error("{what} is unreadable: {why}")]
    Unreadable { what: String, why: String },
    #[error("{}", domain::error::summary(.0))]
    Replay(#[from] ReplayError),
    /// Some items of a batch failed (each was reported on its own line).
    #[error("{failed} of {total} {what} failed")]
    Partial {
        failed: usize,
        total: usize,
        what: &'static str,
    },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// The instance is not in the Revel secret document.
    #[error("no instance {0} in the Revel secret document")]
    NoInstance(String),
    /// What is there stops the change (an instance that exists, a document
    /// changed meanwhile); nothing was written.
    #[error("{0}")]
    Conflict(&'static str),
    /// `status` found something unhealthy (each line says what).
    #[error("{0} unhealthy")]
    Unhealthy(String),
}

impl OpsError {
    /// 2: the command can't run as given; 3: some of a batch failed;
    /// 4: the event or instance does not exist; 5: a conflict, nothing
    /// written; 6: `status` found something unhealthy; 1: anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Missing { .. } | Self::Invalid { .. } => 2,
            Self::Partial { .. } => 3,
            Self::NotFound(_) | Self::NoInstance(_) => 4,
            Self::Conflict(_) => 5,
            Self::Unhealthy(_) => 6,
            _ => 1,
        }
    }

    pub fn aws(
        service: &'static str,
        operation: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Aws(DependencyError::new(service, operation, error))
    }
}
