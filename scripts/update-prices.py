#!/usr/bin/env python3
"""Regenerates data/claude-prices.json from the LiteLLM price table that the
PyPI package `litellm` ships (model_prices_and_context_window_backup.json).

Usage: scripts/update-prices.py [LITELLM_VERSION]   (default: the pinned one)

Keeps the Claude models sold by Anthropic directly (`claude-*`) and on Bedrock
(`anthropic.claude-*`), which the price lookup falls back to for models whose
direct entry LiteLLM has retired, and only the cost fields tokenbridge uses.
"""
import io, json, subprocess, sys, tempfile, zipfile, pathlib

VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.109.1"
FIELDS = [
    "input_cost_per_token", "output_cost_per_token",
    "cache_creation_input_token_cost", "cache_creation_input_token_cost_above_1hr",
    "cache_read_input_token_cost",
    "input_cost_per_token_above_200k_tokens", "output_cost_per_token_above_200k_tokens",
    "cache_creation_input_token_cost_above_200k_tokens", "cache_read_input_token_cost_above_200k_tokens",
]

with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"litellm=={VERSION}", "-d", d], check=True)
    wheel = next(pathlib.Path(d).glob("litellm-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        table = json.load(io.BytesIO(z.read("litellm/model_prices_and_context_window_backup.json")))

out = {"_source": f"litellm {VERSION} model_prices_and_context_window_backup.json (Claude subset)"}
for name in sorted(table):
    if not (name.startswith("claude-") or name.startswith("anthropic.claude-")):
        continue
    entry = {k: table[name][k] for k in FIELDS if isinstance(table[name].get(k), (int, float))}
    if "input_cost_per_token" in entry and "output_cost_per_token" in entry:
        out[name] = entry
path = pathlib.Path(__file__).resolve().parent.parent / "data" / "claude-prices.json"
path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
print(f"{path}: {len(out) - 1} models")
