//! The memory budget of the reader → sink channel: parsed rows waiting for
//! the sink are bounded in bytes, not in chunks.
//!
//! A chunk's size in memory depends on its file: 1 MiB of a transcript can
//! hold a handful of rows or thousands. Counting chunks made the bound a
//! matter of timing (a slow ClickHouse let the channel fill with large
//! chunks); counting bytes makes it a number. The reader takes a [`Permit`]
//! for a chunk's bytes before sending it and waits while the budget is spent;
//! the permit travels with the chunk and gives the bytes back when the sink
//! drops it (after moving the rows into its batch, or when the channel is
//! dropped because the sink stopped, so a waiting reader always wakes up).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::ops::metrics::Metrics;

/// A byte budget shared by the reader (taking) and the sink (giving back).
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: Mutex<u64>,
    freed: Condvar,
    /// Readers waiting on `freed` (changed under the `used` lock). A release
    /// with nobody waiting, the usual case, then makes no wake-up system call
    /// (one per chunk under live load).
    waiting: AtomicUsize,
    /// Where the bytes in use are shown (`tokenbridge_channel_bytes`).
    metrics: Option<Arc<Metrics>>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Self::build(limit, None)
    }

    /// A budget whose use is kept in `metrics.channel_bytes`.
    pub fn reporting(limit: u64, metrics: Arc<Metrics>) -> Arc<MemoryBudget> {
        Self::build(limit, Some(metrics))
    }

    fn build(limit: u64, metrics: Option<Arc<Metrics>>) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit: limit.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            metrics,
        })
    }

    fn show(&self, used: u64) {
        if let Some(m) = &self.metrics {
            m.channel_bytes.store(used, Relaxed);
        }
    }

    /// The limit, bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes currently held by permits.
    pub fn used(&self) -> u64 {
        *self.used.lock().expect("budget lock")
    }

    /// Takes `bytes`, waiting at most `wait` for them. One chunk larger than
    /// the whole budget is let through when nothing else is held, so a huge
    /// chunk cannot block forever. `None`: not granted within `wait` (the
    /// caller keeps its heartbeat and asks again).
    pub fn try_acquire(self: &Arc<Self>, bytes: u64, wait: Duration) -> Option<Permit> {
        let mut used = self.used.lock().expect("budget lock");
        if *used > 0 && *used + bytes > self.limit && !wait.is_zero() {
            self.waiting.fetch_add(1, Relaxed);
            used = self
                .freed
                .wait_timeout_while(used, wait, |u| *u > 0 && *u + bytes > self.limit)
                .expect("budget lock")
                .0;
            self.waiting.fetch_sub(1, Relaxed);
        }
        if *used > 0 && *used + bytes > self.limit {
            return None;
        }
        *used += bytes;
        self.show(*used);
        Some(Permit {
            budget: Some(self.clone()),
            bytes,
        })
    }

    fn release(&self, bytes: u64) {
        let mut used = self.used.lock().expect("budget lock");
        *used = used.saturating_sub(bytes);
        self.show(*used);
        if self.waiting.load(Relaxed) > 0 {
            self.freed.notify_all();
        }
    }
}

/// Bytes of a [`MemoryBudget`] held by one chunk; given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Option<Arc<MemoryBudget>>,
    bytes: u64,
}

impl Permit {
    /// A permit that holds nothing (chunks made outside the pipeline).
    pub fn none() -> Permit {
        Permit {
            budget: None,
            bytes: 0,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self.budget.take() {
            b.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_bytes_are_given_back() {
        let b = MemoryBudget::new(100);
        let p1 = b.try_acquire(60, Duration::ZERO).unwrap();
        assert_eq!(b.used(), 60);
        assert!(b.try_acquire(50, Duration::from_millis(10)).is_none());
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || {
                b.try_acquire(50, Duration::from_secs(10))
                    .map(|p| p.bytes())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(p1);
        assert_eq!(waiter.join().unwrap(), Some(50));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn an_oversized_chunk_passes_alone() {
        let b = MemoryBudget::new(100);
        let big = b.try_acquire(1000, Duration::ZERO).unwrap();
        assert!(b.try_acquire(1, Duration::ZERO).is_none());
        drop(big);
        assert!(b.try_acquire(1, Duration::ZERO).is_some());
        assert_eq!(Permit::none().bytes(), 0);
    }
}
