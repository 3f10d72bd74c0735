//! Cluster mode against a real cluster: ZooKeeper and four ClickHouse 18.16
//! servers forming 2 shards × 2 replicas (see `common::cluster`).
//!
//! - Three daemons with their own `[source] host`, each talking to a
//!   different node, migrate an older schema and backfill and then tail three generated corpora; one pair
//!   shares a copied session (backfilled) and a synced session (appended on
//!   both while they run). Per host, per user and overall the totals equal the
//!   generators' truth, the synced sessions count once, every shard's
//!   replicas agree, and the session summaries add up across shards.
//! - Faults during ingest: one replica stopped, the daemon killed with
//!   SIGKILL, ZooKeeper stopped for 30 s while lines are appended. Exact
//!   afterwards, and the stopped replica catches up.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::cluster::TestCluster;
use common::*;
use tokenbridge::testkit::corpus::Tokens;

fn plus(a: &Tokens, input: u64, output: u64, messages: u64) -> Tokens {
    Tokens {
        input_tokens: a.input_tokens + input,
        output_tokens: a.output_tokens + output,
        total_tokens: a.total_tokens + input + output,
        messages: a.messages + messages,
        ..*a
    }
}

fn add(a: &Tokens, b: &Tokens) -> Tokens {
    Tokens {
        input_tokens: a.input_tokens + b.input_tokens,
        output_tokens: a.output_tokens + b.output_tokens,
        cache_creation_tokens: a.cache_creation_tokens + b.cache_creation_tokens,
        cache_read_tokens: a.cache_read_tokens + b.cache_read_tokens,
        total_tokens: a.total_tokens + b.total_tokens,
        messages: a.messages + b.messages,
    }
}

/// Deduplicated totals grouped by `column`, through node `node`.
fn totals_by(
    cluster: &TestCluster,
    node: usize,
    db: &str,
    column: &str,
) -> BTreeMap<String, Tokens> {
    let sql = format!(
        "SELECT toString({column}), sum(input_tokens), sum(output_tokens), sum(cache_creation_input_tokens), \
         sum(cache_read_input_tokens), count() FROM {db}.messages FINAL GROUP BY {column}"
    );
    cluster
        .rows(node, db, &sql)
        .into_iter()
        .map(|(k, i, o, cc, cr, n)| {
            (
                k,
                Tokens {
                    input_tokens: i,
                    output_tokens: o,
                    cache_creation_tokens: cc,
                    cache_read_tokens: cr,
                    total_tokens: i + o + cc + cr,
                    messages: n,
                },
            )
        })
        .collect()
}

fn overall(cluster: &TestCluster, node: usize, db: &str) -> Tokens {
    cluster.totals(node, db)
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

/// Both replicas of each shard hold the same rows (after fetching what
/// their shard's log holds), and both shards hold some.
fn assert_replicas_agree(cluster: &TestCluster, db: &str, expected_messages: u64) {
    for node in 0..4 {
        cluster.sync_replica(node, db, "messages_local");
    }
    let states = cluster.replica_states(db);
    assert_eq!(
        states[0], states[1],
        "shard 1's replicas differ: {states:?}"
    );
    assert_eq!(
        states[2], states[3],
        "shard 2's replicas differ: {states:?}"
    );
    assert!(
        states[0].1 > 0 && states[2].1 > 0,
        "a shard is empty: {states:?}"
    );
    assert_eq!(
        states[0].1 + states[2].1,
        expected_messages,
        "the shards' winning rows do not add up: {states:?}"
    );
}

#[test]
fn three_hosts_into_a_cluster_exact_per_host_and_user() {
    let cluster = TestCluster::start();
    let db = "tb_cluster";
    let work = tempfile::tempdir().unwrap();
    let corpus = |name: &str, seed: u64| {
        let dir = work.path().join(name);
        let truth = generated_corpus(&dir, seed, 1 << 20);
        (dir, truth)
    };
    let (a, truth_a) = corpus("a", 71);
    let (b, truth_b) = corpus("b", 72);
    let (c, truth_c) = corpus("c", 73);
    // A synced ~/.claude: host b also holds one of host a's sessions.
    let shared = a_session_file(&a);
    let rel = shared.strip_prefix(&a).unwrap();
    std::fs::create_dir_all(b.join(rel).parent().unwrap()).unwrap();
    std::fs::copy(&shared, b.join(rel)).unwrap();

    // An older tokenbridge made the cluster's `messages` with the columns of
    // its first version: the daemons migrate it ON CLUSTER.
    {
        use tokenbridge::ch::schema::{self, ClusterSpec, Topology};
        let old = schema::Table {
            columns: &schema::MESSAGE_COLUMNS[..12],
            ..schema::TABLES[0]
        };
        let topology = Topology::Cluster(ClusterSpec {
            name: common::cluster::CLUSTER.into(),
            zookeeper_path: schema::DEFAULT_ZOOKEEPER_PATH.into(),
        });
        let (rt, c) = cluster.connect(0, db);
        rt.block_on(c.execute(&schema::create_database(db, &topology)))
            .unwrap();
        for sql in schema::create_table(db, &old, &topology) {
            rt.block_on(c.execute(&sql)).unwrap();
        }
    }

    // Hosts a and b are one person's two machines; c is someone else's.
    let hosts = [
        ("laptop-a", "ana", &a, 0),
        ("laptop-b", "ana", &b, 1),
        ("desk-c", "carl", &c, 2),
    ];
    let configs: Vec<_> = hosts
        .iter()
        .map(|(host, user, dir, node)| {
            cluster.write_config(
                &work.path().join(format!("daemon-{host}")),
                *node,
                db,
                dir,
                &format!("[source]\nhost = \"{host}\"\nuser = \"{user}\"\n"),
            )
        })
        .collect();
    // One after the other: host b's backfill finds the copied session's keys
    // that host a inserted, so it stays host a's.
    for cfg in &configs {
        let done = backfill(cfg, &[]);
        assert_eq!(done["complete"], true, "{done}");
    }
    // Every node's tables have every column now.
    for node in 0..4 {
        for table in ["messages", "messages_local"] {
            let n = cluster.count(
                node,
                db,
                &format!("SELECT count() FROM system.columns WHERE database = '{db}' AND table = '{table}'"),
            );
            assert_eq!(
                n as usize,
                tokenbridge::ch::schema::MESSAGE_COLUMNS.len(),
                "node {node} {table}"
            );
        }
    }
    let by_host = totals_by(&cluster, 3, db, "host");
    assert_eq!(by_host["laptop-a"], truth_a.totals);
    assert_eq!(
        by_host["laptop-b"], truth_b.totals,
        "the copied session counted again"
    );
    assert_eq!(by_host["desk-c"], truth_c.totals);

    // Then all three tail their folders at once: each appends to a session
    // of its own; a and b also to one synced session (the same lines).
    let daemons: Vec<Daemon> = configs
        .iter()
        .zip(&hosts)
        .map(|(cfg, (host, ..))| Daemon::start(cfg, &work.path().join(format!("{host}.log"))))
        .collect();
    for d in &daemons {
        assert!(
            wait_until(Duration::from_secs(60), || d
                .log_text()
                .contains("\"scan_completed\"")),
            "daemon did not start:\n{}",
            d.log_text()
        );
    }
    let lines = 15u64;
    for i in 0..lines {
        for (host, _, dir, _) in &hosts {
            append(
                &dir.join(format!("projects/live-{host}/live-{host}.jsonl")),
                usage_line(&format!("live-{host}"), i, 100 + i, 10),
            );
        }
        let synced = usage_line("synced", i, 1000, 1);
        append(&a.join("projects/synced/synced.jsonl"), &synced);
        append(&b.join("projects/synced/synced.jsonl"), &synced);
        std::thread::sleep(Duration::from_millis(40));
    }
    let own_in: u64 = (0..lines).map(|i| 100 + i).sum();
    let own = |t: &Tokens| plus(t, own_in, 10 * lines, lines);
    let expected = add(
        &add(&own(&truth_a.totals), &own(&truth_b.totals)),
        &plus(&own(&truth_c.totals), 1000 * lines, lines, lines),
    );
    assert!(
        wait_until(Duration::from_secs(90), || overall(&cluster, 0, db)
            == expected),
        "cluster totals {:?} never reached {expected:?}",
        overall(&cluster, 0, db)
    );
    // Summaries follow the rows: every session's, across both shards.
    let summed = |node| {
        cluster.count(
            node,
            db,
            &format!("SELECT toUInt64(sum(total_tokens)) FROM (SELECT total_tokens, updated_ms FROM {db}.sessions FINAL)"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(60), || summed(1)
            == expected.total_tokens),
        "session summaries hold {} tokens, rows {}",
        summed(1),
        expected.total_tokens
    );
    for d in daemons {
        assert!(d.stop().success());
    }

    // Exact per host (the synced session under one of its two hosts), per
    // user and overall, read through every node.
    for node in 0..4 {
        assert_eq!(overall(&cluster, node, db), expected, "through node {node}");
    }
    let by_host = totals_by(&cluster, 3, db, "host");
    assert_eq!(by_host["desk-c"], own(&truth_c.totals));
    let synced_on = |t: &Tokens| plus(t, 1000 * lines, lines, lines);
    let a_got = &by_host["laptop-a"];
    let b_got = &by_host["laptop-b"];
    assert!(
        (*a_got == synced_on(&own(&truth_a.totals)) && *b_got == own(&truth_b.totals))
            || (*a_got == own(&truth_a.totals) && *b_got == synced_on(&own(&truth_b.totals)))
            || add(a_got, b_got) == synced_on(&add(&own(&truth_a.totals), &own(&truth_b.totals))),
        "hosts a and b: {a_got:?} {b_got:?}"
    );
    let by_user = totals_by(&cluster, 2, db, "user");
    assert_eq!(
        by_user["ana"],
        synced_on(&add(&own(&truth_a.totals), &own(&truth_b.totals)))
    );
    assert_eq!(by_user["carl"], own(&truth_c.totals));
    assert_replicas_agree(&cluster, db, expected.messages);

    // A report through the cluster (row reads through FINAL) agrees.
    let out = bin()
        .args(["report", "daily", "--json", "--config"])
        .arg(&configs[2])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totals"]["totalTokens"], expected.total_tokens);
    let hosts_report = bin()
        .args(["report", "host", "--json", "--config"])
        .arg(&configs[0])
        .output()
        .unwrap();
    let hosts_report: serde_json::Value = serde_json::from_slice(&hosts_report.stdout).unwrap();
    assert_eq!(
        hosts_report["hosts"].as_array().map(Vec::len),
        Some(3),
        "{hosts_report}"
    );
}

#[test]
fn replica_down_daemon_killed_and_zookeeper_outage_stay_exact() {
    let mut cluster = TestCluster::start();
    let db = "tb_faults";
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus");
    let generated = generated_corpus(&corpus, 81, 1 << 20);
    // Plus many small messages, read in small batches: the ingest takes
    // long enough to be interrupted.
    let (sessions, per_session) = (40u64, 400u64);
    for s in 0..sessions {
        let text: String = (0..per_session)
            .map(|i| usage_line(&format!("bulk-{s}"), i, 1 + i % 7, 2))
            .collect();
        append(&corpus.join(format!("projects/bulk/bulk-{s}.jsonl")), text);
    }
    let bulk_input: u64 = sessions * (0..per_session).map(|i| 1 + i % 7).sum::<u64>();
    let n = sessions * per_session;
    let truth = plus(&generated.totals, bulk_input, 2 * n, n);
    let cfg = cluster.write_config(
        &work.path().join("daemon"),
        0,
        db,
        &corpus,
        "[source]\nhost = \"h1\"\n\n[batch]\nmax_rows = 200\nretry_initial_ms = 100\nretry_max_ms = 1000\n",
    );
    let log = work.path().join("daemon.log");
    let rows_in = |c: &TestCluster| c.count(0, db, &format!("SELECT count() FROM {db}.messages"));

    let daemon = Daemon::start(&cfg, &log);
    assert!(
        wait_until(Duration::from_secs(60), || rows_in(&cluster) > 0),
        "nothing arrived:\n{}",
        daemon.log_text()
    );
    // Killed in the middle of the ingest; while it is down, shard 1's second
    // replica goes away too: the restarted daemon's inserts go through the
    // Distributed table to the replica that is up.
    daemon.kill9();
    let before_kill = rows_in(&cluster);
    assert!(
        before_kill < truth.messages,
        "the ingest ended before the kill ({before_kill} of {} rows)",
        truth.messages
    );
    cluster.stop_node(1);
    let daemon = Daemon::start(&cfg, &log);
    assert!(
        wait_until(Duration::from_secs(120), || overall(&cluster, 0, db)
            == truth),
        "with a replica down: {:?} vs {:?}\n{}",
        overall(&cluster, 0, db),
        truth,
        daemon.log_text()
    );

    // ZooKeeper stops: the replicated tables turn read-only, inserts fail
    // and are retried; lines appended meanwhile land once it is back.
    cluster.zk.stop();
    let lines = 20u64;
    for i in 0..lines {
        append(
            &corpus.join("projects/outage/outage.jsonl"),
            usage_line("outage", i, 500, 5),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wait_until(Duration::from_secs(30), || daemon
            .log_text()
            .contains("\"insert_failed\"")),
        "no insert failed while zookeeper was down:\n{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_secs(28));
    assert_eq!(
        overall(&cluster, 0, db),
        truth,
        "rows landed while zookeeper was down"
    );
    cluster.zk.start_again();
    let expected = plus(&truth, 500 * lines, 5 * lines, lines);
    assert!(
        wait_until(Duration::from_secs(120), || overall(&cluster, 0, db)
            == expected),
        "after zookeeper returned: {:?} vs {expected:?}\n{}",
        overall(&cluster, 0, db),
        daemon.log_text()
    );
    assert!(daemon.stop().success());
    let events = events_of(&log);
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "batch_rejected" || e["event"] == "row_rejected"),
        "an outage was taken for bad data"
    );
    assert!(events.iter().any(|e| e["event"] == "clickhouse_recovered"));

    // The stopped replica returns and catches up with its shard (reads
    // through it are exact once it has).
    cluster.start_node(1);
    assert_replicas_agree(&cluster, db, expected.messages);
    assert_eq!(overall(&cluster, 1, db), expected);
}
