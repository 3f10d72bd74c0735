//! The command line: argument definitions and what each subcommand does.
//! `main.rs` only calls [`main`]; this is the one place that uses `anyhow`
//! for errors that end the process.

mod backfill;
mod daemon;
mod dashboard;
mod report;
mod signals;
mod token;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};

/// tokenbridge: exact, deduplicated Claude Code token usage in ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "tokenbridge", version, about)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "TOKENBRIDGE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM/SIGINT.
    Run,
    /// Ingest everything present now, wait until ClickHouse acknowledged it, exit.
    Backfill {
        /// Files or folders (default: every configured agent's folders).
        paths: Vec<PathBuf>,
        /// Whose files the given paths hold (default: claude).
        #[arg(long, default_value = "claude")]
        agent: crate::format::agent::Agent,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read results from ClickHouse.
    Report {
        /// Which report.
        #[command(subcommand)]
        kind: ReportKind,
    },
    /// Validate the config file and print the effective settings.
    CheckConfig,
    /// Usage straight from files, no ClickHouse: `scan [PATH...] daily|monthly|session|model`.
    Scan {
        /// Files or folders (default: the configured watch folders), then the report kind.
        #[arg(required = true, value_name = "PATH... KIND")]
        items: Vec<String>,
        /// Report options.
        #[command(flatten)]
        opts: ReportOpts,
        /// Also estimate content tokens by category (`heuristic` or `o200k`),
        /// as `[analysis] enhanced = true` does in the daemon.
        #[arg(long, value_name = "ESTIMATOR")]
        analysis: Option<crate::format::estimate::EstimatorKind>,
    },
    /// The upstream access token.
    Token {
        /// What to show.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Serve the dashboard alone: from the configured ClickHouse, or with
    /// `--files` straight from transcripts (no database).
    Dashboard {
        /// Address to serve on (loopback unless `[dashboard] token_file` is set).
        #[arg(long, default_value = "127.0.0.1:9465")]
        listen: std::net::SocketAddr,
        /// Transcript files or folders to read instead of ClickHouse.
        #[arg(long = "files", value_name = "PATH")]
        files: Vec<PathBuf>,
        /// Whose files `--files` holds (default: claude).
        #[arg(long, default_value = "claude")]
        agent: crate::format::agent::Agent,
    },
    /// Recount the watched files offline and compare with ClickHouse per session.
    Verify {
        /// Only this session.
        #[arg(long)]
        session: Option<String>,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Source, age and expiry of the cached token (never the token).
    Status,
}

/// Options shared by `report` and `scan`.
#[derive(Debug, clap::Args)]
pub struct ReportOpts {
    /// JSON in ccusage's shape.
    #[arg(long)]
    pub json: bool,
    /// First day (YYYY-MM-DD or YYYYMMDD).
    #[arg(long)]
    pub since: Option<String>,
    /// Last day (YYYY-MM-DD or YYYYMMDD).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this project (the folder under projects/).
    #[arg(long)]
    pub project: Option<String>,
    /// UTC (default) or an offset like +02:00.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Only this agent's usage, in its ccusage shape (`ccusage codex …` for
    /// `codex`). For `scan PATH...`, also the agent whose files the paths
    /// hold (default `claude`).
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<crate::format::agent::Agent>,
    /// Cost: `auto` (a line's recorded `costUSD` where it has one, else
    /// calculated), `calculate` or `display` (recorded only). Default: the
    /// config's `[pricing] mode`, else `auto`.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<crate::price::CostMode>,
    /// Only this host's usage (`[source] host`, or the spool folder).
    #[arg(long)]
    pub host: Option<String>,
    /// Only this user's usage.
    #[arg(long)]
    pub user: Option<String>,
    /// `weekly`: the first day of a week (sunday, as ccusage, … saturday).
    #[arg(long, default_value = "sunday", value_name = "DAY")]
    pub start_of_week: String,
    /// `blocks`: window length in hours.
    #[arg(long, default_value_t = 5.0, value_name = "HOURS")]
    pub session_length: f64,
    /// `blocks`: only the active block.
    #[arg(long)]
    pub active: bool,
    /// `blocks`: compare the active block's projection with this many
    /// tokens, or `max` (the most an earlier block used).
    #[arg(long, value_name = "TOKENS")]
    pub token_limit: Option<crate::report::blocks::TokenLimit>,
}

/// Reports.
#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// Exact deduplicated totals.
    Totals {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// By day.
    Daily(ReportOpts),
    /// By month.
    Monthly(ReportOpts),
    /// By session.
    Session(ReportOpts),
    /// By model.
    Model(ReportOpts),
    /// By host.
    Host(ReportOpts),
    /// By user.
    User(ReportOpts),
    /// By week.
    Weekly(ReportOpts),
    /// Billing blocks (5-hour windows), as ccusage's `blocks`.
    Blocks(ReportOpts),
}

/// Parses arguments and runs the command. Returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(event = "fatal_error", error = %format!("{e:#}"), "tokenbridge stopped");
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// The config file, validated.
fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::CheckConfig => {
            let c = load_config(&cli.config)?;
            println!("{}: ok", c.source.display());
            println!("{c:#?}");
            Ok(0)
        }
        Command::Run => daemon::run(&cli.config),
        Command::Backfill { paths, json, agent } => {
            let sources = paths
                .into_iter()
                .map(|p| crate::ingest::discovery::Source::new(agent, p))
                .collect();
            backfill::run(&cli.config, sources, json)
        }
        Command::Report { kind } => report::run(&cli.config, kind),
        Command::Dashboard {
            listen,
            files,
            agent,
        } => dashboard::run(&cli.config, listen, files, agent),
        Command::Scan {
            items,
            opts,
            analysis,
        } => report::scan(&cli.config, &items, &opts, analysis),
        Command::Token {
            action: TokenAction::Status,
        } => token::status(&load_config(&cli.config)?),
        Command::Verify { session } => {
            let c = load_config(&cli.config)?;
            crate::ops::logging::init(crate::config::LogLevel::Warn, c.log.format);
            verify::run(&c, session.as_deref())
        }
    }
}
