//! Log lines captured in memory, for tests that check what was logged
//! (and that no secret or body was).

use std::sync::{Arc, Mutex};

/// A log writer into memory, to read what a request logged.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// This thread's log lines, JSON, debug included (where metric lines go
/// outside Lambda), captured until the guard is dropped.
pub struct CapturedLogs {
    pub captured: Captured,
    _default: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

pub fn capture_logs() -> CapturedLogs {
    // A second dispatcher kept alive: with only one, tracing decides whether
    // a log line is wanted by asking the thread that first meets it, and a
    // test on another thread (no subscriber) could turn a line off here.
    let second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    CapturedLogs {
        captured,
        _default: tracing::subscriber::set_default(subscriber),
        _second: second,
    }
}
