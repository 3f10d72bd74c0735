//! Fleet attribution against a real ClickHouse: every row carries the host
//! and user it came from. Two daemons with their own `[source] host` (one a
//! fixed `user`, the other the files' owner) backfill into one database,
//! one of them carrying a synced copy of the other's session; a central
//! daemon reads a spool whose folders name host and user. Per host, per user
//! and overall the totals equal the generators' truth; reports filter and
//! group by host and user; the sessions table keeps them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;
use tokenbridge::testkit::corpus::Tokens;

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

/// `chown -R uid:uid dir`.
fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            chown_tree(&p, uid);
        } else {
            std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
        }
    }
}

/// The first top-level session file of a generated corpus.
fn a_session_file(corpus: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(corpus.join("projects"))
        .unwrap()
        .flat_map(|p| std::fs::read_dir(p.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files.remove(0)
}

fn sum(a: &Tokens, b: &Tokens) -> Tokens {
    Tokens {
        input_tokens: a.input_tokens + b.input_tokens,
        output_tokens: a.output_tokens + b.output_tokens,
        cache_creation_tokens: a.cache_creation_tokens + b.cache_creation_tokens,
        cache_read_tokens: a.cache_read_tokens + b.cache_read_tokens,
        total_tokens: a.total_tokens + b.total_tokens,
        messages: a.messages + b.messages,
    }
}

#[test]
fn two_hosts_into_one_database_with_a_synced_session_counted_once() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let truth_a = generated_corpus(&a, 61, 2 << 20);
    let b = work.path().join("b");
    let truth_b = generated_corpus(&b, 62, 2 << 20);
    // A synced ~/.claude: host b also holds one of host a's sessions.
    let shared = a_session_file(&a);
    let rel = shared.strip_prefix(&a).unwrap();
    std::fs::create_dir_all(b.join(rel).parent().unwrap()).unwrap();
    std::fs::copy(&shared, b.join(rel)).unwrap();
    // Host b's files belong to `nobody`: its rows name their owner.
    chown_tree(&b, 65534);

    let dir_a = work.path().join("daemon-a");
    let dir_b = work.path().join("daemon-b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let cfg_a = write_config(
        &dir_a,
        &ch,
        "tb_fleet",
        &[&a],
        "[source]\nhost = \"laptop-a\"\nuser = \"ana\"\n",
    );
    let cfg_b = write_config(
        &dir_b,
        &ch,
        "tb_fleet",
        &[&b],
        "[source]\nhost = \"laptop-b\"\n",
    );
    for cfg in [&cfg_a, &cfg_b] {
        let done = backfill(cfg, &[]);
        assert_eq!(done["complete"], true, "{done}");
    }
    let by_host = ch.totals_by("tb_fleet", "host");
    assert_eq!(by_host["laptop-a"], truth_a.totals);
    assert_eq!(
        by_host["laptop-b"], truth_b.totals,
        "the synced copy counted again"
    );
    let by_user = ch.totals_by("tb_fleet", "user");
    assert_eq!(by_user["ana"], truth_a.totals);
    assert_eq!(by_user["nobody"], truth_b.totals);
    assert_eq!(
        ch.totals("tb_fleet").total_tokens,
        sum(&truth_a.totals, &truth_b.totals).total_tokens
    );
    assert_eq!(ch.duplicate_rows("tb_fleet"), 0);

    // Reports group and filter by host and user.
    let hosts = report(&cfg_a, &["host"]);
    let listed: BTreeMap<String, u64> = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["totalTokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        BTreeMap::from([
            ("laptop-a".to_string(), truth_a.totals.total_tokens),
            ("laptop-b".to_string(), truth_b.totals.total_tokens)
        ])
    );
    let only_b = report(&cfg_a, &["daily", "--host", "laptop-b"]);
    assert_eq!(only_b["totals"]["totalTokens"], truth_b.totals.total_tokens);
    let users = report(&cfg_b, &["user"]);
    assert_eq!(users["users"].as_array().unwrap().len(), 2, "{users}");
    let ana = report(&cfg_b, &["daily", "--user", "ana"]);
    assert_eq!(ana["totals"]["totalTokens"], truth_a.totals.total_tokens);
}

#[test]
fn a_central_spool_names_hosts_and_users_by_folder() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let mut truths = BTreeMap::new();
    for (i, (host, user)) in [("ws-1", "ana"), ("ws-1", "bo"), ("ws-2", "cy")]
        .into_iter()
        .enumerate()
    {
        let t = generated_corpus(&spool.join(host).join(user), 70 + i as u64, 1 << 20);
        let _ = std::fs::remove_file(spool.join(host).join(user).join("expected.json"));
        truths.insert((host, user), t.totals);
    }
    let cfg = write_config_with(
        work.path(),
        &ch,
        "tb_spool",
        &[&spool],
        "host_user_dirs = true",
        "[source]\nhost = \"collector\"\n",
    );
    let done = backfill(&cfg, &[]);
    assert_eq!(done["complete"], true, "{done}");
    let by_user = ch.totals_by("tb_spool", "user");
    for ((_, user), t) in &truths {
        assert_eq!(&by_user[*user], t, "{user}");
    }
    let by_host = ch.totals_by("tb_spool", "host");
    assert_eq!(
        by_host["ws-1"],
        sum(&truths[&("ws-1", "ana")], &truths[&("ws-1", "bo")])
    );
    assert_eq!(by_host["ws-2"], truths[&("ws-2", "cy")]);
    assert!(!by_host.contains_key("collector"), "{by_host:?}");
    // Session summaries keep host and user.
    let (rt, c) = ch.client("tb_spool");
    let rows: Vec<(String, String, u64)> = rt
        .block_on(
            c.raw()
                .query("SELECT host, user, sum(total_tokens) FROM tb_spool.sessions FINAL GROUP BY host, user ORDER BY host, user")
                .fetch_all(),
        )
        .unwrap();
    let want: Vec<(String, String, u64)> = truths
        .iter()
        .map(|((h, u), t)| (h.to_string(), u.to_string(), t.total_tokens))
        .collect();
    assert_eq!(rows, want);
}
