#!/usr/bin/env bash
# Install the npm MCP reference server the tests in tests/mcp talk to, into
# .cache/mcp-servers (git-ignored). Idempotent: does nothing when the pinned version
# is already there. Takes a few seconds on a fresh machine. No node/npm: says so and
# exits 0, and the tests that need the server skip with that reason.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@modelcontextprotocol/server-everything"
VERSION="2026.8.31"
DEST="${MCP_TEST_SERVERS_DIR:-.cache/mcp-servers}"
MANIFEST="$DEST/node_modules/$PACKAGE/package.json"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-mcp-test-servers: node/npm not found; the npm MCP server tests will skip" >&2
  exit 0
fi
if [ -f "$MANIFEST" ] && node -e "process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)" "$(pwd)/$MANIFEST" "$VERSION"; then
  exit 0
fi
mkdir -p "$DEST"
# --prefix keeps it out of any global or project node_modules; no lock file to commit.
npm install --prefix "$DEST" --no-audit --no-fund --no-package-lock --loglevel=error \
  "$PACKAGE@$VERSION" >&2
echo "install-mcp-test-servers: $PACKAGE@$VERSION in $DEST" >&2
