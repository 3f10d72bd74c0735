//! `tokenbridge report` (from ClickHouse) and `tokenbridge scan` (from the
//! files, no ClickHouse): the same reports in ccusage's shapes.

use std::path::Path;

use super::{ReportKind, ReportOpts};
use crate::config::Config;
use crate::ingest::discovery::Source;
use crate::pipeline;

/// `report KIND` with the config at `config_path`.
pub(super) fn run(config_path: &Path, kind: ReportKind) -> anyhow::Result<i32> {
    let c = super::load_config(config_path)?;
    crate::ops::logging::init(
        if std::env::var_os("RUST_LOG").is_some() {
            c.log.level
        } else {
            crate::config::LogLevel::Warn
        },
        c.log.format,
    );
    match kind {
        ReportKind::Totals { json } => {
            let t = pipeline::totals(&c)?;
            if json {
                println!("{}", serde_json::to_string(&t)?);
            } else {
                println!("input tokens           {:>16}", t.input_tokens);
                println!("output tokens          {:>16}", t.output_tokens);
                println!("cache creation tokens  {:>16}", t.cache_creation_tokens);
                println!("cache read tokens      {:>16}", t.cache_read_tokens);
                println!("total tokens           {:>16}", t.total_tokens);
                println!("messages               {:>16}", t.messages);
            }
            Ok(0)
        }
        ReportKind::Daily(o) => report_from_clickhouse(&c, crate::report::Kind::Daily, &o),
        ReportKind::Monthly(o) => report_from_clickhouse(&c, crate::report::Kind::Monthly, &o),
        ReportKind::Session(o) => report_from_clickhouse(&c, crate::report::Kind::Session, &o),
        ReportKind::Model(o) => report_from_clickhouse(&c, crate::report::Kind::Model, &o),
        ReportKind::Host(o) => report_from_clickhouse(&c, crate::report::Kind::Host, &o),
        ReportKind::User(o) => report_from_clickhouse(&c, crate::report::Kind::User, &o),
        ReportKind::Weekly(o) => report_from_clickhouse(&c, crate::report::Kind::Weekly, &o),
        ReportKind::Blocks(o) => report_from_clickhouse(&c, crate::report::Kind::Blocks, &o),
    }
}

/// `scan [PATH...] KIND`: `items` are the paths then the kind.
pub(super) fn scan(
    config_path: &Path,
    items: &[String],
    opts: &ReportOpts,
    analysis: Option<crate::format::estimate::EstimatorKind>,
) -> anyhow::Result<i32> {
    crate::ops::logging::init(
        crate::config::LogLevel::Warn,
        crate::config::LogFormat::Text,
    );
    let (kind, paths) = items.split_last().expect("clap requires one item");
    let kind: crate::report::Kind = kind.parse().map_err(anyhow::Error::msg)?;
    let (sources, prices, max_line, mode, policy): (Vec<Source>, _, _, _, _) = if paths.is_empty() {
        let c = super::load_config(config_path)?;
        let sources = c
            .sources()
            .into_iter()
            .filter(|s| opts.agent.is_none_or(|a| a == s.agent))
            .collect();
        (
            sources,
            prices_for(Some(&c))?,
            c.watch.max_line_bytes,
            c.cost_mode,
            c.attribution.clone(),
        )
    } else {
        let agent = opts.agent.unwrap_or_default();
        (
            paths.iter().map(|p| Source::new(agent, p)).collect(),
            prices_for(None)?,
            64 << 20,
            crate::price::CostMode::default(),
            crate::ingest::attribution::Policy::default(),
        )
    };
    let estimator = analysis.map(crate::format::estimate::Estimator::new);
    let out = crate::report::scan::scan(
        &sources,
        max_line,
        estimator,
        &crate::ingest::attribution::Attributor::new(policy),
    );
    for (p, e) in &out.errors {
        eprintln!("warning: {}: {e}", p.display());
    }
    let entries: Vec<crate::report::Entry> = out.rows.iter().map(Into::into).collect();
    let extra = analysis.map(|k| analysis_json(&out, k));
    print_report(&entries, kind, opts, &prices, mode, extra.as_ref())?;
    if let (Some(k), false) = (analysis, opts.json) {
        print_analysis_table(&out, k);
    }
    Ok(0)
}

fn prices_for(config: Option<&Config>) -> anyhow::Result<crate::price::PriceTable> {
    match config.and_then(|c| c.price_file.as_ref()) {
        Some(f) => Ok(crate::price::PriceTable::with_overrides(f)?),
        None => Ok(crate::price::PriceTable::embedded()),
    }
}

/// Prints the report; `configured` is the config's cost mode (`--mode`
/// wins).
fn print_report(
    entries: &[crate::report::Entry],
    kind: crate::report::Kind,
    opts: &ReportOpts,
    prices: &crate::price::PriceTable,
    configured: crate::price::CostMode,
    extra: Option<&serde_json::Value>,
) -> anyhow::Result<i32> {
    let filter = crate::report::Filter {
        since: opts.since.clone(),
        until: opts.until.clone(),
        project: opts.project.clone(),
        agent: opts.agent,
        host: opts.host.clone(),
        user: opts.user.clone(),
        cost_mode: opts.mode.unwrap_or(configured),
        tz_offset_min: crate::report::parse_timezone(&opts.timezone).map_err(anyhow::Error::msg)?,
        start_of_week: crate::report::parse_weekday(&opts.start_of_week)
            .map_err(anyhow::Error::msg)?,
        blocks: crate::report::blocks::BlockOptions {
            session_hours: opts.session_length,
            active_only: opts.active,
            token_limit: opts.token_limit,
            now_ms: crate::ops::logging::unix_ms(),
        },
    };
    let report = crate::report::build(entries, kind, &filter, prices);
    if opts.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra) {
            obj.insert("analysis".to_string(), extra.clone());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", crate::report::table(&report, kind));
    }
    Ok(0)
}

/// Content estimates and naive totals of a whole scan.
struct ScanAnalysis {
    all: crate::format::claude::content::ContentTotals,
    naive: u64,
    dedup: u64,
    reported_output: u64,
}

fn scan_analysis(out: &crate::report::scan::ScanOutput) -> ScanAnalysis {
    let mut all = crate::format::claude::content::ContentTotals::default();
    for t in out.content.values() {
        all.merge(t);
    }
    ScanAnalysis {
        all,
        naive: out.naive.values().map(|t| t.total_tokens).sum(),
        dedup: out.rows.iter().map(|r| r.total_tokens()).sum(),
        reported_output: out.rows.iter().map(|r| r.output_tokens).sum(),
    }
}

/// The `analysis` member `scan --analysis … --json` adds to the report.
fn analysis_json(
    out: &crate::report::scan::ScanOutput,
    kind: crate::format::estimate::EstimatorKind,
) -> serde_json::Value {
    let a = scan_analysis(out);
    serde_json::json!({
        "estimator": kind.to_string(),
        "content": a.all,
        "estimatedAssistantOutput": a.all.assistant_output(),
        "reportedOutputTokens": a.reported_output,
        "naiveTotalTokens": a.naive,
        "totalTokens": a.dedup,
    })
}

fn print_analysis_table(
    out: &crate::report::scan::ScanOutput,
    kind: crate::format::estimate::EstimatorKind,
) {
    let ScanAnalysis {
        all,
        naive,
        dedup,
        reported_output,
    } = scan_analysis(out);
    println!("\ncontent tokens, estimated ({kind})   main          sidechain");
    let (m, s) = (&all.main, &all.sidechain);
    for (name, a, b) in [
        ("user prompts", m.user_prompt, s.user_prompt),
        ("tool results", m.tool_result, s.tool_result),
        ("assistant text", m.assistant_text, s.assistant_text),
        ("thinking", m.thinking, s.thinking),
        ("tool use input", m.tool_use, s.tool_use),
        ("system / meta", m.system, s.system),
    ] {
        println!("  {name:<32} {a:>12} {b:>12}");
    }
    println!(
        "estimated assistant output {} vs reported output_tokens {}",
        all.assistant_output(),
        reported_output
    );
    println!("naive sum of every line {naive} vs deduplicated {dedup}");
}

fn report_from_clickhouse(
    c: &Config,
    kind: crate::report::Kind,
    opts: &ReportOpts,
) -> anyhow::Result<i32> {
    let (conn, _state) = pipeline::connect_for_query(c)?;
    let entries = conn.runtime.block_on(conn.client.report_entries())?;
    print_report(
        &entries,
        kind,
        opts,
        &prices_for(Some(c))?,
        c.cost_mode,
        None,
    )
}
