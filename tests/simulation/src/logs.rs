//! The bundle's own log lines (info and up) as trace steps, when a seed is
//! replayed to be read: "record not processed; the stream retries it" next
//! to the fault that caused it.

use std::cell::RefCell;
use std::fmt::Write;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
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

/// Captures log lines on this thread while the guard lives.
pub fn capture() -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(tracing_subscriber::registry().with(ToTrace))
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

impl<S: Subscriber> Layer<S> for ToTrace {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let metadata = event.metadata();
        if *metadata.level() > Level::INFO || !metadata.target().starts_with("shared") {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        TRACE.with(|t| {
            if let Some(trace) = t.borrow().as_ref() {
                trace.note(actor(), format!("log {}: {}", metadata.level(), line.0));
            }
        });
    }
}
