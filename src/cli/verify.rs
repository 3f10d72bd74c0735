//! `tokenbridge verify`: recount the watched files offline and compare with
//! ClickHouse, session by session.

use crate::config::Config;
use crate::pipeline;

/// Recounts the watched files and compares per session with ClickHouse.
pub(super) fn run(c: &Config, only: Option<&str>) -> anyhow::Result<i32> {
    use std::collections::BTreeMap;
    type Sums = (u64, u64, u64, u64, u64);
    let add = |m: &mut BTreeMap<String, Sums>, s: &str, i: u64, o: u64, cc: u64, cr: u64| {
        let e = m.entry(s.to_string()).or_default();
        *e = (e.0 + i, e.1 + o, e.2 + cc, e.3 + cr, e.4 + 1);
    };
    let out = crate::report::scan::scan(
        &c.sources(),
        c.watch.max_line_bytes,
        None,
        &crate::ingest::attribution::Attributor::new(c.attribution.clone()),
    );
    let mut files: BTreeMap<String, Sums> = BTreeMap::new();
    for r in &out.rows {
        add(
            &mut files,
            &r.session_id,
            r.input_tokens,
            r.output_tokens,
            r.cache_creation_input_tokens,
            r.cache_read_input_tokens,
        );
    }
    let (conn, _state) = pipeline::connect_for_query(c)?;
    let mut db: BTreeMap<String, Sums> = BTreeMap::new();
    for e in conn.runtime.block_on(conn.client.report_entries())? {
        add(
            &mut db,
            &e.session_id,
            e.usage.input,
            e.usage.output,
            e.usage.cache_creation,
            e.usage.cache_read,
        );
    }
    let mut sessions: Vec<&String> = files.keys().chain(db.keys()).collect();
    sessions.sort();
    sessions.dedup();
    let mut bad = 0;
    let show = |s: &Sums| {
        format!(
            "input={} output={} cache_write={} cache_read={} messages={}",
            s.0, s.1, s.2, s.3, s.4
        )
    };
    for s in sessions {
        if only.is_some_and(|o| o != s) {
            continue;
        }
        let (f, d) = (
            files.get(s).copied().unwrap_or_default(),
            db.get(s).copied().unwrap_or_default(),
        );
        if f != d {
            bad += 1;
            println!(
                "session {s} differs:\n  files:      {}\n  clickhouse: {}",
                show(&f),
                show(&d)
            );
        }
    }
    let checked = if only.is_some() {
        1
    } else {
        files.len().max(db.len())
    };
    if bad == 0 {
        println!(
            "verify: {checked} sessions match ({} files, {} messages)",
            out.files,
            out.rows.len()
        );
        Ok(0)
    } else {
        println!("verify: {bad} of {checked} sessions differ");
        Ok(1)
    }
}
