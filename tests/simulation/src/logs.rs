//! The bundle's own log lines (info and up) as trace steps, when a seed is
//! replayed to be read: "record not processed; the stream retries it" next
//! to the fault that caused it.

use std::cell::RefCell;
use std::fmt::Write;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::faults::actor;
use crate::trace::Trace;

thread_local! {
    static TRACE: RefCell<Option<Trace>> = const { RefCell::new(None) };
}

/// Where this thread's captured lines go (the seed it is running).
pub fn set_trace(trace: Option<Trace>) {
    TRACE.with(|t| *t.borrow_mut() = trace);
}

/// Installs the process-wide subscriber that puts log lines in the trace
/// of the seed running on the same thread, if any. Global rather than
/// per thread: tracing caches whether a call site is enabled across
/// threads, and a thread without a subscriber would disable it for all.
pub fn install() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ =
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(ToTrace));
    });
}

struct ToTrace;

#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// The bundle's crates: a log line's target is the module path it was
/// written in, which starts with its crate.
const BUNDLE_CRATES: [&str; 7] = [
    "domain",
    "telemetry",
    "ports",
    "aws_adapters",
    "vendors",
    "pipeline",
    "shared",
];

/// The bundle's lines of info and up.
fn wanted(metadata: &Metadata<'_>) -> bool {
    let crate_name = metadata.target().split("::").next().unwrap_or_default();
    *metadata.level() <= Level::INFO && BUNDLE_CRATES.contains(&crate_name)
}

impl<S: Subscriber> Layer<S> for ToTrace {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if wanted(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _cx: Context<'_, S>) -> bool {
        wanted(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }

    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        TRACE.with(|t| {
            if let Some(trace) = t.borrow().as_ref() {
                let mut line = Line::default();
                event.record(&mut line);
                let level = event.metadata().level();
                trace.note(actor(), format!("log {level}: {}", line.0));
            }
        });
    }
}
