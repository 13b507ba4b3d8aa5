#!/usr/bin/env bash
# LiteLLM's proxy, for the side-by-side gateway benchmark only (bench/bench_openai_proxies.py).
# It goes in its own virtualenv under .cache/ because its pinned dependencies would
# fight ours; nothing in llmagentos imports it. The version is pinned (and is not the
# compromised 1.107.0 release).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/litellm-venv
if [ -x "$VENV/bin/litellm" ]; then exit 0; fi
python -m venv "$VENV"
"$VENV/bin/pip" install -q "litellm[proxy]==1.106.4"
echo "LiteLLM proxy installed in $VENV"
