//! The in-memory stores put together with the pipeline, for tests of
//! code that receives and processes events without AWS.

use std::sync::atomic::Ordering;

use ports::fakes::{MemoryEntities, MemoryEvents, MemoryQueue};

/// The AWS side of the pipeline in memory: the events table (with its
/// stream), the entities table and the jobs queue.
#[derive(Default, Clone)]
pub struct MemoryAws {
    pub events: std::sync::Arc<MemoryEvents>,
    pub entities: std::sync::Arc<MemoryEntities>,
    pub queue: std::sync::Arc<MemoryQueue>,
    /// How much of the events stream has been handed to the processor.
    handed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl MemoryAws {
    /// A receiver of `kind` from `source`, storing in these events.
    pub fn receiver(
        &self,
        source: std::sync::Arc<dyn domain::sources::Source>,
        kind: std::sync::Arc<dyn domain::sources::EventKind>,
    ) -> crate::receive::Receiver {
        crate::receive::Receiver::new(
            source,
            kind,
            self.events.clone(),
            crate::config::Settings::default(),
            domain::clock::system(),
        )
    }

    /// The processor over these entities and this queue.
    pub fn processor(&self) -> crate::process::Processor {
        crate::process::Processor::new(self.entities.clone(), self.queue.clone())
    }

    /// Hands the stream's records not handed yet to the processor, in order,
    /// as the event source mapping would.
    pub async fn process_stream(&self) -> Vec<crate::process::Processed> {
        let processor = self.processor();
        let mut processed = Vec::new();
        loop {
            let at = self.handed.load(Ordering::SeqCst);
            let Some(record) = self.events.stream.lock().unwrap().get(at).cloned() else {
                return processed;
            };
            processed.push(
                processor
                    .process(&record)
                    .await
                    .expect("in-memory stores are up"),
            );
            self.handed.store(at + 1, Ordering::SeqCst);
        }
    }
}
