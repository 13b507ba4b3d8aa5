#!/usr/bin/env bash
# The whole check: lint, format, strict types, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
ruff check src tests examples bench
ruff format --check src tests examples bench
echo "== mypy (strict) on src"
mypy src
echo "== test peers"
# The code sandbox needs bubblewrap (Debian's package); install it where we can.
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
    || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1) \
    || echo "warning: could not install bubblewrap; sandbox tests use the unshare backend" >&2
fi
bash scripts/install-mcp-test-servers.sh
bash scripts/install-redis.sh
bash scripts/install-chromium.sh
echo "== pytest"
# Two workers: most tests wait on a server or a subprocess, so one core sits idle
# with one worker; PYTEST_WORKERS=0 runs them in this process. The order the
# groups are handed out in is tests/conftest.py's (LONGEST_FIRST), not xdist's.
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup --no-loadscope-reorder "$@"
