//! Running as a service, with the real binary, a real ClickHouse and real
//! signals: systemd unit files, the notify protocol and the watchdog, SIGHUP
//! reloads, and the /metrics, /health and /ready endpoint.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn unit_files_verify_and_the_system_unit_is_hardened() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let work = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tokenbridge");
    let system = work.path().join("tokenbridge.service");
    std::fs::write(
        &system,
        std::fs::read_to_string(units.join("tokenbridge.service"))
            .unwrap()
            .replace("/usr/local/bin/tokenbridge", bin),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&system)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let user_dir = work.path().join("user");
    std::fs::create_dir_all(&user_dir).unwrap();
    let runtime = work.path().join("xdg");
    std::fs::create_dir_all(&runtime).unwrap();
    let user = user_dir.join("tokenbridge.service");
    std::fs::write(
        &user,
        std::fs::read_to_string(units.join("tokenbridge-user.service"))
            .unwrap()
            .replace("%h/.local/bin/tokenbridge", bin),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(&user)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&system)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tokenbridge.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no score in {text}"));
    assert!(score <= 2.0, "exposure {score}");
}

/// Datagrams received on a socket, with their arrival times.
fn collect(sock: &UnixDatagram, until: Instant, out: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        sock.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
}

#[test]
fn notify_ready_status_watchdog_and_stopping() {
    let work = tempfile::tempdir().unwrap();
    let sock_path = work.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let (http, tcp) = (free_port(), free_port());
    let watch = work.path().join("claude");
    append(&watch.join("projects/p/a.jsonl"), usage_line("n", 1, 1, 1));
    // ClickHouse is not up yet when the daemon starts.
    let cfg = work.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[watch]\ndirs = [{:?}]\n[state]\ndir = \"state\"\n[clickhouse]\nmode = \"external\"\nurl = \"http://127.0.0.1:{http}\"\ndatabase = \"tb_notify\"\nstartup_timeout_ms = 60000\nrequest_timeout_ms = 30000\n[log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            watch.display().to_string()
        ),
    )
    .unwrap();
    let log = work.path().join("daemon.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = bin()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    let d = Daemon { child, log };
    let mut msgs = Vec::new();
    collect(&sock, Instant::now() + Duration::from_secs(3), &mut msgs);
    assert!(
        !msgs.iter().any(|(_, m)| m == "READY=1"),
        "READY before clickhouse was up: {msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|(_, m)| m == "STATUS=connecting to clickhouse"),
        "{msgs:?}"
    );

    let ch = TestClickHouse::start_on(http, tcp);
    let ch_up = Instant::now();
    collect(&sock, Instant::now() + Duration::from_secs(6), &mut msgs);
    let ready_at = msgs
        .iter()
        .find(|(_, m)| m == "READY=1")
        .map(|(t, _)| *t)
        .expect("no READY=1");
    assert!(ready_at >= ch_up);
    let pings = msgs
        .iter()
        .filter(|(t, m)| m == "WATCHDOG=1" && *t > ready_at)
        .count();
    assert!(pings >= 3, "watchdog pings after READY: {pings}");
    assert!(wait_until(Duration::from_secs(10), || ch
        .totals("tb_notify")
        .messages
        == 1));

    // Wedge the pipeline: ClickHouse frozen in the middle of an insert.
    let ch_pid = ch.server.pid().unwrap() as i32;
    unsafe { libc::kill(ch_pid, libc::SIGSTOP) };
    append(&watch.join("projects/p/a.jsonl"), usage_line("n", 2, 1, 2));
    let mut wedged = Vec::new();
    collect(&sock, Instant::now() + Duration::from_secs(8), &mut wedged);
    unsafe { libc::kill(ch_pid, libc::SIGCONT) };
    let last_ping = wedged
        .iter()
        .rfind(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t);
    let silent_for =
        Instant::now().duration_since(last_ping.unwrap_or(Instant::now() - Duration::from_secs(8)));
    assert!(
        silent_for >= Duration::from_secs(4),
        "watchdog kept pinging while wedged: {wedged:?}"
    );
    let mut after = Vec::new();
    collect(&sock, Instant::now() + Duration::from_secs(6), &mut after);
    assert!(
        after.iter().any(|(_, m)| m == "WATCHDOG=1"),
        "pings did not resume: {after:?}"
    );
    assert!(wait_until(Duration::from_secs(30), || ch
        .totals("tb_notify")
        .messages
        == 2));
    let events = d.events();
    assert!(events
        .iter()
        .any(|e| e["event"] == "watchdog_withheld" && e["part"] == "sink"));
    assert!(events.iter().any(|e| e["event"] == "watchdog_resumed"));

    d.signal(libc::SIGTERM);
    let mut end = Vec::new();
    collect(&sock, Instant::now() + Duration::from_secs(3), &mut end);
    assert!(end.iter().any(|(_, m)| m == "STOPPING=1"), "{end:?}");
    assert!(d.stop().success());
}

fn config_text(ch: &TestClickHouse, work: &Path, dirs: &[&Path], level: &str) -> String {
    let dirs: Vec<String> = dirs
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect();
    format!(
        "[watch]\ndirs = [{}]\nrescan_interval_ms = 60000\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"external\"\nurl = \"{}\"\ndatabase = \"tb_hup\"\n[log]\nlevel = \"{level}\"\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        dirs.join(", "),
        work.join("state").display().to_string(),
        ch.url()
    )
}

#[test]
fn sighup_reloads_folders_and_keeps_the_old_config_when_the_new_one_is_broken() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let b = work.path().join("b");
    append(&a.join("projects/p/s.jsonl"), usage_line("a", 1, 1, 1));
    append(&b.join("projects/p/s.jsonl"), usage_line("b", 1, 1, 1));
    let cfg = work.path().join("config.toml");
    std::fs::write(&cfg, config_text(&ch, work.path(), &[&a], "debug")).unwrap();
    let d = Daemon::start(&cfg, &work.path().join("daemon.log"));
    assert!(wait_until(Duration::from_secs(30), || ch
        .totals("tb_hup")
        .messages
        == 1));

    // A new folder: its files get ingested without a restart.
    std::fs::write(&cfg, config_text(&ch, work.path(), &[&a, &b], "info")).unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || ch.totals("tb_hup").messages
            == 2),
        "{}",
        d.log_text()
    );
    let reloaded = d
        .events()
        .into_iter()
        .find(|e| e["event"] == "config_reloaded")
        .expect("config_reloaded");
    let changed = reloaded["changed"].as_str().unwrap_or_default().to_string();
    assert!(
        changed.contains("watch.dirs") && changed.contains("log.level"),
        "{reloaded}"
    );

    // A broken config is rejected and the old one keeps working.
    std::fs::write(&cfg, "[watch]\ndirs = [1, 2]\nbogus = true\n").unwrap();
    d.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("\"config_reload_failed\"")));
    append(&b.join("projects/p/s.jsonl"), usage_line("b", 2, 1, 2));
    append(&a.join("projects/p/s.jsonl"), usage_line("a", 2, 1, 2));
    assert!(wait_until(Duration::from_secs(30), || ch
        .totals("tb_hup")
        .messages
        == 4));
    assert!(d.stop().success());
}

/// Parses Prometheus/OpenMetrics text; panics on a malformed line.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ")
            || line.starts_with("# TYPE ")
            || line.starts_with("# UNIT ")
            || line == "# EOF"
        {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels in {line:?}"
            );
            for pair in labels[1..labels.len() - 1]
                .split("\",")
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line:?}"
                );
                let _ = v;
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((series.to_string(), v));
    }
    assert!(text.ends_with("# EOF\n"));
    samples
}

#[test]
fn metrics_health_and_ready_match_what_was_ingested() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge");
    copy_tree(&fixtures, &watch);
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_metrics",
        &[&watch],
        "usage_labels = [\"project\"]\n",
    );
    let d = Daemon::start(&cfg, &work.path().join("daemon.log"));
    assert!(wait_until(Duration::from_secs(30), || ch
        .totals("tb_metrics")
        .messages
        == 9));
    let addr = http_addr(&d).expect("http_listening event");
    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let samples = parse_exposition(&body);
    let get = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{series} missing in\n{body}"))
    };
    assert_eq!(
        get("tokenbridge_rows_inserted_total"),
        ch.raw_rows("tb_metrics") as f64
    );
    assert_eq!(get("tokenbridge_lines_total{class=\"usage\"}"), 16.0);
    assert_eq!(get("tokenbridge_lines_total{class=\"malformed\"}"), 1.0);
    assert_eq!(get("tokenbridge_lines_total{class=\"blank\"}"), 1.0);
    assert_eq!(
        get("tokenbridge_malformed_lines_total{kind=\"invalid_json\"}"),
        1.0
    );
    assert_eq!(get("tokenbridge_duplicates_dropped_total"), 7.0);
    assert_eq!(get("tokenbridge_files_watched"), 3.0);
    assert_eq!(get("tokenbridge_clickhouse_up"), 1.0);
    assert_eq!(get("tokenbridge_backlog_bytes"), 0.0);
    let bytes: u64 = walk_size(&watch);
    assert_eq!(get("tokenbridge_bytes_read_total"), bytes as f64);
    assert!(get("tokenbridge_batch_latency_seconds_count") >= 1.0);
    assert!(get("tokenbridge_seconds_since_last_commit") >= 0.0);
    assert!(samples
        .iter()
        .any(|(s, _)| s.starts_with("tokenbridge_size_bucket_total{kind=\"line\"")));
    assert!(d
        .events()
        .iter()
        .any(|e| e["event"] == "size_bucket_new" && e["bucket_min_bytes"].is_u64()));
    // Usage counters (by agent, model and type; projects asked for in the
    // config) add up to what ClickHouse holds.
    let totals = ch.totals("tb_metrics");
    let usage = |kind: &str| -> f64 {
        samples
            .iter()
            .filter(|(s, _)| {
                s.starts_with("tokenbridge_token_usage_tokens_total{")
                    && s.contains(&format!("type=\"{kind}\""))
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(usage("input"), totals.input_tokens as f64);
    assert_eq!(usage("output"), totals.output_tokens as f64);
    assert_eq!(usage("cacheRead"), totals.cache_read_tokens as f64);
    assert_eq!(usage("cacheCreation"), totals.cache_creation_tokens as f64);
    assert!(samples.iter().any(|(s, _)| s.starts_with(
        "tokenbridge_token_usage_tokens_total{agent=\"claude\",model=\"claude-sonnet-4-20250514\",project="
    )), "{body}");
    assert!(samples.iter().any(|(s, v)| s
        .starts_with("tokenbridge_cost_usage_usd_total{agent=\"claude\"")
        && *v > 0.0));

    let (status, body) = http_get(&addr, "/health");
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}"));
    let (status, body) = http_get(&addr, "/ready");
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"ready\":true,\"reasons\":[]}")
    );
    assert!(d.stop().success());
}

fn walk_size(dir: &Path) -> u64 {
    tokenbridge::ingest::discovery::scan(&[dir.to_path_buf()])
        .files
        .iter()
        .map(|f| f.meta.len())
        .sum()
}
