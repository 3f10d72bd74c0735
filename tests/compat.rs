//! Modern ClickHouse: every statement the program sends, replayed on the
//! engines users run (23.x–26.x, embedded by the chdb packages that
//! `scripts/setup.sh` installs under `.tools/chdb/`), gives what it gives on
//! Debian's 18.16.
//!
//! The statements come from the program itself: the real binary runs a
//! migration from an older schema, two backfills (the second on a database
//! that already holds rows, so session summaries take their `IN` list form),
//! every report, `verify`, with `TOKENBRIDGE_SQL_LOG` on (see
//! `src/ch/statement_log.rs`). The log is then replayed statement by statement
//! on a fresh 18.16 database and on each modern engine
//! (`scripts/chdb_replay.py`); every statement must succeed everywhere, and
//! every query must return the same column types and the same rows
//! (integers exact, floats within 1e-9 relative, row order ignored). The
//! RowBinary inserts are replayed with the same rows as JSONEachRow.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// The chdb virtualenvs setup.sh made: (label, python).
fn engines() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/chdb");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.path().join("bin/python"),
                    )
                })
                .filter(|(_, p)| p.exists())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The installed engines, at least three of them; `None` (the test is
/// skipped) only when none is installed and `TOKENBRIDGE_SKIP_CHDB` is set.
fn required_engines() -> Option<Vec<(String, PathBuf)>> {
    let engines = engines();
    if engines.is_empty() && std::env::var_os("TOKENBRIDGE_SKIP_CHDB").is_some() {
        eprintln!("no chdb engines installed and TOKENBRIDGE_SKIP_CHDB set: skipped");
        return None;
    }
    assert!(
        engines.len() >= 3,
        "chdb engines missing under .tools/chdb (run scripts/setup.sh): {engines:?}"
    );
    Some(engines)
}

/// One statement's outcome, as both replayers report it.
#[derive(Debug, Clone)]
struct Outcome {
    ok: bool,
    error: String,
    types: Vec<String>,
    rows: Vec<Value>,
}

/// Sends `body` to the 18.16 server; its answer, or its error text.
fn post(url: &str, body: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.post(url).send(body).map_err(|e| e.to_string())?;
    let ok = r.status() == 200;
    let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    if ok {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Replays the log on 18.16, the reference.
fn replay_on_18(url: &str, log: &[Value]) -> Vec<Outcome> {
    let mut database = String::new();
    log.iter()
        .map(|entry| {
            let result = match entry["kind"].as_str().unwrap() {
                "execute" => {
                    let sql = entry["sql"].as_str().unwrap();
                    if let Some(db) = sql.strip_prefix("CREATE DATABASE IF NOT EXISTS ") {
                        database = db.to_string();
                    }
                    post(url, sql).map(|_| (Vec::new(), Vec::new()))
                }
                "query" => {
                    let sql = entry["sql"].as_str().unwrap();
                    post(url, &format!("{sql} FORMAT JSONCompact")).map(|text| {
                        let v: Value = serde_json::from_str(&text).unwrap();
                        let types = v["meta"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|m| m["type"].as_str().unwrap().to_string())
                            .collect();
                        (types, v["data"].as_array().unwrap().clone())
                    })
                }
                "insert" => {
                    let cols: Vec<&str> = entry["columns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c.as_str().unwrap())
                        .collect();
                    let rows: Vec<String> = entry["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(Value::to_string)
                        .collect();
                    let body = format!(
                        "INSERT INTO {database}.{} ({}) FORMAT JSONEachRow\n{}",
                        entry["table"].as_str().unwrap(),
                        cols.join(", "),
                        rows.join("\n")
                    );
                    post(url, &body).map(|_| (Vec::new(), Vec::new()))
                }
                other => panic!("unknown statement kind {other}"),
            };
            match result {
                Ok((types, rows)) => Outcome {
                    ok: true,
                    error: String::new(),
                    types,
                    rows,
                },
                Err(e) => Outcome {
                    ok: false,
                    error: e,
                    types: Vec::new(),
                    rows: Vec::new(),
                },
            }
        })
        .collect()
}

/// What `scripts/chdb_replay.py` is given.
enum ChdbInput<'a> {
    /// A statement log to replay.
    Log(&'a Path),
    /// Statements to parse and settings to send (its `--parse` mode).
    Parse(&'a Path),
}

/// Runs `scripts/chdb_replay.py` with one chdb: its version and the outcomes.
fn replay_on_chdb(python: &Path, input: ChdbInput<'_>, out: &Path) -> (String, Vec<Outcome>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/chdb_replay.py");
    let mut cmd = Command::new(python);
    cmd.arg(script);
    match input {
        ChdbInput::Log(log) => cmd.arg(log),
        ChdbInput::Parse(spec) => cmd.arg("--parse").arg(spec),
    };
    let st = cmd.arg(out).status().unwrap();
    assert!(st.success(), "{} failed: {st}", python.display());
    let text = std::fs::read_to_string(out).unwrap();
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let version = lines.next().unwrap()["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let outcomes = lines
        .map(|v| Outcome {
            ok: v["ok"].as_bool().unwrap(),
            error: v["error"].as_str().unwrap_or_default().to_string(),
            types: v["meta"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|p| p[1].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            rows: v["rows"].as_array().cloned().unwrap_or_default(),
        })
        .collect();
    (version, outcomes)
}

/// A value in one comparable form: 64-bit integers are quoted by some
/// versions' JSON output and not by others.
fn normal(v: &Value) -> Value {
    match v {
        Value::String(s) => match s.parse::<i128>() {
            Ok(n) => serde_json::json!(n as f64),
            Err(_) => v.clone(),
        },
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        other => other.clone(),
    }
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b))
        }
        _ => a == b,
    }
}

/// Rows compared as multisets (no statement relies on the order the server
/// returns rows in).
fn same_rows(a: &[Value], b: &[Value]) -> bool {
    let sort = |rows: &[Value]| {
        let mut v: Vec<Value> = rows.iter().map(normal).collect();
        v.sort_by_key(|r| r.to_string());
        v
    };
    let (a, b) = (sort(a), sort(b));
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| close(x, y))
}

/// Statements whose results are the environment's, not the data's.
fn environment_specific(sql: &str) -> bool {
    sql.contains("version()") || sql.contains("system.processes")
}

#[test]
fn the_programs_statements_give_the_same_results_on_modern_engines() {
    let Some(engines) = required_engines() else {
        return;
    };
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("statements.jsonl");
    let db = "tb_compat";

    // An older tokenbridge's schema: `messages` with the columns of its first
    // version, nothing else. The program migrates it.
    use tokenbridge::ch::schema::Topology;
    let (rt, c) = ch.client("default");
    let old = tokenbridge::ch::schema::Table {
        columns: &tokenbridge::ch::schema::MESSAGE_COLUMNS[..12],
        ..tokenbridge::ch::schema::TABLES[0]
    };
    let setup = [
        tokenbridge::ch::schema::create_database(db, &Topology::Single),
        tokenbridge::ch::schema::create_table(db, &old, &Topology::Single).remove(0),
    ];
    let mut text = String::new();
    for sql in &setup {
        rt.block_on(c.execute(sql)).unwrap();
        text += &(serde_json::json!({"kind": "execute", "sql": sql}).to_string() + "\n");
    }
    std::fs::write(&log, text).unwrap();

    // A generated corpus, plus sessions whose ids carry characters that SQL
    // text must escape or that the client once took for bind placeholders.
    let watch = work.path().join("claude");
    generated_corpus(&watch, 5, 1 << 20);
    let odd = watch.join("projects/odd");
    // (The last is written JSON-escaped: its id is `back\slash`.)
    for (i, session) in ["what?now", "it's", "back\\\\slash"].iter().enumerate() {
        append(
            &odd.join(format!("s{i}.jsonl")),
            usage_line(session, i, 10, 20),
        );
    }
    let cfg = write_config(work.path(), &ch, db, &[&watch], "");
    let run = |args: &[&str]| {
        let out = bin()
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .env(tokenbridge::ch::statement_log::ENV, &log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["backfill", "--json"]);
    // A second backfill on a database that holds rows: summaries name their
    // sessions in an `IN` list (the `?` one among them).
    append(&odd.join("s0.jsonl"), usage_line("what?now", 7, 1, 2));
    append(&odd.join("s3.jsonl"), usage_line("it's", 8, 3, 4));
    run(&["backfill", "--json"]);
    for kind in ["daily", "monthly", "session", "model"] {
        run(&["report", kind, "--json"]);
    }
    run(&["report", "totals", "--json"]);
    run(&["verify"]);

    // The test's own look at what the tables hold at the end.
    let mut text = std::fs::read_to_string(&log).unwrap();
    for (table, order) in [
        ("messages", "key"),
        ("file_naive", "session_id, file_key"),
        ("sessions", "session_id"),
        ("content", "session_id, key"),
    ] {
        let cols: Vec<&str> = tokenbridge::ch::schema::TABLES
            .iter()
            .find(|t| t.name == table)
            .unwrap()
            .columns
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != "ingested_at")
            .collect();
        let sql = format!(
            "SELECT {} FROM {db}.{table} FINAL ORDER BY {order}",
            cols.join(", ")
        );
        text += &(serde_json::json!({"kind": "query", "sql": sql}).to_string() + "\n");
    }
    std::fs::write(&log, &text).unwrap();
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds = |k: &str| entries.iter().filter(|e| e["kind"] == k).count();
    assert!(
        kinds("insert") >= 4 && kinds("query") >= 10,
        "{}",
        text.len()
    );
    let sqls: Vec<String> = entries
        .iter()
        .map(|e| e["sql"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        sqls.iter().any(|s| s.starts_with("ALTER TABLE")),
        "no migration"
    );
    assert!(
        sqls.iter()
            .any(|s| s.starts_with("INSERT INTO tb_compat.sessions") && s.contains("'what?now'")),
        "no summary with an IN list"
    );

    // On 18.16 itself the odd session ids were summarized: a `?` is text,
    // not a bind placeholder, and quotes are escaped.
    for (session, messages) in [("what?now", 2u64), ("it's", 2), ("back\\slash", 1)] {
        let sql = format!(
            "SELECT messages FROM {db}.sessions FINAL WHERE session_id = {}",
            tokenbridge::ch::schema::quote(session)
        );
        let got: Vec<u64> = rt.block_on(c.raw().query_raw(&sql).fetch_all()).unwrap();
        assert_eq!(got, vec![messages], "{session}");
    }

    // The reference: the same statements on a fresh 18.16 database.
    rt.block_on(c.execute(&format!("DROP DATABASE {db}")))
        .unwrap();
    let reference = replay_on_18(&format!("{}/", ch.url()), &entries);
    for (i, r) in reference.iter().enumerate() {
        assert!(r.ok, "18.16 refused #{i} {}: {}", sqls[i], r.error);
    }
    let totals = reference.len() - 4;
    assert!(
        !reference[totals].rows.is_empty(),
        "the final dump of messages is empty"
    );

    // Every engine in parallel: each loads a large library and works alone.
    let results: Vec<(String, String, Vec<Outcome>)> = std::thread::scope(|s| {
        let handles: Vec<_> = engines
            .iter()
            .map(|(label, python)| {
                let out = work.path().join(format!("{label}.out.jsonl"));
                let log = &log;
                s.spawn(move || {
                    let (version, outcomes) = replay_on_chdb(python, ChdbInput::Log(log), &out);
                    (label.clone(), version, outcomes)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut problems = Vec::new();
    for (label, version, outcomes) in &results {
        assert_eq!(outcomes.len(), reference.len(), "{label}");
        println!(
            "{label}: ClickHouse {version}, {} statements",
            outcomes.len()
        );
        for (i, (got, want)) in outcomes.iter().zip(&reference).enumerate() {
            let sql = &sqls[i];
            if !got.ok {
                // chdb embeds the engine without a server: no processes table
                // before 24.x. Real servers have it.
                if sql.contains("system.processes") && got.error.contains("system.processes") {
                    continue;
                }
                problems.push(format!(
                    "{label} ({version}) #{i} failed: {sql}\n  {}",
                    got.error
                ));
                continue;
            }
            if got.types != want.types {
                problems.push(format!(
                    "{label} ({version}) #{i} types {:?} vs 18.16 {:?}: {sql}",
                    got.types, want.types
                ));
            }
            if !environment_specific(sql) && !same_rows(&got.rows, &want.rows) {
                problems.push(format!(
                    "{label} ({version}) #{i} rows differ: {sql}\n  got  {:?}\n  18.16 {:?}",
                    got.rows.iter().take(3).collect::<Vec<_>>(),
                    want.rows.iter().take(3).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The sessions rows (summary statements on each engine) equal 18.16's.
    let sessions = &reference[reference.len() - 2];
    assert!(sessions.rows.len() > 3, "{:?}", sessions.rows);
}

/// Cluster mode on modern engines: an embedded engine cannot form a cluster
/// (tests/cluster.rs runs it on real 18.16 servers), so every statement that
/// only cluster mode sends (`ON CLUSTER` DDL, the replicated local tables,
/// the Distributed tables, an older cluster schema's migration) must parse
/// on each engine, and each setting the client adds on a cluster must be
/// known there with its value. Every other statement is the same in both
/// modes and replayed above. A broken statement is checked too, so a
/// replayer that missed errors would fail here.
#[test]
fn cluster_statements_parse_and_cluster_settings_are_known_on_modern_engines() {
    use tokenbridge::ch::schema::{self, ClusterColumns, ClusterSpec, Topology};
    let Some(engines) = required_engines() else {
        return;
    };
    let topology = Topology::Cluster(ClusterSpec {
        name: "tb-fleet".into(),
        zookeeper_path: schema::DEFAULT_ZOOKEEPER_PATH.into(),
    });
    let db = "tb_fleet";
    let mut statements = vec![schema::create_database(db, &topology)];
    for table in schema::TABLES {
        statements.extend(schema::create_table(db, table, &topology));
        // An older schema with only the first column on both parts: ALTERs
        // of the local table, the Distributed table dropped and made again.
        let first = vec![table.columns[0].0.to_string()];
        statements.extend(schema::cluster_migration(
            db,
            table,
            &topology,
            ClusterColumns {
                local: &first,
                distributed: &first,
            },
        ));
    }
    assert!(statements.iter().any(|s| s.contains("ALTER TABLE")));
    assert!(statements.iter().any(|s| s.starts_with("DROP TABLE")));
    let broken = "CREATE TABLE tb_fleet.x (key String) ENGINE = Log garbage";
    let settings = tokenbridge::ch::client::CLUSTER_SETTINGS;
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("cluster.json");
    let mut checked = statements.clone();
    checked.push(broken.to_string());
    std::fs::write(
        &spec,
        serde_json::json!({ "statements": checked, "settings": settings }).to_string(),
    )
    .unwrap();
    for (label, python) in &engines {
        let out = work.path().join(format!("{label}.jsonl"));
        let (version, outcomes) = replay_on_chdb(python, ChdbInput::Parse(&spec), &out);
        assert_eq!(outcomes.len(), checked.len() + settings.len(), "{label}");
        for (i, o) in outcomes.iter().enumerate() {
            let what = match i.checked_sub(checked.len()) {
                None => checked[i].clone(),
                Some(j) => format!("setting {} = {}", settings[j].0, settings[j].1),
            };
            if i + 1 == checked.len() {
                assert!(!o.ok, "{label} ({version}) accepted a broken statement");
            } else {
                assert!(o.ok, "{label} ({version}) refused {what}: {}", o.error);
            }
        }
        println!(
            "{label} ({version}): {} cluster statements parse, settings {settings:?} known",
            statements.len()
        );
    }
}

/// Session summaries for many sessions with long ids: the `IN` lists are cut
/// by bytes, so no statement exceeds the 262,144-byte `max_query_size` every
/// server defaults to (2,000 ids per statement, the old cut, reached ~250 KB
/// with 40-character ids, and the list appears up to three times).
#[test]
fn summaries_of_thousands_of_long_session_ids_fit_max_query_size() {
    let ch = TestClickHouse::start();
    let work = tempfile::tempdir().unwrap();
    let watch = work.path().join("claude");
    let db = "tb_longids";
    // One row first, so that the database is not empty at the next start and
    // summaries name their sessions.
    append(
        &watch.join("projects/p/first.jsonl"),
        usage_line("first", 0, 1, 1),
    );
    let cfg = write_config(work.path(), &ch, db, &[&watch], "");
    backfill(&cfg, &[]);
    let ids: Vec<String> = (0..3000)
        .map(|i| format!("{i:05}-{}", "s".repeat(120)))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        append(
            &watch.join(format!("projects/p/{i}.jsonl")),
            usage_line(id, i, 1, 1),
        );
    }
    let log = work.path().join("statements.jsonl");
    let out = bin()
        .args(["backfill", "--json", "--config"])
        .arg(&cfg)
        .env(tokenbridge::ch::statement_log::ENV, &log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summaries: Vec<usize> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("INSERT INTO tb_longids.sessions"))
        .map(str::len)
        .collect();
    assert!(summaries.len() > 1, "{summaries:?}");
    assert!(summaries.iter().all(|&n| n < 262_144), "{summaries:?}");
    let (rt, c) = ch.client(db);
    let n: u64 = rt
        .block_on(
            c.raw()
                .query(&format!("SELECT count() FROM {db}.sessions FINAL"))
                .fetch_one(),
        )
        .unwrap();
    assert_eq!(n, 3001);
}
