#!/usr/bin/env bash
# Installs Debian's chromium for the report's browser test (tests/test_report_browser.py), which
# renders the HTML report headless, checks its DOM and keeps a screenshot at reports/screenshot.png.
# Does nothing when /usr/bin/chromium is already there. Needs root (or sudo) and the Debian archive;
# recommended packages are skipped, the fonts the report renders with are named instead.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo > /dev/null; then
    as_root=(sudo)
else
    echo "install-chromium: /usr/bin/chromium is missing and installing it needs root (or sudo)" >&2
    exit 1
fi
echo "[install-chromium] installing Debian's chromium package ..."
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation fonts-dejavu-core > /dev/null
/usr/bin/chromium --version
