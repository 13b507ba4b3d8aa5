#!/usr/bin/env bash
# The whole check: lint, format, strict types, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
ruff check src tests examples bench
ruff format --check src tests examples bench
echo "== mypy (strict) on src"
mypy src
echo "== pytest"
python -m pytest "$@"
