//! The dashboard with a real ClickHouse, the real daemon and a real browser
//! (Debian's Chromium, headless): the numbers the page shows after its
//! scripts ran equal `report … --json` for the same range, stacked by
//! model and by project; a session's timeline lists its entries; the API
//! answers for a range and a time zone, for an empty database, and with a
//! clear error (shown on the page) when ClickHouse is down; beyond loopback
//! it needs its token. A screenshot of each view is written to
//! `target/dashboard/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The page at `url` after its scripts ran, as Chromium serialises it;
/// also saves a `width`×`height` screenshot as `shot`.
fn browse(url: &str, shot: &str, (width, height): (u32, u32)) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=8000",
    ];
    let out = Command::new("chromium")
        .args(common)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium is not installed: run scripts/setup.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png: PathBuf = dir.join(format!("{shot}.png"));
    let st = Command::new("chromium")
        .args(common)
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        st.status.success() && png.exists(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `data-value` (else the text) of the element with `id`.
fn value_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in\n{dom}"));
    let tag_end = at + dom[at..].find('>').unwrap();
    let tag = &dom[at..tag_end];
    if let Some(v) = tag.split("data-value=\"").nth(1) {
        return v.split('"').next().unwrap().to_string();
    }
    let text_end = tag_end + 1 + dom[tag_end + 1..].find('<').unwrap();
    dom[tag_end + 1..text_end].to_string()
}

fn report(cfg: &Path, args: &[&str]) -> Value {
    let out = bin()
        .arg("report")
        .args(args)
        .args(["--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn api(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn the_page_shows_what_report_prints() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("claude");
    generated_corpus(&corpus, 31, 2 << 20);
    // A second project, on other days.
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/claude/blocks"),
        &corpus,
    );
    // And a line written now, so that the month budget below has use in
    // whatever month the test runs.
    let ts = tokenbridge::timestamp::format_rfc3339_ms(tokenbridge::ops::logging::unix_ms());
    append(
        &corpus.join("projects/-work-today/s-today.jsonl"),
        format!(
            "{{\"type\":\"assistant\",\"sessionId\":\"s-today\",\"timestamp\":\"{ts}\",\"requestId\":\"r-today\",\"message\":{{\"id\":\"m-today\",\"model\":\"claude-sonnet-4-20250514\",\"usage\":{{\"input_tokens\":120,\"output_tokens\":30}}}}}}\n"
        ),
    );
    let truth = run_scan(&corpus);
    let messages = truth["totals"]["messages"].as_u64().unwrap();
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_dash",
        &[&corpus],
        "\n[[budgets]]\nname = \"all-time-ish\"\nperiod = \"month\"\nlimit_tokens = 1000\n",
    );
    let d = Daemon::start(&cfg, &work.path().join("daemon.log"));
    assert!(wait_until(Duration::from_secs(60), || ch
        .totals("tb_dash")
        .messages
        == messages));
    let addr = http_addr(&d).unwrap();
    let days: Vec<String> = truth["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date"].as_str().unwrap().to_string())
        .collect();
    assert!(days.len() >= 3, "{days:?}");
    // From the first day to the second project's last day (today's is last).
    let (since, until) = (days[0].as_str(), days[days.len() - 2].as_str());

    // The range's totals.
    let url = format!("http://{addr}/?since={since}&until={until}");
    let dom = browse(&url, "overview", (1280, 1100));
    assert!(dom.contains("data-ready=\"1\""), "scripts did not finish");
    let want = report(&cfg, &["daily", "--since", since, "--until", until]);
    assert_eq!(
        value_of(&dom, "total-tokens"),
        want["totals"]["totalTokens"].to_string()
    );
    let cost: f64 = value_of(&dom, "total-cost").parse().unwrap();
    assert!((cost - want["totals"]["totalCost"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(value_of(&dom, "status-mode"), "daemon");
    assert_eq!(value_of(&dom, "status-clickhouse"), "up");
    // The budget's use, as the gauge has it (read once the check after the
    // ingest ran: this month's row is the one written now).
    let gauge = || -> Option<f64> {
        http_get(&addr, "/metrics")
            .1
            .lines()
            .find_map(|l| l.strip_prefix("tokenbridge_budget_used_ratio{budget=\"all-time-ish\"} "))
            .and_then(|v| v.parse().ok())
    };
    assert!(wait_until(Duration::from_secs(30), || gauge().is_some_and(|g| g > 0.0)));
    let dom = browse(&url, "overview", (1280, 1100));
    let shown: f64 = value_of(&dom, "budget-all-time-ish").parse().unwrap();
    assert!(
        (shown - gauge().unwrap()).abs() < 1e-9,
        "{shown} vs {:?}",
        gauge()
    );
    // Sessions carry how far a naive sum of their lines overcounts (once
    // the summaries after the ingest ran).
    assert!(
        wait_until(Duration::from_secs(30), || api(&addr, "/api/sessions").1
            ["sessions"]
            .as_array()
            .is_some_and(|l| l
                .iter()
                .any(|x| x["overcountPct"].as_f64().is_some_and(|o| o > 0.0)))),
        "{}",
        api(&addr, "/api/sessions").1
    );

    // Stacked by project: the legend's numbers are the per-project totals.
    let dom = browse(&format!("{url}&group=project"), "by-project", (1280, 1100));
    let legend: Vec<(String, u64)> = dom
        .split("<li data-name=\"")
        .skip(1)
        .map(|li| {
            let name = li.split('"').next().unwrap().to_string();
            let tokens = li
                .split("data-tokens=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (name, tokens)
        })
        .collect();
    assert!(legend.len() >= 2, "{legend:?}");
    for (project, tokens) in &legend {
        let r = report(
            &cfg,
            &[
                "daily",
                "--since",
                since,
                "--until",
                until,
                &format!("--project={project}"),
            ],
        );
        assert_eq!(
            *tokens,
            r["totals"]["totalTokens"].as_u64().unwrap(),
            "{project}"
        );
    }

    // One session's timeline.
    let (_, s) = api(&addr, "/api/sessions?limit=1");
    let id = s["sessions"][0]["sessionId"].as_str().unwrap().to_string();
    let (_, one) = api(&addr, &format!("/api/session?id={id}"));
    let entries = one["entries"].as_array().unwrap().len();
    let dom = browse(
        &format!("http://{addr}/#session={id}"),
        "session",
        (1280, 1400),
    );
    let rows = dom
        .split("id=\"timeline\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap()
        .matches("<tr>")
        .count();
    assert_eq!(rows, entries + 1, "header row plus one per entry");

    // A phone-sized screen.
    browse(&format!("http://{addr}/"), "phone", (390, 844));

    // A time zone moves days: the API's days are report's days.
    let (status, u) = api(&addr, "/api/usage?tz=%2B05:30");
    assert_eq!(status, 200);
    let r = report(&cfg, &["daily", "--timezone", "+05:30"]);
    let report_days: Vec<Value> = r["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date"].clone())
        .collect();
    assert_eq!(u["days"].as_array().unwrap(), &report_days);
    assert_eq!(u["totals"]["totalTokens"], truth["totals"]["totalTokens"]);
    let (status, bad) = api(&addr, "/api/usage?tz=Mars");
    assert_eq!(status, 400, "{bad}");

    // ClickHouse down: a clear error, on the page too.
    drop(ch);
    std::thread::sleep(Duration::from_millis(2_500));
    let (status, e) = api(&addr, "/api/usage");
    assert_eq!(status, 503);
    assert!(e["error"].as_str().unwrap().contains("ClickHouse"), "{e}");
    let dom = browse(&format!("http://{addr}/"), "clickhouse-down", (1280, 700));
    assert!(dom.contains("data-ready=\"error\""));
    assert!(
        value_of(&dom, "error").starts_with("Cannot load the numbers"),
        "{dom}"
    );
}

#[test]
fn an_empty_database_and_a_dashboard_beyond_loopback() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let token = work.path().join("dash-token");
    std::fs::write(&token, "let-me-in\n").unwrap();
    let cfg = write_config(
        work.path(),
        &ch,
        "tb_dash_empty",
        &[&empty],
        &format!(
            "\n[dashboard]\ntoken_file = {:?}\n",
            token.display().to_string()
        ),
    );
    // The schema exists once a backfill ran; nothing was ingested.
    assert_eq!(backfill(&cfg, &[])["complete"], true);
    let port = free_port();
    let mut child = bin()
        .args([
            "dashboard",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--config",
        ])
        .arg(&cfg)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).is_ok()
    }));
    // Beyond loopback: the token or nothing.
    assert_eq!(http_get(&addr, "/api/usage").0, 401);
    assert_eq!(http_get(&addr, "/?token=wrong").0, 401);
    let (status, u) = api(&addr, "/api/usage?token=let-me-in");
    assert_eq!(status, 200);
    assert_eq!(u["totals"]["totalTokens"], 0);
    assert_eq!(u["days"].as_array().unwrap().len(), 0);
    let dom = browse(
        &format!("http://{addr}/?token=let-me-in"),
        "empty",
        (1280, 700),
    );
    assert!(dom.contains("data-ready=\"1\""));
    assert_eq!(value_of(&dom, "total-tokens"), "0");
    assert_eq!(value_of(&dom, "status-mode"), "standalone");
    let _ = child.kill();
    let _ = child.wait();

    // Beyond loopback without a token: refused.
    let port = free_port();
    let mut child = bin()
        .args([
            "dashboard",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--files",
        ])
        .arg(&empty)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).is_ok()
    }));
    assert_eq!(http_get(&addr, "/").0, 403);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn straight_from_files_without_a_database() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge");
    let mut child = bin()
        .args([
            "dashboard",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--files",
        ])
        .arg(&fixtures)
        .current_dir(work.path())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).is_ok()
    }));
    let want = run_scan(&fixtures);
    let (_, u) = api(&addr, "/api/usage");
    assert_eq!(u["totals"]["totalTokens"], want["totals"]["totalTokens"]);
    let _ = child.kill();
    let _ = child.wait();
}

fn run_scan(dir: &Path) -> Value {
    let out = bin()
        .arg("scan")
        .arg(dir)
        .args(["daily", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}
