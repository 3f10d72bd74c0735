//! Offline prices per model: the coding-agent models of LiteLLM's price table
//! (`data/prices.json`, from the PyPI package `litellm`: Anthropic, OpenAI,
//! Google, xAI, …), embedded, optionally overridden by a price file in the
//! same format.
//!
//! Cost of one message, per token kind: the first 200,000 tokens at the base
//! rate and the rest at the `above_200k` rate where the table has one; 1-hour
//! cache writes at the table's 1-hour rate, else at 2x the input rate. An
//! unknown model costs 0 and is warned about once.
//!
//! Fast mode: a model named `<model>-fast` (how a Claude Code entry with
//! `usage.speed == "fast"` is stored, as ccusage shows it) is priced at its
//! base model's rates times the table's fast multiplier
//! (`provider_specific_entry.fast`), else Anthropic's published fast-mode
//! multiplier for the models LiteLLM lists without one ([`FAST_MODE`]), else 1.
//!
//! Which cost a report shows is a [`CostMode`]: calculated from the tokens, or
//! the `costUSD` older Claude Code versions recorded on each line.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;

const EMBEDDED: &str = include_str!("../data/prices.json");
const TIER: u64 = 200_000;

/// LiteLLM's provider prefixes tried, in this order, for a model an agent
/// names without one.
pub const PROVIDER_PREFIXES: &[&str] = &[
    "gemini/",
    "vertex_ai/",
    "dashscope/",
    "xai/",
    "moonshot/",
    "openai/",
];

/// Models agents name by an alias whose model (and price) changed over
/// time: the alias, then from which Unix ms which model it means (in
/// order). Kimi's `kimi-for-coding` is Kimi K2.5 up to 2026-04-20T15:28:10Z
/// and K2.6 after, the moment ccusage 20.0.24 switches (measured to the
/// 100 ms).
pub const DATED_ALIASES: &[(&str, &[(i64, &str)])] = &[(
    "kimi-for-coding",
    &[
        (i64::MIN, "moonshot/kimi-k2.5"),
        (1_776_698_890_001, "moonshot/kimi-k2.6"),
    ],
)];

/// The model a dated alias meant at `ts_ms` (the model itself otherwise).
pub fn resolve_alias(model: &str, ts_ms: i64) -> &str {
    DATED_ALIASES
        .iter()
        .find(|(alias, _)| *alias == model)
        .and_then(|(_, periods)| periods.iter().rev().find(|(from, _)| ts_ms >= *from))
        .map_or(model, |(_, m)| m)
}

/// The suffix of a model used in fast mode.
pub const FAST_SUFFIX: &str = "-fast";

/// Fast-mode multipliers Anthropic publishes for models whose LiteLLM entry
/// has none (Opus 4.6 and 4.7: $30/$150 per million input/output tokens, 6x
/// the standard rates); matched as prefixes of the base model's name.
pub const FAST_MODE: &[(&str, f64)] = &[("claude-opus-4-6", 6.0), ("claude-opus-4-7", 6.0)];

/// Which cost a report shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostMode {
    /// The recorded `costUSD` where the entry has one, else calculated.
    #[default]
    Auto,
    /// Always calculated from the tokens and the price table.
    Calculate,
    /// Only the recorded `costUSD` (0 where there is none).
    Display,
}

impl CostMode {
    /// The cost of an entry whose calculated cost is `calculated` and whose
    /// line recorded `recorded`.
    pub fn pick(self, recorded: Option<f64>, calculated: impl FnOnce() -> f64) -> f64 {
        match (self, recorded) {
            (CostMode::Auto | CostMode::Display, Some(r)) => r,
            (CostMode::Display, None) => 0.0,
            (CostMode::Auto | CostMode::Calculate, _) => calculated(),
        }
    }
}

impl std::str::FromStr for CostMode {
    type Err = String;
    fn from_str(s: &str) -> Result<CostMode, String> {
        match s {
            "auto" => Ok(CostMode::Auto),
            "calculate" => Ok(CostMode::Calculate),
            "display" => Ok(CostMode::Display),
            _ => Err(format!(
                "unknown cost mode {s:?}; known: auto, calculate, display"
            )),
        }
    }
}

/// The LiteLLM entry's provider-specific multipliers tokenbridge reads.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
pub struct ProviderSpecific {
    /// Fast mode's multiplier of every rate.
    #[serde(default)]
    pub fast: Option<f64>,
}

/// Rates of one model, USD per token.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
pub struct Price {
    /// Input.
    #[serde(rename = "input_cost_per_token")]
    pub input: f64,
    /// Output.
    #[serde(rename = "output_cost_per_token")]
    pub output: f64,
    /// 5-minute cache write.
    #[serde(rename = "cache_creation_input_token_cost", default)]
    pub cache_write: Option<f64>,
    /// 1-hour cache write.
    #[serde(rename = "cache_creation_input_token_cost_above_1hr", default)]
    pub cache_write_1h: Option<f64>,
    /// Cache read.
    #[serde(rename = "cache_read_input_token_cost", default)]
    pub cache_read: Option<f64>,
    /// Input beyond 200k tokens.
    #[serde(rename = "input_cost_per_token_above_200k_tokens", default)]
    pub input_above: Option<f64>,
    /// Output beyond 200k tokens.
    #[serde(rename = "output_cost_per_token_above_200k_tokens", default)]
    pub output_above: Option<f64>,
    /// Cache write beyond 200k tokens.
    #[serde(rename = "cache_creation_input_token_cost_above_200k_tokens", default)]
    pub cache_write_above: Option<f64>,
    /// Cache read beyond 200k tokens.
    #[serde(rename = "cache_read_input_token_cost_above_200k_tokens", default)]
    pub cache_read_above: Option<f64>,
    /// Provider-specific multipliers (fast mode).
    #[serde(rename = "provider_specific_entry", default)]
    pub provider: Option<ProviderSpecific>,
}

/// Token counts of one message, as priced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUse {
    /// input_tokens.
    pub input: u64,
    /// output_tokens.
    pub output: u64,
    /// cache_creation_input_tokens (5-minute and 1-hour together).
    pub cache_creation: u64,
    /// The 1-hour part of `cache_creation`.
    pub cache_creation_1h: u64,
    /// cache_read_input_tokens.
    pub cache_read: u64,
}

fn tiered(tokens: u64, base: f64, above: Option<f64>) -> f64 {
    match above {
        Some(a) if tokens > TIER => TIER as f64 * base + (tokens - TIER) as f64 * a,
        _ => tokens as f64 * base,
    }
}

impl Price {
    /// These rates times `k`.
    fn scaled(self, k: f64) -> Price {
        let m = |v: Option<f64>| v.map(|v| v * k);
        Price {
            input: self.input * k,
            output: self.output * k,
            cache_write: m(self.cache_write),
            cache_write_1h: m(self.cache_write_1h),
            cache_read: m(self.cache_read),
            input_above: m(self.input_above),
            output_above: m(self.output_above),
            cache_write_above: m(self.cache_write_above),
            cache_read_above: m(self.cache_read_above),
            provider: None,
        }
    }

    /// These rates without the beyond-200k tier: for a row that sums many
    /// requests (a Copilot snapshot), where no request's own size is known
    /// and the tier, which is per request, cannot be applied to the sum.
    pub fn flat(self) -> Price {
        Price {
            input_above: None,
            output_above: None,
            cache_write_above: None,
            cache_read_above: None,
            ..self
        }
    }

    /// Cost of one message in USD.
    pub fn cost(&self, u: &TokenUse) -> f64 {
        let one_hour = u.cache_creation_1h.min(u.cache_creation);
        let five_min = u.cache_creation - one_hour;
        tiered(u.input, self.input, self.input_above)
            + tiered(u.output, self.output, self.output_above)
            // No cache-write rate: 1.25x input, Anthropic's 5-minute
            // ratio (ccusage 20.0.24 charges the same).
            + tiered(
                five_min,
                self.cache_write.unwrap_or(1.25 * self.input),
                self.cache_write_above,
            )
            + one_hour as f64 * self.cache_write_1h.unwrap_or(2.0 * self.input)
            + tiered(
                u.cache_read,
                self.cache_read.unwrap_or(0.0),
                self.cache_read_above,
            )
    }
}

/// Errors loading a price file.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// Unreadable file.
    #[error("price file {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a LiteLLM-format price table.
    #[error("price file {file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Prices by model name.
#[derive(Debug)]
pub struct PriceTable {
    models: HashMap<String, Price>,
    warned: Mutex<HashSet<String>>,
}

fn parse_table(text: &str) -> Result<HashMap<String, Price>, String> {
    let raw: HashMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (name, v) in raw {
        if name.starts_with('_') || !v.is_object() {
            continue;
        }
        if let Ok(p) = serde_json::from_value::<Price>(v) {
            out.insert(name, p);
        }
    }
    Ok(out)
}

impl PriceTable {
    /// The embedded table.
    pub fn embedded() -> PriceTable {
        PriceTable {
            models: parse_table(EMBEDDED).expect("embedded price table"),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The embedded table with entries of `file` (LiteLLM's format) replacing
    /// or adding models.
    pub fn with_overrides(file: &Path) -> Result<PriceTable, PriceError> {
        let text = std::fs::read_to_string(file).map_err(|source| PriceError::Read {
            file: file.display().to_string(),
            source,
        })?;
        let extra = parse_table(&text).map_err(|message| PriceError::Parse {
            file: file.display().to_string(),
            message,
        })?;
        let mut t = PriceTable::embedded();
        t.models.extend(extra);
        Ok(t)
    }

    /// The price of `model`: its own entry, else Anthropic's listing of the
    /// same model on Bedrock (`anthropic.<model>-v…`), which LiteLLM keeps
    /// after it retires the direct entry; for `<model>-fast`, the base
    /// model's rates times its fast multiplier (see the module doc).
    pub fn lookup(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.base(model) {
            return Some(p);
        }
        let base_name = model.strip_suffix(FAST_SUFFIX)?;
        let base = self.base(base_name)?;
        let k = base
            .provider
            .and_then(|p| p.fast)
            .or_else(|| {
                FAST_MODE
                    .iter()
                    .find(|(prefix, _)| base_name.starts_with(prefix))
                    .map(|(_, k)| *k)
            })
            .unwrap_or(1.0);
        Some(base.scaled(k))
    }

    fn base(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.models.get(model) {
            return Some(*p);
        }
        let prefix = format!("anthropic.{model}-v");
        let mut keys: Vec<&String> = self
            .models
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .collect();
        keys.sort();
        if let Some(p) = keys.first().and_then(|k| self.models.get(*k)) {
            return Some(*p);
        }
        // Agents name models without the provider LiteLLM files them under
        // (`qwen-plus` is `dashscope/qwen-plus`), or with one it does not
        // use (`google/gemini-2.5-pro`).
        let bare = PROVIDER_PREFIXES
            .iter()
            .chain(["google/", "alibaba/", "qwen/", "anthropic/"].iter())
            .find_map(|p| model.strip_prefix(p))
            .filter(|b| !b.is_empty());
        if let Some(p) = bare.and_then(|b| self.models.get(b)) {
            return Some(*p);
        }
        let name = bare.unwrap_or(model);
        if let Some(p) = PROVIDER_PREFIXES
            .iter()
            .find_map(|p| self.models.get(&format!("{p}{name}")))
        {
            return Some(*p);
        }
        // Copilot writes Claude versions with dots (`claude-sonnet-4.5`).
        if name.starts_with("claude-") && name.contains('.') {
            return self.base(&name.replace('.', "-"));
        }
        None
    }

    pub fn lookup_or_warn(&self, model: &str) -> Option<Price> {
        let found = self.lookup(model);
        if found.is_none()
            && self
                .warned
                .lock()
                .expect("warned")
                .insert(model.to_string())
        {
            tracing::warn!(
                event = "model_price_unknown",
                model,
                "no price for this model; its cost counts as 0"
            );
        }
        found
    }

    /// Cost of one message; 0 (warned once) for an unknown model.
    pub fn cost(&self, model: &str, u: &TokenUse) -> f64 {
        self.lookup_or_warn(model).map_or(0.0, |p| p.cost(u))
    }

    /// The cost of `u` tokens of `model` used at `ts_ms` (dated aliases
    /// resolved, see [`DATED_ALIASES`]).
    pub fn cost_at(&self, model: &str, ts_ms: i64, u: &TokenUse) -> f64 {
        self.cost(resolve_alias(model, ts_ms), u)
    }

    /// The price a row of `agent` pays for `model` at `ts_ms`: dated aliases
    /// resolved, and flat for agents whose rows sum many requests.
    pub fn price_for(
        &self,
        agent: crate::format::agent::Agent,
        model: &str,
        ts_ms: i64,
    ) -> Option<Price> {
        let p = self.lookup_or_warn(resolve_alias(model, ts_ms))?;
        Some(if agent.sums_requests() { p.flat() } else { p })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(input: u64, output: u64, cc: u64, cc1h: u64, cr: u64) -> TokenUse {
        TokenUse {
            input,
            output,
            cache_creation: cc,
            cache_creation_1h: cc1h,
            cache_read: cr,
        }
    }

    #[test]
    fn rates_match_what_ccusage_charges() {
        // Per-token rates measured from ccusage 20.0.24 with single messages.
        let t = PriceTable::embedded();
        let s4 = "claude-sonnet-4-20250514";
        let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(near(t.cost(s4, &u(100_000, 0, 0, 0, 0)), 0.3));
        assert!(near(t.cost(s4, &u(0, 100_000, 0, 0, 0)), 1.5));
        assert!(near(t.cost(s4, &u(0, 0, 100_000, 0, 0)), 0.375));
        assert!(near(t.cost(s4, &u(0, 0, 0, 0, 100_000)), 0.03));
        assert!(near(t.cost(s4, &u(0, 0, 100_000, 100_000, 0)), 0.6));
        // 300k input: 200k at 3e-6, 100k at 6e-6.
        assert!(near(t.cost(s4, &u(300_000, 0, 0, 0, 0)), 1.2));
        // Retired direct entry: found through the Bedrock listing; 1h at 2x input.
        let h = "claude-3-5-haiku-20241022";
        assert!(near(t.cost(h, &u(100_000, 100_000, 0, 0, 0)), 0.08 + 0.4));
        assert!(near(t.cost(h, &u(0, 0, 100_000, 100_000, 0)), 0.16));
        assert!(near(
            t.cost("claude-opus-4-1-20250805", &u(0, 0, 100_000, 100_000, 0)),
            3.0
        ));
        assert!(near(
            t.cost("claude-haiku-4-5-20251001", &u(100_000, 0, 0, 0, 0)),
            0.1
        ));
    }

    #[test]
    fn rows_that_sum_requests_are_priced_flat() {
        use crate::format::agent::Agent;
        let t = PriceTable::embedded();
        let big = u(300_000, 0, 0, 0, 0);
        let tiered = t
            .price_for(Agent::Claude, "claude-sonnet-4-5-20250929-v1:0", 0)
            .unwrap();
        let flat = t
            .price_for(Agent::Copilot, "claude-sonnet-4-5-20250929-v1:0", 0)
            .unwrap();
        assert!((flat.cost(&big) - 0.9).abs() < 1e-9);
        assert!(tiered.cost(&big) > flat.cost(&big));
    }

    #[test]
    fn dated_aliases_follow_the_model_behind_them() {
        assert_eq!(
            resolve_alias("kimi-for-coding", 1_776_698_890_000),
            "moonshot/kimi-k2.5"
        );
        assert_eq!(
            resolve_alias("kimi-for-coding", 1_776_698_890_100),
            "moonshot/kimi-k2.6"
        );
        assert_eq!(resolve_alias("kimi-k2.6", 0), "kimi-k2.6");
        let t = PriceTable::embedded();
        let m = u(1_000_000, 0, 0, 0, 0);
        assert!((t.cost_at("kimi-for-coding", 1_770_000_000_000, &m) - 0.6).abs() < 1e-9);
        assert!((t.cost_at("kimi-for-coding", 1_790_000_000_000, &m) - 0.95).abs() < 1e-9);
    }

    #[test]
    fn models_named_without_their_provider_are_found() {
        let t = PriceTable::embedded();
        let one = u(1000, 1000, 0, 0, 0);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // dashscope/qwen-plus: 0.4 and 1.2 USD per million.
        assert!(near(t.cost("qwen-plus", &one), 0.0016));
        assert!(near(t.cost("alibaba/qwen-plus", &one), 0.0016));
        // Tiered only in LiteLLM: its first tier.
        assert!(near(t.cost("qwen3-coder-plus", &one), 0.006));
        assert_eq!(
            t.lookup("gemini-2.5-pro"),
            t.lookup("google/gemini-2.5-pro")
        );
        assert!(t.lookup("google/gemini-2.5-pro").is_some());
        assert!(t.lookup("dashscope/").is_none());
        assert_eq!(t.lookup("claude-sonnet-4.5"), t.lookup("claude-sonnet-4-5"));
        assert!(t.lookup("claude-sonnet-4.5").is_some());
        assert!(t.lookup("no-such-model").is_none());
    }

    #[test]
    fn fast_mode_is_priced_as_ccusage_charges_it() {
        // ccusage 20.0.24, 1,000 input + 1,000 output tokens per model.
        let t = PriceTable::embedded();
        let one = u(1000, 1000, 0, 0, 0);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(near(t.cost("claude-opus-4-6", &one), 0.03));
        assert!(near(t.cost("claude-opus-4-6-fast", &one), 0.18));
        assert!(near(t.cost("claude-opus-4-7-fast", &one), 0.18));
        assert!(near(t.cost("claude-opus-4-8-fast", &one), 0.06));
        assert!(near(t.cost("claude-opus-5-fast", &one), 0.06));
        assert!(near(t.cost("claude-sonnet-4-5-20250929-fast", &one), 0.018));
        assert!(near(t.cost("claude-haiku-4-5-20251001-fast", &one), 0.006));
        assert_eq!(t.cost("nothing-fast", &one), 0.0);
    }

    #[test]
    fn cost_modes_pick_recorded_or_calculated() {
        assert_eq!(CostMode::Auto.pick(Some(1.5), || 2.0), 1.5);
        assert_eq!(CostMode::Auto.pick(None, || 2.0), 2.0);
        assert_eq!(CostMode::Calculate.pick(Some(1.5), || 2.0), 2.0);
        assert_eq!(CostMode::Display.pick(Some(1.5), || 2.0), 1.5);
        assert_eq!(CostMode::Display.pick(None, || 2.0), 0.0);
        assert!("nope".parse::<CostMode>().is_err());
    }

    #[test]
    fn unknown_models_cost_nothing_and_overrides_apply() {
        let t = PriceTable::embedded();
        assert_eq!(t.cost("my-local-model", &u(1000, 1000, 0, 0, 0)), 0.0);
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.json");
        std::fs::write(&f, r#"{"my-local-model": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}"#).unwrap();
        let t = PriceTable::with_overrides(&f).unwrap();
        assert!((t.cost("my-local-model", &u(1000, 1000, 0, 0, 0)) - 3.0).abs() < 1e-9);
        std::fs::write(&f, "nope").unwrap();
        assert!(PriceTable::with_overrides(&f)
            .unwrap_err()
            .to_string()
            .contains("p.json"));
    }
}
