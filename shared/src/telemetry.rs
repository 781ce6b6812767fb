//! Structured logs. JSON lines in Lambda (CloudWatch indexes them), plain
//! text when a person runs the local stack in a terminal.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops. The level
/// comes from `RUST_LOG` (template parameter `LogLevel`), default `info`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if in_lambda {
        // CloudWatch adds its own timestamp; ANSI colours would be noise.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time()
            .with_ansi(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // Already installed (a test, or the local stack serving many functions).
    let _ = result;
}
