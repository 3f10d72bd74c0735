//! Managed mode: the daemon runs its own clickhouse-server from the state dir,
//! ingests into it, and stops it on exit. Also the config checks of the CLI.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn managed_config(dir: &Path, watch: &Path, http: u16, tcp: u16) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[watch]\ndirs = [{watch:?}]\n[state]\ndir = \"state\"\n[clickhouse]\nmode = \"managed\"\nmanaged_http_port = {http}\nmanaged_tcp_port = {tcp}\n[log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            watch = watch.display().to_string()
        ),
    )
    .unwrap();
    path
}

#[test]
fn managed_mode_runs_and_stops_its_own_clickhouse() {
    let work = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge");
    let (http, tcp) = (free_port(), free_port());
    let cfg = managed_config(work.path(), &fixtures, http, tcp);
    let daemon = Daemon::start(&cfg, &work.path().join("daemon.log"));
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_text()
            .contains("\"pipeline_started\"")),
        "daemon did not start:\n{}",
        daemon.log_text()
    );

    // While the daemon runs, `report totals` uses its server.
    let totals = || -> Option<serde_json::Value> {
        let out = bin()
            .args(["report", "totals", "--json", "--config"])
            .arg(&cfg)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    };
    assert!(
        wait_until(Duration::from_secs(60), || totals()
            .is_some_and(|t| t["totalTokens"] == 1308)),
        "managed ingest failed:\n{}",
        daemon.log_text()
    );
    let pid_file = work.path().join("state/clickhouse/server.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(daemon.stop().success());
    assert!(
        wait_until(Duration::from_secs(20), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "managed clickhouse-server still running after the daemon stopped"
    );
    assert!(!pid_file.exists());

    // With no daemon running, the report starts the managed server itself.
    let t = totals().expect("report with the daemon stopped");
    assert_eq!(t["messages"], 9);
}

#[test]
fn check_config_names_file_and_key() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("bad.toml");
    std::fs::write(&cfg, "[clickhouse]\nmode = \"managed\"\nbogus_key = 1\n").unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("bogus_key"),
        "{err}"
    );

    std::fs::write(&cfg, "[clickhouse]\npassword = \"hunter2-secret\"\n").unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("***") && !text.contains("hunter2-secret"),
        "{text}"
    );
}

#[test]
fn token_status_shows_expiry_but_never_the_token() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("secret"), "cl13nt-s3cr3t\n").unwrap();
    let cfg = work.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[state]\ndir = \"state\"\n[clickhouse]\nmode = \"external\"\n[upstream.auth]\nmode = \"oauth2\"\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"tb\"\nclient_secret_file = \"secret\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(work.path().join("state")).unwrap();
    let now = tokenbridge::ops::logging::unix_ms();
    let cached = serde_json::json!({"value": "eyJ-the-token", "obtained_at_ms": now - 60_000, "expires_at_ms": now + 3_540_000});
    std::fs::write(work.path().join("state/token.json"), cached.to_string()).unwrap();
    let out = bin()
        .args(["token", "status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("127.0.0.1:1/token") && text.contains("(in 353") && text.contains("60 s ago"),
        "{text}"
    );
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !all.contains("eyJ-the-token") && !all.contains("cl13nt-s3cr3t"),
        "{all}"
    );
}
