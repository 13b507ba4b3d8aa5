#!/usr/bin/env bash
# Chromium for the dashboard's browser tests: Debian's chromium, installed only when
# missing and we are root with apt (Playwright drives it through executable_path; its
# own browser download cannot work offline). Anything else is a warning, never a
# failure: the browser tests skip with a clear reason when /usr/bin/chromium is absent.
set -uo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "warning: chromium is missing and cannot be installed here (needs root and apt);" \
    "the dashboard's browser tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
  || (apt-get update -qq >/dev/null 2>&1 \
    && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1) \
  || echo "warning: could not install chromium; the dashboard's browser tests will skip" >&2
exit 0
