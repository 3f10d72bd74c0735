//! Everything that talks to ClickHouse: the typed error, the schema, the
//! connected client, and the managed local server.

pub mod client;
pub mod error;
pub mod managed;
pub mod schema;
pub mod statement_log;

pub use client::ChClient;
pub use error::ChError;
