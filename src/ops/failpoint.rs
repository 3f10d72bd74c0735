//! Crash injection for tests: `TOKENBRIDGE_FAILPOINT=name:N` makes the process
//! abort (as abruptly as `kill -9`) the Nth time it reaches the failpoint
//! `name`. Unset, a failpoint costs one relaxed atomic load.
//!
//! Failpoints: `after_insert` (ClickHouse acknowledged a batch, checkpoints
//! not yet advanced), `checkpoint_temp_written` (the new state file is
//! written to its temp name, not yet renamed) and
//! `checkpoint_journal_half_written` (half of a checkpoint journal append
//! is written).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

static CONFIG: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn config() -> &'static Option<(String, u64)> {
    CONFIG.get_or_init(|| {
        let v = std::env::var("TOKENBRIDGE_FAILPOINT").ok()?;
        let (name, n) = v.split_once(':').unwrap_or((&v, "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Aborts the process if `name` is the configured failpoint and this is its Nth hit.
pub fn hit(name: &str) {
    if let Some((want, n)) = config() {
        if want == name && HITS.fetch_add(1, Relaxed) + 1 == *n {
            eprintln!("failpoint {name} reached: aborting");
            std::process::abort();
        }
    }
}
