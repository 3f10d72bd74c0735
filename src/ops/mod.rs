//! Running the daemon as a service: counters and the HTTP endpoint that
//! shows them, health and readiness, logs, systemd notifications, shutdown,
//! the state dir and its lock, the memory bound, and test failpoints.

pub mod exposition;
pub mod failpoint;
pub mod health;
pub mod http;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod shutdown;
pub mod sizes;
pub mod state;
pub mod usage;
