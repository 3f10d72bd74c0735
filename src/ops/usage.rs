//! Token and cost counters of the usage ClickHouse acknowledged, for
//! `/metrics`: what existing Grafana and Alertmanager setups graph, named to
//! line up with Claude Code's own OpenTelemetry metrics
//! (`claude_code.token.usage` by `type` = input / output / cacheRead /
//! cacheCreation, and `claude_code.cost.usage`).
//!
//! Labels are `agent` and `model`, plus `host`, `user` and `project` only
//! when `[http] usage_labels` asks for them: their values come from
//! transcripts, so the number of series is bounded (`MAX_SERIES`); label
//! sets beyond it are counted under `other`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::record::UsageRow;

/// Label sets kept before new ones are counted under `other`.
pub const MAX_SERIES: usize = 1_000;

/// An optional label of the usage counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// The row's host.
    Host,
    /// The row's user.
    User,
    /// The row's project.
    Project,
}

impl Label {
    /// The label's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Host => "host",
            Label::User => "user",
            Label::Project => "project",
        }
    }
}

/// One series' label values: agent, model, then the optional labels in
/// [`UsageCounters::labels`] order.
type Series = Vec<Arc<str>>;

/// Tokens by type and cost of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    /// Input (not cached).
    pub input: u64,
    /// Output.
    pub output: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes.
    pub cache_creation: u64,
    /// Cost in USD (calculated).
    pub cost_usd: f64,
}

/// The counters.
#[derive(Debug, Default)]
pub struct UsageCounters {
    labels: Mutex<Vec<Label>>,
    series: Mutex<BTreeMap<Series, Sums>>,
}

impl UsageCounters {
    /// Sets the optional labels (before anything is counted).
    pub fn set_labels(&self, labels: &[Label]) {
        let mut l = labels.to_vec();
        l.sort();
        l.dedup();
        *self.labels.lock().expect("labels") = l;
    }

    /// The optional labels, in order.
    pub fn labels(&self) -> Vec<Label> {
        self.labels.lock().expect("labels").clone()
    }

    /// Counts rows ClickHouse acknowledged.
    pub fn add(&self, rows: &[UsageRow]) {
        let labels = self.labels();
        let other: Arc<str> = Arc::from("other");
        let mut series = self.series.lock().expect("series");
        for r in rows {
            let mut key: Series = vec![r.agent.clone(), r.model.clone()];
            for l in &labels {
                key.push(match l {
                    Label::Host => r.host.clone(),
                    Label::User => r.user.clone(),
                    Label::Project => r.project.clone(),
                });
            }
            if !series.contains_key(&key) && series.len() >= MAX_SERIES {
                // Keep the agent; fold the rest.
                for v in key.iter_mut().skip(1) {
                    *v = other.clone();
                }
            }
            let s = series.entry(key).or_default();
            s.input += r.input_tokens;
            s.output += r.output_tokens;
            s.cache_read += r.cache_read_input_tokens;
            s.cache_creation += r.cache_creation_input_tokens;
            s.cost_usd += r.cost_usd;
        }
    }

    /// Every series: label values, then sums.
    pub fn snapshot(&self) -> Vec<(Vec<Arc<str>>, Sums)> {
        let series = self.series.lock().expect("series");
        series.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, project: &str, input: u64) -> UsageRow {
        UsageRow {
            key: String::new(),
            version: 0,
            ts: 0,
            ts_ms: 0,
            session_id: "s".into(),
            project: project.into(),
            is_sidechain: 0,
            agent_id: "".into(),
            model: model.into(),
            message_id: String::new(),
            request_id: String::new(),
            entry_type: "assistant".into(),
            input_tokens: input,
            output_tokens: 2,
            cache_creation_input_tokens: 3,
            cache_creation_5m_tokens: 3,
            cache_creation_1h_tokens: 0,
            cache_read_input_tokens: 4,
            web_search_requests: 0,
            web_fetch_requests: 0,
            service_tier: "".into(),
            cwd: "".into(),
            git_branch: "".into(),
            cc_version: "".into(),
            source_file: "".into(),
            source_offset: 0,
            cost_usd: 0.5,
            agent: "claude".into(),
            reasoning_tokens: 0,
            recorded_cost_usd: None,
            host: "h".into(),
            user: "u".into(),
        }
    }

    #[test]
    fn series_by_agent_and_model_and_only_the_asked_labels() {
        let c = UsageCounters::default();
        c.add(&[
            row("m1", "p1", 1),
            row("m1", "p2", 10),
            row("m2", "p1", 100),
        ]);
        let s = c.snapshot();
        assert_eq!(s.len(), 2, "projects are not a label unless asked");
        assert_eq!(s[0].1.input, 11);
        assert_eq!(s[0].1.cost_usd, 1.0);
        let c = UsageCounters::default();
        c.set_labels(&[Label::Project]);
        c.add(&[row("m1", "p1", 1), row("m1", "p2", 10)]);
        assert_eq!(c.snapshot().len(), 2);
    }

    #[test]
    fn series_beyond_the_bound_are_counted_as_other() {
        let c = UsageCounters::default();
        c.set_labels(&[Label::Project]);
        let rows: Vec<UsageRow> = (0..MAX_SERIES + 50)
            .map(|i| row("m", &format!("p{i}"), 1))
            .collect();
        c.add(&rows);
        let s = c.snapshot();
        assert_eq!(s.len(), MAX_SERIES + 1);
        let other = s.iter().find(|(k, _)| &*k[2] == "other").unwrap();
        assert_eq!(other.1.input, 50);
        assert_eq!(
            s.iter().map(|(_, v)| v.input).sum::<u64>(),
            (MAX_SERIES + 50) as u64
        );
    }
}
