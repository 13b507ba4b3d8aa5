#!/usr/bin/env bash
# Redis for the gateway's shared rate-limit tests: Debian's redis-server, installed only
# when missing and we are root with apt. Anything else is a warning, never a failure:
# the tests skip with a clear reason when redis-server is absent.
set -uo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "warning: redis-server is missing and cannot be installed here (needs root and apt);" \
    "the Redis rate-limit tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1 \
  || (apt-get update -qq >/dev/null 2>&1 \
    && apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1) \
  || echo "warning: could not install redis-server; the Redis rate-limit tests will skip" >&2
# The package may start a system-wide server on 6379; the tests start their own on a
# free port, so that one is left as the package manager set it up.
exit 0
