//! Liveness of the pipeline, for the systemd watchdog and `/health`: the
//! reader and the sink each record a heartbeat whenever they make progress or
//! finish waiting on purpose (an idle wait, a retry back-off, a full channel).
//! A component stuck inside one call — an insert hanging on a frozen server,
//! a read hanging on a dead disk — stops beating, and the watchdog stops
//! pinging.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A long-running part of the pipeline that beats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Reads files and parses lines.
    Reader,
    /// Batches, deduplicates and inserts.
    Sink,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Reader => "reader",
            Part::Sink => "sink",
        })
    }
}

/// Heartbeats of the long-running parts.
#[derive(Debug)]
pub struct Health {
    start: Instant,
    reader_ms: AtomicU64,
    sink_ms: AtomicU64,
    /// Set once the pipeline runs (schema ready, index loaded).
    pub running: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            start: Instant::now(),
            reader_ms: AtomicU64::new(0),
            sink_ms: AtomicU64::new(0),
            running: AtomicBool::new(false),
        }
    }
}

impl Health {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The reader made progress.
    pub fn reader_beat(&self) {
        self.reader_ms.store(self.now_ms(), Relaxed);
    }

    /// The sink made progress.
    pub fn sink_beat(&self) {
        self.sink_ms.store(self.now_ms(), Relaxed);
    }

    /// The part that has not beaten within `limit`, if any.
    pub fn stalled(&self, limit: Duration) -> Option<Part> {
        let now = self.now_ms();
        let limit = limit.as_millis() as u64;
        if now.saturating_sub(self.sink_ms.load(Relaxed)) > limit {
            return Some(Part::Sink);
        }
        if now.saturating_sub(self.reader_ms.load(Relaxed)) > limit {
            return Some(Part::Reader);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_part_is_reported() {
        let h = Health::default();
        h.reader_beat();
        h.sink_beat();
        assert_eq!(h.stalled(Duration::from_millis(200)), None);
        std::thread::sleep(Duration::from_millis(60));
        h.reader_beat();
        assert_eq!(h.stalled(Duration::from_millis(30)), Some(Part::Sink));
    }
}
