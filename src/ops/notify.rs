//! systemd's notify protocol (`sd_notify`): one datagram per message to the
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). Without the variable every call is a no-op, so the daemon runs
//! the same under systemd, in a terminal, or in tests that create the socket.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to the service manager's notify socket.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; a missing or unusable socket disables notifications.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
            };
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, addr))
        });
        Notifier { target }
    }

    /// True when a notify socket is configured.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message (e.g. `READY=1`); failures are logged at debug level
    /// only, since the daemon must not die because the manager went away.
    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                tracing::debug!(event = "notify_failed", error = %e, "sd_notify send failed");
            }
        }
    }

    /// `READY=1`.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STATUS=<text>`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={text}"));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `RELOADING=1` (the end of a reload is `READY=1`).
    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// The watchdog timeout systemd expects (`$WATCHDOG_USEC`), if it is meant
/// for this process (`$WATCHDOG_PID` absent or equal to our pid).
pub fn watchdog_timeout() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        let n = Notifier::from_env();
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(n.enabled());
        n.ready();
        n.status("ingesting");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=ingesting");
    }
}
