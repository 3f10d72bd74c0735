//! Budgets against a real ClickHouse and the real daemon: lines appended
//! while it runs cross a budget's warning fraction, then its limit; each
//! event is logged once, POSTed once to a webhook (with its secret header),
//! and not again after a restart; the use is a gauge in `/metrics`; a budget
//! scoped to another project never fires.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A line of `tokens` input tokens stamped now (the budget's period).
fn line_now(id: u64, tokens: u64) -> String {
    let ts = tokenbridge::timestamp::format_rfc3339_ms(tokenbridge::ops::logging::unix_ms());
    format!(
        "{{\"type\":\"assistant\",\"sessionId\":\"s-budget\",\"timestamp\":\"{ts}\",\"requestId\":\"r-{id}\",\"message\":{{\"id\":\"m-{id}\",\"model\":\"claude-sonnet-4-20250514\",\"usage\":{{\"input_tokens\":{tokens},\"output_tokens\":0}}}}}}\n"
    )
}

/// Requests a receiver got: `X-Token` header and JSON body of each.
type Posts = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver: every request's `X-Token` header and JSON body.
fn receiver() -> (String, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut token, mut len) = (String::new(), 0usize);
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                let lower = l.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-token:") {
                    token = l[l.len() - v.len()..].trim().to_string();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            seen.lock()
                .unwrap()
                .push((token, serde_json::from_slice(&body).unwrap()));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

fn fired(events: &[Value], name: &str, budget: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == name && e["budget"] == budget)
        .count()
}

#[test]
fn a_budget_fires_once_per_period_also_across_a_restart() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let session = watch.join("projects/-work-app/s-budget.jsonl");
    append(&session, line_now(0, 1_000));
    let secret = work.path().join("hook-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let (url, posts) = receiver();
    let extra = format!(
        "\n[[budgets]]\nname = \"monthly-tokens\"\nperiod = \"month\"\nlimit_tokens = 10000\nwarn_at = 0.5\n\
         webhook_url = \"{url}\"\nwebhook_header = \"X-Token\"\nwebhook_secret_file = {:?}\n\n\
         [[budgets]]\nname = \"other-project\"\nperiod = \"month\"\nlimit_tokens = 100\nproject = \"-elsewhere\"\n",
        secret.display().to_string()
    );
    let cfg = write_config(work.path(), &ch, "tb_budget", &[&watch], &extra);
    let log = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &log);
    let totals = |n: u64| ch.totals("tb_budget").input_tokens == n;
    assert!(wait_until(Duration::from_secs(30), || totals(1_000)));
    // 6,000 of 10,000: past the warning fraction (0.5).
    append(&session, line_now(1, 5_000));
    assert!(
        wait_until(Duration::from_secs(30), || fired(
            &d.events(),
            "budget_warning",
            "monthly-tokens"
        ) == 1),
        "{}",
        d.log_text()
    );
    assert_eq!(fired(&d.events(), "budget_exceeded", "monthly-tokens"), 0);
    // 12,000: past the limit; then more, which fires nothing new.
    append(&session, line_now(2, 6_000));
    assert!(wait_until(Duration::from_secs(30), || fired(
        &d.events(),
        "budget_exceeded",
        "monthly-tokens"
    ) == 1));
    append(&session, line_now(3, 500));
    assert!(wait_until(Duration::from_secs(30), || totals(12_500)));
    let addr = http_addr(&d).unwrap();
    // The gauge follows at the next check (at most every 5 s while rows
    // arrive).
    assert!(
        wait_until(Duration::from_secs(30), || http_get(&addr, "/metrics")
            .1
            .contains(
                "tokenbridge_budget_used_ratio{budget=\"monthly-tokens\"} 1.25"
            )),
        "{}",
        http_get(&addr, "/metrics").1
    );
    assert!(d.stop().success());

    // A restart in the same period says nothing again.
    let d = Daemon::start(&cfg, &log);
    append(&session, line_now(4, 500));
    assert!(wait_until(Duration::from_secs(30), || totals(13_000)));
    // This run's endpoint (the log holds both runs').
    assert!(wait_until(Duration::from_secs(30), || d
        .events()
        .iter()
        .filter(|e| e["event"] == "http_listening")
        .count()
        == 2));
    let addr = http_addr(&d).unwrap();
    assert!(wait_until(Duration::from_secs(30), || http_get(
        &addr, "/metrics"
    )
    .1
    .contains(
        "tokenbridge_budget_used_ratio{budget=\"monthly-tokens\"} 1.3"
    )));
    assert!(d.stop().success());
    let events = events_of(&log);
    assert_eq!(fired(&events, "budget_warning", "monthly-tokens"), 1);
    assert_eq!(fired(&events, "budget_exceeded", "monthly-tokens"), 1);
    assert_eq!(fired(&events, "budget_warning", "other-project"), 0);
    let e = events
        .iter()
        .find(|e| e["event"] == "budget_exceeded")
        .unwrap();
    assert_eq!(
        (e["used"].as_f64(), e["limit"].as_f64(), e["unit"].as_str()),
        (Some(12_000.0), Some(10_000.0), Some("tokens"))
    );

    // One POST per event, with the secret header.
    assert!(wait_until(Duration::from_secs(10), || posts
        .lock()
        .unwrap()
        .len()
        == 2));
    let posts = posts.lock().unwrap();
    let kinds: Vec<&str> = posts
        .iter()
        .map(|(_, b)| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["budget_warning", "budget_exceeded"]);
    assert!(posts
        .iter()
        .all(|(t, b)| t == "s3cret" && b["budget"] == "monthly-tokens"));
}

/// A webhook that refuses, a state file that cannot be written and a
/// ClickHouse that went away are logged, and ingestion goes on.
#[test]
fn budget_failures_are_logged_not_fatal() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let session = watch.join("projects/-work-app/s-budget.jsonl");
    append(&session, line_now(0, 2_000));
    // Nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        "\n[[budgets]]\nname = \"tiny\"\nperiod = \"day\"\nlimit_usd = 0.000001\nwebhook_url = \"http://{closed}/hook\"\n"
    );
    let cfg = write_config(work.path(), &ch, "tb_budget_fail", &[&watch], &extra);
    // The state file's place is taken by a folder.
    std::fs::create_dir_all(work.path().join("state/budgets.json")).unwrap();
    let log = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &log);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let ev = d.events();
            fired(&ev, "budget_exceeded", "tiny") == 1
                && ev
                    .iter()
                    .any(|e| e["event"] == "budget_state_save_failed" && e["error"].is_string())
                && ev.iter().any(|e| {
                    e["event"] == "webhook_failed" && e["attempt"].is_u64() && e["url"].is_string()
                })
        }),
        "{}",
        d.log_text()
    );
    assert_eq!(ch.totals("tb_budget_fail").input_tokens, 2_000);
    // ClickHouse gone: the last check, at shutdown, fails and says so.
    drop(ch);
    assert!(d.stop().success());
    let events = events_of(&log);
    assert!(
        events.iter().any(|e| e["event"] == "budget_check_failed"
            && e["budget"] == "tiny"
            && e["error"].is_string()),
        "{events:?}"
    );
}
