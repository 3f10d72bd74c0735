//! The shutdown signal, passed into every long-running part so that tests and
//! signal handlers control when they stop.
//!
//! Triggering drops the only sender of a channel, so every clone's
//! [`Shutdown::receiver`] becomes ready at once: threads `select!` on it next to
//! their work instead of polling a flag.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

/// A clonable, one-way shutdown switch.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<Mutex<Option<Sender<()>>>>,
    rx: Receiver<()>,
    at: Arc<Mutex<Option<Instant>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A switch that is not yet triggered.
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Shutdown {
            tx: Arc::new(Mutex::new(Some(tx))),
            rx,
            at: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        let mut at = self.at.lock().expect("shutdown lock");
        if at.is_none() {
            *at = Some(Instant::now());
        }
        self.tx.lock().expect("shutdown lock").take();
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        self.at.lock().expect("shutdown lock").is_some()
    }

    /// When it was triggered.
    pub fn triggered_at(&self) -> Option<Instant> {
        *self.at.lock().expect("shutdown lock")
    }

    /// Becomes ready (disconnected) when triggered; use in `select!`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_wakes_every_clone() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        assert!(c.receiver().try_recv().is_err());
        s.trigger();
        s.trigger();
        assert!(c.is_triggered());
        assert!(matches!(
            c.receiver().recv(),
            Err(crossbeam_channel::RecvError)
        ));
    }
}
