//! The upstream token against real components: a local OAuth2 token server
//! (client-credentials grant, short random tokens, told to fail or revoke)
//! and an authenticating reverse proxy in front of a real ClickHouse that
//! accepts only currently valid tokens. Both are test-only code.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::*;

const CLIENT_SECRET: &str = "cl13nt-s3cr3t-9f2c";

#[derive(Default)]
struct Issuer {
    tokens: Mutex<HashMap<String, Instant>>,
    issued: Mutex<Vec<String>>,
    requests: AtomicU64,
    failing: AtomicBool,
    lifetime_ms: AtomicU64,
    rejected: AtomicU64,
    /// The client secret the server accepts (rotated by a test).
    secret: Mutex<String>,
}

impl Issuer {
    fn valid(&self, token: &str) -> bool {
        self.tokens
            .lock()
            .unwrap()
            .get(token)
            .is_some_and(|exp| Instant::now() < *exp)
    }
    fn revoke_all(&self) {
        self.tokens.lock().unwrap().clear();
    }
}

async fn token_endpoint(State(iss): State<Arc<Issuer>>, body: Bytes) -> Response {
    iss.requests.fetch_add(1, SeqCst);
    if iss.failing.load(SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":\"temporarily_unavailable\"}",
        )
            .into_response();
    }
    let form: HashMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2D", "-")))
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("client_id").map(String::as_str) != Some("tb")
        || form.get("client_secret") != Some(&*iss.secret.lock().unwrap())
    {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_client\"}").into_response();
    }
    let n = iss.requests.load(SeqCst);
    let token = format!(
        "tok-{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{n}{:?}", Instant::now()).as_bytes())
    );
    let lifetime = Duration::from_millis(iss.lifetime_ms.load(SeqCst));
    iss.tokens
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now() + lifetime);
    iss.issued.lock().unwrap().push(token.clone());
    let body = format!(
        "{{\"access_token\":\"{token}\",\"token_type\":\"Bearer\",\"expires_in\":{}}}",
        lifetime.as_secs_f64()
    );
    ([("content-type", "application/json")], body).into_response()
}

struct Proxy {
    issuer: Arc<Issuer>,
    upstream: String,
}

async fn proxy(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let token = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !p.issuer.valid(&token) {
        p.issuer.rejected.fetch_add(1, SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            "Code: 516. DB::Exception: proxy: invalid or expired token (401 Unauthorized)",
        )
            .into_response();
    }
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let url = format!(
        "{}{}",
        p.upstream,
        parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
    );
    let method = parts.method.clone();
    let headers: HeaderMap = parts.headers.clone();
    let result = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in headers.iter() {
            if k != "authorization" && k != "host" && k != "content-length" {
                req = req.header(k.as_str(), v.as_bytes());
            }
        }
        let mut resp = agent.run(req.body(body.to_vec()).unwrap())?;
        let status = resp.status().as_u16();
        let hdrs: Vec<(String, Vec<u8>)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-clickhouse") || *k == "content-type")
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let bytes = resp.body_mut().read_to_vec()?;
        Ok::<_, ureq::Error>((status, hdrs, bytes))
    })
    .await;
    match result {
        Ok(Ok((status, hdrs, bytes))) => {
            let mut r = Response::builder().status(status);
            for (k, v) in hdrs {
                r = r.header(k, v);
            }
            r.body(axum::body::Body::from(bytes)).unwrap()
        }
        _ => (StatusCode::BAD_GATEWAY, "upstream failed").into_response(),
    }
}

/// Token server + proxy on their own runtime.
struct AuthWorld {
    issuer: Arc<Issuer>,
    token_url: String,
    proxy_url: String,
    _rt: tokio::runtime::Runtime,
}

impl AuthWorld {
    fn start(clickhouse_url: &str, lifetime: Duration) -> AuthWorld {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let issuer = Arc::new(Issuer::default());
        *issuer.secret.lock().unwrap() = CLIENT_SECRET.to_string();
        issuer
            .lifetime_ms
            .store(lifetime.as_millis() as u64, SeqCst);
        let bind = |app: Router| -> SocketAddr {
            rt.block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = l.local_addr().unwrap();
                tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
                addr
            })
        };
        let t = bind(
            Router::new()
                .route("/oauth/token", axum::routing::post(token_endpoint))
                .with_state(issuer.clone()),
        );
        let p = bind(Router::new().fallback(proxy).with_state(Arc::new(Proxy {
            issuer: issuer.clone(),
            upstream: clickhouse_url.to_string(),
        })));
        AuthWorld {
            issuer,
            token_url: format!("http://{t}/oauth/token"),
            proxy_url: format!("http://{p}"),
            _rt: rt,
        }
    }

    fn config(&self, work: &Path, db: &str, watch: &Path, buffer_s: u64) -> PathBuf {
        std::fs::write(work.join("client-secret"), format!("{CLIENT_SECRET}\n")).unwrap();
        let path = work.join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[watch]\ndirs = [{:?}]\nrescan_interval_ms = 1000\n[state]\ndir = \"state\"\n[clickhouse]\nmode = \"external\"\nurl = \"{}\"\ndatabase = \"{db}\"\nrequest_timeout_ms = 5000\n[batch]\nretry_max_ms = 500\n[log]\nlevel = \"debug\"\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:0\"\n[upstream.auth]\nmode = \"oauth2\"\ntoken_url = \"{}\"\nclient_id = \"tb\"\nclient_secret_file = \"client-secret\"\nrefresh_buffer_seconds = {buffer_s}\n",
                watch.display().to_string(),
                self.proxy_url,
                self.token_url
            ),
        )
        .unwrap();
        path
    }

    fn requests(&self) -> u64 {
        self.issuer.requests.load(SeqCst)
    }
}

/// Appends `n` lines of `session`, one every `every`, numbered from `from`.
fn trickle(file: &Path, session: &str, from: usize, n: usize, every: Duration) {
    for i in from..from + n {
        append(file, usage_line(session, i, 1, 1));
        std::thread::sleep(every);
    }
}

fn assert_no_secrets(world: &AuthWorld, texts: &[String]) {
    let issued = world.issuer.issued.lock().unwrap().clone();
    assert!(!issued.is_empty());
    for t in texts {
        assert!(!t.contains(CLIENT_SECRET), "client secret leaked");
        for tok in &issued {
            assert!(!t.contains(tok.as_str()), "token {tok} leaked");
        }
    }
}

#[test]
fn ten_token_lifetimes_without_a_failed_insert() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    // 3 s tokens refreshed 1 s before expiry: one request per ~2-3 s.
    let world = AuthWorld::start(&ch.url(), Duration::from_secs(3));
    let watch = work.path().join("claude");
    let cfg = world.config(work.path(), "tb_auth_life", &watch, 1);
    let d = Daemon::start(&cfg, &work.path().join("daemon.log"));
    let started = Instant::now();
    trickle(
        &watch.join("projects/p/s.jsonl"),
        "life",
        0,
        150,
        Duration::from_millis(200),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "shorter than 10 lifetimes"
    );
    assert!(
        wait_until(Duration::from_secs(20), || ch
            .totals("tb_auth_life")
            .messages
            == 150),
        "{:?}",
        ch.totals("tb_auth_life")
    );
    let requests = world.requests();
    let lifetimes = started.elapsed().as_secs_f64() / 3.0;
    assert!(
        (requests as f64) >= lifetimes * 0.9 && (requests as f64) <= lifetimes * 1.8 + 1.0,
        "{requests} token requests over {lifetimes:.1} lifetimes"
    );
    let ev = d.events();
    assert_eq!(
        ev.iter().filter(|e| e["event"] == "insert_failed").count(),
        0,
        "an insert failed"
    );
    assert_eq!(
        world.issuer.rejected.load(SeqCst),
        0,
        "the proxy refused a token"
    );
    assert!(ev.iter().any(|e| e["event"] == "token_refreshed"
        && e["expires_in_seconds"] == 3
        && e["latency_ms"].is_u64()
        && e["slow"] == false));
    let (status, metrics) = http_get(&http_addr(&d).unwrap(), "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tokenbridge_token_refreshes_total"),
        "{metrics}"
    );
    assert!(d.stop().success());
    assert_no_secrets(
        &world,
        &[
            std::fs::read_to_string(work.path().join("daemon.log")).unwrap(),
            metrics,
        ],
    );
}

#[test]
fn endpoint_down_for_two_lifetimes_pauses_then_resumes_exact() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let world = AuthWorld::start(&ch.url(), Duration::from_secs(2));
    let watch = work.path().join("claude");
    let cfg = world.config(work.path(), "tb_auth_down", &watch, 1);
    let d = Daemon::start(&cfg, &work.path().join("daemon.log"));
    let file = watch.join("projects/p/s.jsonl");
    trickle(&file, "down", 0, 5, Duration::from_millis(50));
    assert!(wait_until(Duration::from_secs(20), || ch
        .totals("tb_auth_down")
        .messages
        == 5));

    world.issuer.failing.store(true, SeqCst);
    // Once the last token expires, nothing more gets in.
    std::thread::sleep(Duration::from_secs(3));
    trickle(&file, "down", 5, 10, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ch.totals("tb_auth_down").messages,
        5,
        "rows got in without a valid token"
    );
    world.issuer.failing.store(false, SeqCst);
    assert!(
        wait_until(Duration::from_secs(30), || ch
            .totals("tb_auth_down")
            .messages
            == 15),
        "did not resume: {:?}",
        ch.totals("tb_auth_down")
    );
    let ev = d.events();
    let failed: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "token_refresh_failed")
        .collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|e| e["attempt"].is_u64() && e["next_retry_ms"].is_u64())
    );
    assert!(ev.iter().any(|e| e["event"] == "token_refresh_recovered"));
    assert_eq!(ch.duplicate_rows("tb_auth_down"), 0);
    assert!(d.stop().success());
    assert_no_secrets(
        &world,
        &[std::fs::read_to_string(work.path().join("daemon.log")).unwrap()],
    );
}

#[test]
fn revoked_token_one_401_one_refresh_then_restart_reuses_the_cache() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let world = AuthWorld::start(&ch.url(), Duration::from_secs(120));
    let watch = work.path().join("claude");
    let cfg = world.config(work.path(), "tb_auth_revoke", &watch, 5);
    let log = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &log);
    let file = watch.join("projects/p/s.jsonl");
    append(&file, usage_line("rv", 0, 1, 1));
    assert!(wait_until(Duration::from_secs(20), || ch
        .totals("tb_auth_revoke")
        .messages
        == 1));
    assert_eq!(world.requests(), 1);

    world.issuer.revoke_all();
    append(&file, usage_line("rv", 1, 1, 1));
    assert!(wait_until(Duration::from_secs(20), || ch
        .totals("tb_auth_revoke")
        .messages
        == 2));
    assert_eq!(
        world.issuer.rejected.load(SeqCst),
        1,
        "one 401: {}",
        d.log_text()
    );
    assert_eq!(world.requests(), 2, "one refresh");
    let ev = d.events();
    assert!(ev
        .iter()
        .any(|e| e["event"] == "token_invalidated" && e["reason"].is_string()));
    assert!(ev.iter().any(|e| e["event"] == "token_cache_miss"));
    assert!(d.stop().success());

    // A restart with a valid cached token asks for none.
    let cache = work.path().join("state/token.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let d = Daemon::start(&cfg, &log);
    append(&file, usage_line("rv", 2, 1, 1));
    assert!(wait_until(Duration::from_secs(20), || ch
        .totals("tb_auth_revoke")
        .messages
        == 3));
    assert_eq!(
        world.requests(),
        2,
        "a token was requested at start-up despite a valid cache"
    );
    let ev = d.events();
    assert!(ev
        .iter()
        .any(|e| e["event"] == "token_cache_loaded" && e["expires_in_seconds"].is_i64()));
    assert!(ev.iter().any(|e| e["event"] == "token_cache_hit"));
    assert!(d.stop().success());
    let status = bin()
        .args(["token", "status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let status_text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status_text.contains("expires:"), "{status_text}");
    assert_no_secrets(
        &world,
        &[std::fs::read_to_string(&log).unwrap(), status_text],
    );
}

#[test]
fn sighup_with_a_rotated_client_secret_switches_credentials() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let world = AuthWorld::start(&ch.url(), Duration::from_secs(120));
    let watch = work.path().join("claude");
    let cfg = world.config(work.path(), "tb_auth_rotate", &watch, 5);
    let d = Daemon::start(&cfg, &work.path().join("daemon.log"));
    let file = watch.join("projects/p/s.jsonl");
    append(&file, usage_line("ro", 0, 1, 1));
    assert!(wait_until(Duration::from_secs(20), || ch
        .totals("tb_auth_rotate")
        .messages
        == 1));

    // The identity provider rotates the secret and revokes old tokens; the
    // operator writes the new secret and reloads.
    let rotated = "r0tat3d-s3cr3t-77";
    *world.issuer.secret.lock().unwrap() = rotated.to_string();
    world.issuer.revoke_all();
    std::fs::write(work.path().join("client-secret"), format!("{rotated}\n")).unwrap();
    d.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("\"config_reloaded\"")));
    append(&file, usage_line("ro", 1, 1, 1));
    assert!(
        wait_until(Duration::from_secs(20), || ch
            .totals("tb_auth_rotate")
            .messages
            == 2),
        "{}",
        d.log_text()
    );
    let reloaded = d
        .events()
        .into_iter()
        .find(|e| e["event"] == "config_reloaded")
        .unwrap();
    assert!(
        reloaded["changed"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream.auth"),
        "{reloaded}"
    );
    assert!(d.stop().success());
    let log = std::fs::read_to_string(work.path().join("daemon.log")).unwrap();
    assert!(!log.contains(rotated));
    assert_no_secrets(&world, &[log]);
}
