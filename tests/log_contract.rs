//! The log contract: every event in docs/reference/events.md is emitted
//! by a real run, with every documented field. One long daemon scenario, plus
//! short runs for managed mode, backfill signals and a fatal start, provoke
//! them; the table is parsed, not copied.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Events whose fields another test checks: a full disk (tests/lifecycle.rs),
/// an OAuth2 token server (tests/auth.rs), or enhanced analysis (tests/analysis.rs).
const CHECKED_ELSEWHERE: &[&str] = &[
    "checkpoint_save_failed",
    "checkpoint_recovered",
    "dead_letter_write_failed",
    // tests/analysis.rs (enhanced analysis, a refusing sessions table):
    "summary_failed",
    "summary_recovered",
    "aux_rows_rejected",
    "analysis_cost",
    // tests/auth.rs (needs an OAuth2 token server):
    "token_refreshed",
    "token_refresh_failed",
    "token_refresh_recovered",
    "token_invalidated",
    "token_cache_loaded",
    "token_cache_hit",
    "token_cache_miss",
    // tests/agents.rs (a Gemini session document rewritten whole):
    "file_rewritten",
    // tests/budgets.rs (budgets crossed, a refusing webhook, an unwritable
    // state file, ClickHouse gone):
    "budget_warning",
    "budget_exceeded",
    "webhook_failed",
    "budget_state_save_failed",
    "budget_check_failed",
    // tests/live.rs (40,000 rows appended, then a pause):
    "memory_released",
];

/// `event -> documented fields`, from docs/reference/events.md.
fn documented_events() -> BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/events.md"),
    )
    .unwrap();
    let table = readme
        .split("### Event reference")
        .nth(1)
        .expect("event reference section");
    let mut out = BTreeMap::new();
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with("| event"))
        .skip(2)
    {
        if !line.starts_with('|') {
            break;
        }
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cols[1].trim_matches('`').to_string();
        let fields = cols[3]
            .split(',')
            .map(|f| f.trim().trim_matches('`').to_string())
            .filter(|f| !f.is_empty())
            .collect();
        out.insert(name, fields);
    }
    assert!(out.len() > 30, "event table not found or too short");
    out
}

fn wait_event(log: &Path, event: &str) -> bool {
    wait_until(Duration::from_secs(30), || {
        events_of(log).iter().any(|e| e["event"] == event)
    })
}

#[test]
fn every_documented_event_is_emitted_with_its_fields() {
    let documented = documented_events();
    let mut ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let watch = work.path().join("claude");
    let dir = watch.join("projects/p");
    let other = work.path().join("other");
    append(
        &dir.join("a.jsonl"),
        &(usage_line("lc", 1, 1, 1) + &usage_line("lc", 2, 2, 1)),
    );
    append(
        &other.join("projects/q/o.jsonl"),
        usage_line("lc", 100, 100, 1),
    );
    let ch_url = ch.url();
    let cfg_text = |dirs: &str, rows: u32, http: &str| {
        format!(
            "[watch]\ndirs = [{dirs}]\nrescan_interval_ms = 1000\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"external\"\nurl = \"{}\"\ndatabase = \"tb_lc\"\nstartup_timeout_ms = 60000\nrequest_timeout_ms = 20000\n[batch]\nmax_rows = {rows}\n[log]\nlevel = \"debug\"\nformat = \"json\"\n[http]\nlisten = \"{http}\"\n",
            work.path().join("state").display().to_string(),
            ch_url
        )
    };
    let watch_q = format!("{:?}", watch.display().to_string());
    let cfg = work.path().join("config.toml");
    std::fs::write(&cfg, cfg_text(&watch_q, 50000, "127.0.0.1:0")).unwrap();
    // A guard makes ClickHouse reject one row.
    let (rt, c) = ch.client("tb_lc");
    rt.block_on(c.execute("ALTER TABLE tb_lc.messages ADD COLUMN guard UInt8 MATERIALIZED throwIf(input_tokens = 666)"))
        .unwrap();
    drop((rt, c));

    let log = work.path().join("daemon.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut cmd = bin_unprivileged(work.path());
    cmd.arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("WATCHDOG_USEC", "2000000")
        .stdout(Stdio::null())
        .stderr(f);
    let d = Daemon {
        child: cmd.spawn().unwrap(),
        log: log.clone(),
    };
    assert!(
        wait_until(Duration::from_secs(30), || ch.totals("tb_lc").messages == 2),
        "{}",
        d.log_text()
    );

    // Files: malformed lines (more than the log window), truncation,
    // replacement, rename, removal, permissions.
    let mut bad = String::new();
    for _ in 0..25 {
        bad.push_str("{\"oops\n");
    }
    append(&dir.join("bad.jsonl"), &bad);
    std::fs::write(dir.join("a.jsonl"), usage_line("lc", 3, 3, 1)).unwrap();
    append(&dir.join("r.jsonl"), usage_line("lc", 4, 4, 1));
    append(
        &dir.join("x.jsonl"),
        &(usage_line("lc", 5, 5, 1) + &usage_line("lc", 6, 6, 1)),
    );
    assert!(wait_until(Duration::from_secs(30), || ch
        .totals("tb_lc")
        .messages
        == 6));
    // Rewritten in place without truncating (fs::write truncates first, and a
    // reader that looks in between sees a truncation, not a replacement):
    // longer content over the old, so the size never drops below the offset.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("x.jsonl"))
            .unwrap();
        f.write_all(
            (usage_line("lc", 7, 7, 1) + &usage_line("lc", 8, 8, 1) + &usage_line("lc", 9, 9, 1))
                .as_bytes(),
        )
        .unwrap();
    }
    std::fs::rename(dir.join("r.jsonl"), dir.join("r2.jsonl")).unwrap();
    std::fs::remove_file(dir.join("bad.jsonl")).unwrap();
    // Confirmed gone before the next file is created: a new file can reuse
    // the freed inode, and a known inode under a new name is a rename.
    assert!(wait_event(&log, "file_gone"));
    // Unreadable from the moment it appears: written and locked outside the
    // watched folder, then moved in (locking it in place would race with
    // the daemon reading it first).
    let outside = work.path().join("locked.jsonl");
    append(&outside, usage_line("lc", 10, 10, 1));
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::rename(&outside, dir.join("locked.jsonl")).unwrap();
    assert!(wait_event(&log, "file_unreadable"));
    std::fs::set_permissions(
        dir.join("locked.jsonl"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(wait_event(&log, "file_readable"));
    assert!(
        wait_event(&log, "line_malformed_suppressed") || {
            // The summary is logged when the next window starts.
            std::thread::sleep(Duration::from_secs(10));
            append(&dir.join("bad2.jsonl"), "{\"oops\n");
            wait_event(&log, "line_malformed_suppressed")
        }
    );

    // ClickHouse rejects a row; the table disappears; the server goes away.
    append(
        &dir.join("guard.jsonl"),
        &(usage_line("lc", 666, 666, 1) + &usage_line("lc", 11, 11, 1)),
    );
    assert!(wait_event(&log, "row_rejected"));
    let (rt, c) = ch.client("tb_lc");
    rt.block_on(c.execute("DROP TABLE tb_lc.messages")).unwrap();
    drop((rt, c));
    append(&dir.join("after-drop.jsonl"), usage_line("lc", 12, 12, 1));
    assert!(wait_event(&log, "schema_recreated"));
    ch.server.stop();
    append(&dir.join("down.jsonl"), usage_line("lc", 13, 13, 1));
    assert!(wait_event(&log, "insert_failed"));
    ch.server.restart().unwrap();
    assert!(wait_event(&log, "clickhouse_recovered"));
    // A frozen server wedges an insert: the watchdog is withheld.
    let pid = ch.server.pid().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    append(&dir.join("frozen.jsonl"), usage_line("lc", 14, 14, 1));
    let withheld = wait_event(&log, "watchdog_withheld");
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(withheld);
    assert!(wait_event(&log, "watchdog_resumed"));

    // Reloads: valid (folders, batch, level, a restart-only change), then broken.
    let both = format!("{watch_q}, {:?}", other.display().to_string());
    std::fs::write(&cfg, cfg_text(&both, 1000, "127.0.0.1:1")).unwrap();
    d.signal(libc::SIGHUP);
    assert!(wait_event(&log, "config_reloaded"));
    assert!(wait_event(&log, "watch_dirs_changed"));
    std::fs::write(&cfg, "not = [valid").unwrap();
    d.signal(libc::SIGHUP);
    assert!(wait_event(&log, "config_reload_failed"));
    assert!(d.stop().success());
    let mut seen = events_of(&log);

    // Shutdown with ClickHouse gone: delivery is abandoned at the deadline.
    let sd_cfg = work.path().join("sd.toml");
    std::fs::write(
        &sd_cfg,
        cfg_text(&watch_q, 50000, "127.0.0.1:0")
            .replace("database = \"tb_lc\"", "database = \"tb_lc_sd\"")
            .replace(
                &work.path().join("state").display().to_string(),
                &work.path().join("state-sd").display().to_string(),
            )
            + "[service]\nshutdown_timeout_ms = 1500\n",
    )
    .unwrap();
    let sd_log = work.path().join("sd.log");
    let d = Daemon::start(&sd_cfg, &sd_log);
    assert!(wait_event(&sd_log, "batch_committed"), "{}", d.log_text());
    ch.server.stop();
    append(&dir.join("late.jsonl"), usage_line("lc", 15, 15, 1));
    assert!(wait_event(&sd_log, "insert_failed"));
    assert!(d.stop().success());
    seen.extend(events_of(&sd_log));

    // A backfill waiting for ClickHouse: SIGHUP is ignored, a second SIGTERM
    // exits at once.
    let bf_log = work.path().join("bf.log");
    let f = std::fs::File::create(&bf_log).unwrap();
    let mut child = bin()
        .arg("backfill")
        .arg("--config")
        .arg(&sd_cfg)
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    assert!(wait_event(&bf_log, "clickhouse_connect_failed"));
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    assert!(wait_event(&bf_log, "config_reload_ignored"));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_event(&bf_log, "shutdown_requested"));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(130));
    seen.extend(events_of(&bf_log));

    // A start that cannot reach ClickHouse in time is fatal.
    let fatal_cfg = work.path().join("fatal.toml");
    std::fs::write(
        &fatal_cfg,
        format!(
            "[watch]\ndirs = []\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"external\"\nurl = \"http://127.0.0.1:{}\"\nstartup_timeout_ms = 500\n[log]\nformat = \"json\"\n",
            work.path().join("state-fatal").display().to_string(),
            free_port()
        ),
    )
    .unwrap();
    let out = bin()
        .arg("run")
        .arg("--config")
        .arg(&fatal_cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    seen.extend(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
    );

    // Managed mode, with a server left behind by an "earlier run".
    let managed_state = work.path().join("state-managed");
    let (http, tcp) = (free_port(), free_port());
    let orphan =
        tokenbridge::ch::managed::ManagedServer::start(tokenbridge::ch::managed::ManagedOptions {
            binary: "/usr/sbin/clickhouse-server".into(),
            dir: managed_state.join("clickhouse"),
            http_port: http,
            tcp_port: tcp,
            startup_timeout: Duration::from_secs(60),
        })
        .unwrap();
    std::mem::forget(orphan);
    let m_cfg = work.path().join("managed.toml");
    std::fs::write(
        &m_cfg,
        format!(
            "[watch]\ndirs = [{watch_q}]\n[state]\ndir = {:?}\n[clickhouse]\nmode = \"managed\"\nmanaged_http_port = {http}\nmanaged_tcp_port = {tcp}\n[log]\nformat = \"json\"\n",
            managed_state.display().to_string()
        ),
    )
    .unwrap();
    let m_log = work.path().join("managed.log");
    let d = Daemon::start(&m_cfg, &m_log);
    assert!(wait_event(&m_log, "pipeline_started"), "{}", d.log_text());
    assert!(d.stop().success());
    seen.extend(events_of(&m_log));

    // Every documented event was seen, each documented field on some line of it.
    let mut missing = BTreeSet::new();
    for (event, fields) in &documented {
        if CHECKED_ELSEWHERE.contains(&event.as_str()) {
            continue;
        }
        let lines: Vec<&serde_json::Value> = seen
            .iter()
            .filter(|e| e["event"] == event.as_str())
            .collect();
        if lines.is_empty() {
            missing.insert(format!("{event} (never emitted)"));
            continue;
        }
        for f in fields {
            if !lines.iter().any(|l| !l[f].is_null()) {
                missing.insert(format!("{event}.{f}"));
            }
        }
    }
    let r_events: Vec<String> = seen
        .iter()
        .filter(|e| {
            let s = e.to_string();
            s.contains("/r.jsonl") || s.contains("/r2.jsonl") || s.contains("/x.jsonl")
        })
        .map(|e| e.to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not seen: {missing:?}\nevents of the renamed and rewritten files: {r_events:#?}"
    );
    // And nothing is emitted that the events reference does not document.
    let rare = [
        "watcher_overflow",
        "watcher_failed",
        "watch_failed",
        "file_read_failed",
        "schema_recreate_failed",
        "http_failed",
        "notify_failed",
        "token_cache_write_failed",
        "model_price_unknown",
        "running_inserts_awaited",
    ];
    let undocumented: BTreeSet<String> = seen
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| !documented.contains_key(*e) && !rare.contains(e))
        .map(String::from)
        .collect();
    assert!(
        undocumented.is_empty(),
        "emitted but not documented: {undocumented:?}"
    );
}
