//! The upstream access token: cached, refreshed ahead of expiry in the
//! background, fetched by at most one caller at a time, retried with capped
//! backoff when the token endpoint fails, and persisted (0600) so a restart
//! reuses a still-valid token without asking for a new one.
//!
//! Where the token comes from is a [`TokenSource`] (the OAuth2
//! client-credentials grant in production); the manager owns every rule about
//! when to ask.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::ops::logging::unix_ms;
use crate::ops::state::atomic_write;
use crate::secret::Secret;

/// A token as the endpoint returned it.
#[derive(Debug, Clone)]
pub struct FetchedToken {
    /// The bearer token.
    pub value: Secret,
    /// `expires_in`, when the response had one.
    pub expires_in: Option<Duration>,
}

/// Why a token could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The endpoint could not be reached or answered with an error; retried.
    #[error("token endpoint: {0}")]
    Endpoint(String),
    /// No valid token and refreshing keeps failing; the caller waits and retries.
    #[error("no valid token: {0}")]
    Unavailable(String),
}

/// Something that issues tokens (the OAuth2 token endpoint).
pub trait TokenSource: Send + Sync {
    /// Requests a new token. Error messages must not contain secrets.
    fn fetch(&self) -> Result<FetchedToken, TokenError>;
    /// A name for logs and `token status` (e.g. the token URL).
    fn describe(&self) -> String;
}

/// Timing rules.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    /// Refresh this long before expiry (default 5 minutes).
    pub refresh_buffer: Duration,
    /// Lifetime assumed when a response has no `expires_in`.
    pub default_lifetime: Duration,
    /// First retry delay after a failed refresh.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// A refresh slower than this is logged with `slow = true`.
    pub slow: Duration,
    /// Where the token is cached across restarts (0600).
    pub cache_file: Option<PathBuf>,
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions {
            refresh_buffer: Duration::from_secs(300),
            default_lifetime: Duration::from_secs(3600),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            slow: Duration::from_secs(2),
            cache_file: None,
        }
    }
}

/// A held token and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedToken {
    /// The token.
    #[serde(with = "secret_string")]
    pub value: Secret,
    /// When it was received, Unix ms (local clock).
    pub obtained_at_ms: i64,
    /// When it expires, Unix ms.
    pub expires_at_ms: i64,
}

mod secret_string {
    use crate::secret::Secret;
    pub fn serialize<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        let v: String = serde::Deserialize::deserialize(de)?;
        Ok(Secret::new(v))
    }
}

impl CachedToken {
    /// When to refresh: `refresh_buffer` before expiry, or at half-life when
    /// the lifetime is shorter than twice the buffer.
    pub fn refresh_at_ms(&self, buffer: Duration) -> i64 {
        let lifetime = self.expires_at_ms - self.obtained_at_ms;
        let buffer = buffer.as_millis() as i64;
        if lifetime < 2 * buffer {
            self.obtained_at_ms + lifetime / 2
        } else {
            self.expires_at_ms - buffer
        }
    }
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct TokenMetrics {
    /// Successful refreshes.
    pub refreshes: AtomicU64,
    /// Failed refresh attempts.
    pub failures: AtomicU64,
}

struct State {
    token: Option<CachedToken>,
    refreshing: bool,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// The token manager. Cheap to share (`Arc`).
pub struct TokenManager {
    source: std::sync::RwLock<Box<dyn TokenSource>>,
    opts: TokenOptions,
    state: Mutex<State>,
    changed: Condvar,
    /// Counters.
    pub metrics: TokenMetrics,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: only where it comes from and how long it lasts.
        f.debug_struct("TokenManager")
            .field("source", &self.source())
            .field("seconds_until_expiry", &self.seconds_until_expiry())
            .finish()
    }
}

impl TokenManager {
    /// A manager; a still-valid token in the cache file is reused.
    pub fn new(source: Box<dyn TokenSource>, opts: TokenOptions) -> Arc<TokenManager> {
        let cached = opts
            .cache_file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<CachedToken>(&b).ok())
            .filter(|t| t.expires_at_ms > unix_ms());
        if let Some(t) = &cached {
            tracing::info!(
                event = "token_cache_loaded",
                expires_in_seconds = (t.expires_at_ms - unix_ms()) / 1000,
                "reusing the cached token"
            );
        }
        Arc::new(TokenManager {
            source: std::sync::RwLock::new(source),
            opts,
            state: Mutex::new(State {
                token: cached,
                refreshing: false,
                failures: 0,
                next_attempt: None,
                last_error: None,
            }),
            changed: Condvar::new(),
            metrics: TokenMetrics::default(),
        })
    }

    /// The current token, for a request. Reuses the cached token until its
    /// refresh point; past it (but before expiry) returns it and leaves the
    /// refresh to the background. With no valid token, waits for the one
    /// refresh in flight (or performs it), up to `wait`.
    pub fn get(&self, wait: Duration) -> Result<Secret, TokenError> {
        let deadline = Instant::now() + wait;
        let mut st = self.state.lock().expect("token state");
        loop {
            let now = unix_ms();
            if let Some(t) = st.token.as_ref().filter(|t| t.expires_at_ms > now) {
                tracing::debug!(event = "token_cache_hit", "cached token reused");
                return Ok(t.value.clone());
            }
            tracing::debug!(event = "token_cache_miss", "no valid token cached");
            if !st.refreshing && st.next_attempt.is_none_or(|n| Instant::now() >= n) {
                st.refreshing = true;
                drop(st);
                self.refresh_now();
                st = self.state.lock().expect("token state");
                continue;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(TokenError::Unavailable(
                    st.last_error
                        .clone()
                        .unwrap_or_else(|| "refresh in progress".into()),
                ));
            }
            let until_retry = st
                .next_attempt
                .map(|n| n.saturating_duration_since(Instant::now()))
                .unwrap_or(remaining);
            st = self
                .changed
                .wait_timeout(st, remaining.min(until_retry).max(Duration::from_millis(1)))
                .expect("token state")
                .0;
        }
    }

    /// Drops the cached token (e.g. the server answered 401); the next
    /// [`TokenManager::get`] fetches a new one.
    pub fn invalidate(&self, reason: &str) {
        let mut st = self.state.lock().expect("token state");
        if st.token.take().is_some() {
            tracing::warn!(event = "token_invalidated", reason, "cached token dropped");
        }
        st.next_attempt = None;
    }

    /// Seconds until the cached token expires (negative: expired; none: no token).
    pub fn seconds_until_expiry(&self) -> Option<i64> {
        let st = self.state.lock().expect("token state");
        st.token
            .as_ref()
            .map(|t| (t.expires_at_ms - unix_ms()) / 1000)
    }

    /// The cached token's timing, without the token (for `token status`).
    pub fn status(&self) -> Option<(i64, i64)> {
        let st = self.state.lock().expect("token state");
        st.token
            .as_ref()
            .map(|t| (t.obtained_at_ms, t.expires_at_ms))
    }

    /// Where tokens come from.
    pub fn source(&self) -> String {
        self.source.read().expect("token source").describe()
    }

    /// Switches to new credentials (config reload): the cached token was
    /// issued to the old ones, so it is dropped and the next request fetches
    /// one from the new source.
    pub fn replace_source(&self, source: Box<dyn TokenSource>) {
        *self.source.write().expect("token source") = source;
        let mut st = self.state.lock().expect("token state");
        st.token = None;
        st.next_attempt = None;
        st.failures = 0;
        tracing::info!(
            event = "token_invalidated",
            reason = "credentials changed by a reload",
            "cached token dropped"
        );
    }

    /// One fetch, by the caller that set `refreshing`.
    fn refresh_now(&self) {
        let started = Instant::now();
        let result = self.source.read().expect("token source").fetch();
        let latency = started.elapsed();
        let mut st = self.state.lock().expect("token state");
        st.refreshing = false;
        match result {
            Ok(f) => {
                let now = unix_ms();
                let lifetime = f.expires_in.unwrap_or(self.opts.default_lifetime);
                let token = CachedToken {
                    value: f.value,
                    obtained_at_ms: now,
                    expires_at_ms: now + lifetime.as_millis() as i64,
                };
                self.metrics.refreshes.fetch_add(1, Relaxed);
                tracing::info!(
                    event = "token_refreshed",
                    expires_in_seconds = lifetime.as_secs(),
                    latency_ms = latency.as_millis() as u64,
                    slow = latency > self.opts.slow,
                    "new access token"
                );
                if st.failures > 0 {
                    tracing::info!(
                        event = "token_refresh_recovered",
                        attempts = st.failures + 1,
                        "token endpoint answers again"
                    );
                }
                st.failures = 0;
                st.next_attempt = None;
                st.last_error = None;
                if let Some(f) = &self.opts.cache_file {
                    let bytes = serde_json::to_vec(&token).expect("token json");
                    if let Err(e) = atomic_write(f, &bytes, 0o600) {
                        tracing::warn!(event = "token_cache_write_failed", file = %f.display(), error = %e, "cannot save the token cache");
                    }
                }
                st.token = Some(token);
            }
            Err(e) => {
                self.metrics.failures.fetch_add(1, Relaxed);
                st.failures += 1;
                let exp = self
                    .opts
                    .backoff_initial
                    .saturating_mul(1 << st.failures.min(16).saturating_sub(1));
                let jitter = 0.8 + 0.4 * crate::ops::logging::jitter_unit();
                let delay = exp.min(self.opts.backoff_max).mul_f64(jitter);
                st.next_attempt = Some(Instant::now() + delay);
                st.last_error = Some(e.to_string());
                tracing::warn!(
                    event = "token_refresh_failed",
                    attempt = st.failures,
                    error = %e,
                    next_retry_ms = delay.as_millis() as u64,
                    "token refresh failed; the cached token is used while it is valid"
                );
            }
        }
        self.changed.notify_all();
    }

    /// Runs the proactive refresher until `stop`: refreshes a little before
    /// the refresh point (with jitter), so requests do not wait for it.
    pub fn run_refresher(self: &Arc<Self>, stop: &crate::ops::shutdown::Shutdown) {
        loop {
            let wait = {
                let mut st = self.state.lock().expect("token state");
                let now = unix_ms();
                let due = match (&st.token, st.next_attempt) {
                    (_, Some(n)) => Some(n.saturating_duration_since(Instant::now())),
                    (Some(t), None) => {
                        let at = t.refresh_at_ms(self.opts.refresh_buffer);
                        // Up to 10 % of the remaining time early, so many
                        // daemons do not refresh in the same second.
                        let early =
                            ((at - now).max(0) as f64 * 0.1 * crate::ops::logging::jitter_unit())
                                as i64;
                        Some(Duration::from_millis((at - early - now).max(0) as u64))
                    }
                    (None, None) => Some(Duration::ZERO),
                };
                match due {
                    Some(d) if d.is_zero() && !st.refreshing => {
                        st.refreshing = true;
                        None
                    }
                    Some(d) => Some(d.max(Duration::from_millis(10))),
                    None => Some(Duration::from_millis(10)),
                }
            };
            match wait {
                None => self.refresh_now(),
                Some(d) => {
                    if stop
                        .receiver()
                        .recv_timeout(d.min(Duration::from_secs(60)))
                        .is_err()
                        && stop.is_triggered()
                    {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Fake {
        calls: AtomicU64,
        fail: AtomicBool,
        lifetime: Option<Duration>,
        delay: Duration,
    }

    impl TokenSource for Arc<Fake> {
        fn fetch(&self) -> Result<FetchedToken, TokenError> {
            let n = self.calls.fetch_add(1, Relaxed) + 1;
            std::thread::sleep(self.delay);
            if self.fail.load(Relaxed) {
                return Err(TokenError::Endpoint("503 Service Unavailable".into()));
            }
            Ok(FetchedToken {
                value: Secret::new(format!("tok-{n}")),
                expires_in: self.lifetime,
            })
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn fake(lifetime: Option<Duration>, delay_ms: u64) -> Arc<Fake> {
        Arc::new(Fake {
            calls: AtomicU64::new(0),
            fail: AtomicBool::new(false),
            lifetime,
            delay: Duration::from_millis(delay_ms),
        })
    }

    fn opts() -> TokenOptions {
        TokenOptions {
            refresh_buffer: Duration::from_millis(400),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..TokenOptions::default()
        }
    }

    #[test]
    fn refresh_point_is_the_buffer_or_half_life() {
        let t = CachedToken {
            value: Secret::new("x"),
            obtained_at_ms: 0,
            expires_at_ms: 3_600_000,
        };
        assert_eq!(t.refresh_at_ms(Duration::from_secs(300)), 3_300_000);
        let short = CachedToken {
            expires_at_ms: 4_000,
            ..t
        };
        assert_eq!(short.refresh_at_ms(Duration::from_secs(300)), 2_000);
    }

    #[test]
    fn concurrent_callers_at_expiry_cause_one_request() {
        // A 300 ms token, then 20 callers at once just after it expired.
        let src = fake(Some(Duration::from_millis(300)), 100);
        let m = TokenManager::new(Box::new(src.clone()), opts());
        assert_eq!(m.get(Duration::from_secs(5)).unwrap().expose(), "tok-1");
        std::thread::sleep(Duration::from_millis(350));
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    m.get(Duration::from_secs(5)).unwrap().expose().to_string()
                })
            })
            .collect();
        let tokens: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            src.calls.load(Relaxed),
            2,
            "one request for the first token, one at expiry"
        );
        assert!(tokens.iter().all(|t| t == "tok-2"));
    }

    #[test]
    fn failures_back_off_and_a_valid_token_keeps_working() {
        let src = fake(Some(Duration::from_secs(60)), 0);
        let m = TokenManager::new(Box::new(src.clone()), opts());
        assert_eq!(m.get(Duration::from_secs(1)).unwrap().expose(), "tok-1");
        src.fail.store(true, Relaxed);
        m.invalidate("test");
        let started = Instant::now();
        let e = m.get(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, TokenError::Unavailable(_)), "{e}");
        // 300 ms of capped backoff (20, 40, 80, 100, … ms), not a tight loop.
        let calls = src.calls.load(Relaxed);
        assert!(
            (3..=8).contains(&calls),
            "{calls} requests in {:?}",
            started.elapsed()
        );
        assert!(m.metrics.failures.load(Relaxed) >= 2);
        src.fail.store(false, Relaxed);
        assert!(m
            .get(Duration::from_secs(2))
            .unwrap()
            .expose()
            .starts_with("tok-"));
    }

    #[test]
    fn cache_file_is_0600_and_reused_after_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("token.json");
        let o = TokenOptions {
            cache_file: Some(file.clone()),
            ..opts()
        };
        let src = fake(Some(Duration::from_secs(60)), 0);
        let m = TokenManager::new(Box::new(src.clone()), o.clone());
        m.get(Duration::from_secs(1)).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&file).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = fake(Some(Duration::from_secs(60)), 0);
        let m2 = TokenManager::new(Box::new(again.clone()), o);
        assert_eq!(m2.get(Duration::from_secs(1)).unwrap().expose(), "tok-1");
        assert_eq!(
            again.calls.load(Relaxed),
            0,
            "a restart with a valid cache asked for a token"
        );
        assert!(!format!("{:?}", m2.status()).contains("tok-1"));
    }

    #[test]
    fn replacing_the_source_drops_the_old_token() {
        let old = fake(Some(Duration::from_secs(60)), 0);
        let m = TokenManager::new(Box::new(old.clone()), opts());
        assert_eq!(m.get(Duration::from_secs(1)).unwrap().expose(), "tok-1");
        let new = fake(Some(Duration::from_secs(60)), 0);
        new.calls.store(100, Relaxed);
        m.replace_source(Box::new(new.clone()));
        assert_eq!(m.get(Duration::from_secs(1)).unwrap().expose(), "tok-101");
        assert_eq!(old.calls.load(Relaxed), 1);
    }

    #[test]
    fn background_refresh_happens_before_expiry() {
        // 1 s lifetime, 400 ms buffer: refresh at 500 ms (half-life rule).
        let src = fake(Some(Duration::from_secs(1)), 0);
        let m = TokenManager::new(Box::new(src.clone()), opts());
        let stop = crate::ops::shutdown::Shutdown::new();
        let runner = {
            let (m, s) = (m.clone(), stop.clone());
            std::thread::spawn(move || m.run_refresher(&s))
        };
        let mut seen = std::collections::BTreeSet::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2600) {
            // Callers never wait: a valid token is always there.
            let t0 = Instant::now();
            seen.insert(m.get(Duration::from_secs(1)).unwrap().expose().to_string());
            assert!(t0.elapsed() < Duration::from_millis(50));
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.trigger();
        runner.join().unwrap();
        let calls = src.calls.load(Relaxed);
        // About one request per half-lifetime: 2.6 s / 0.5 s.
        assert!((4..=7).contains(&calls), "{calls} requests");
        assert_eq!(seen.len() as u64, calls);
    }
}
