//! Getting bytes out of files: which files there are (discovery), when to
//! look again (watcher), which file is which (fingerprint), where each one
//! was committed (checkpoint), which descriptors stay open (hot), the reader that reads complete lines past
//! those positions and hands them to a format, the messages it sends the
//! sink (msg) and the byte budget that bounds them (budget), and which host
//! and user a file's rows belong to (attribution).

pub mod attribution;
pub mod budget;
pub mod checkpoint;
pub mod discovery;
pub mod fingerprint;
pub mod hot;
pub mod lines;
pub mod msg;
pub mod reader;
pub mod watcher;
