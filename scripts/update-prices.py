#!/usr/bin/env python3
"""Regenerates data/prices.json from the LiteLLM price table that the PyPI
package `litellm` ships (model_prices_and_context_window_backup.json).

Usage: scripts/update-prices.py [LITELLM_VERSION]   (default: the pinned one)

Keeps the chat models of the providers whose coding agents tokenbridge reads:
Anthropic (`claude-*`, and Bedrock's `anthropic.claude-*`, which the price lookup
falls back to for models whose direct entry LiteLLM has retired), OpenAI
(`gpt-*`, `o1*`, `o3*`, `o4*`, `codex-*`), Google (`gemini-*`, `gemini/`,
`vertex_ai/`), xAI (`xai/`), Moonshot (`moonshot/`), Alibaba (`dashscope/`,
`qwen*`), OpenRouter's listings of those, and only the cost fields tokenbridge
uses. A model priced only by prompt-size tiers gets its first tier's rates.
"""
import io, json, subprocess, sys, tempfile, zipfile, pathlib

VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.109.1"
FIELDS = [
    "input_cost_per_token", "output_cost_per_token",
    "cache_creation_input_token_cost", "cache_creation_input_token_cost_above_1hr",
    "cache_read_input_token_cost",
    "input_cost_per_token_above_200k_tokens", "output_cost_per_token_above_200k_tokens",
    "cache_creation_input_token_cost_above_200k_tokens", "cache_read_input_token_cost_above_200k_tokens",
    "input_cost_per_token_priority", "output_cost_per_token_priority", "cache_read_input_token_cost_priority",
]
PREFIXES = ("claude-", "anthropic.claude-", "gpt-", "o1", "o3", "o4", "codex-", "chatgpt-",
            "gemini-", "gemini/", "vertex_ai/gemini", "google/", "xai/", "grok-", "moonshot/", "kimi-",
            "dashscope/", "qwen", "openrouter/")
OPENROUTER = ("openrouter/anthropic/", "openrouter/openai/", "openrouter/google/", "openrouter/x-ai/",
              "openrouter/moonshotai/", "openrouter/qwen/")

with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"litellm=={VERSION}", "-d", d], check=True)
    wheel = next(pathlib.Path(d).glob("litellm-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        table = json.load(io.BytesIO(z.read("litellm/model_prices_and_context_window_backup.json")))

out = {"_source": f"litellm {VERSION} model_prices_and_context_window_backup.json (coding-agent models)"}
for name in sorted(table):
    if not name.startswith(PREFIXES):
        continue
    if name.startswith("openrouter/") and not name.startswith(OPENROUTER):
        continue
    if table[name].get("mode", "chat") not in ("chat", "responses"):
        continue
    src = table[name]
    # Models priced only by prompt-size tiers (Alibaba's qwen3-coder-plus…):
    # the first tier's rates, which is what ccusage 20.0.24 charges at any size.
    tiers = src.get("tiered_pricing")
    if "input_cost_per_token" not in src and isinstance(tiers, list) and tiers and isinstance(tiers[0], dict):
        src = {**src, **tiers[0]}
    entry = {k: src[k] for k in FIELDS if isinstance(src.get(k), (int, float))}
    # Fast mode's multiplier (Anthropic's fast mode), the only provider-specific
    # entry tokenbridge reads.
    fast = (table[name].get("provider_specific_entry") or {}).get("fast")
    if isinstance(fast, (int, float)):
        entry["provider_specific_entry"] = {"fast": fast}
    if "input_cost_per_token" in entry and "output_cost_per_token" in entry:
        out[name] = entry
path = pathlib.Path(__file__).resolve().parent.parent / "data" / "prices.json"
path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
print(f"{path}: {len(out) - 1} models")
