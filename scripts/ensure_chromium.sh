#!/bin/sh
# Make sure headless Chromium is available for tests/test_report_browser.py.
# Idempotent: does nothing when /usr/bin/chromium exists. Installs the Debian
# packages chromium and chromium-driver only when running as root with apt-get.
# Never fails the caller: always exits 0 (the browser test skips, with a clear
# reason, when Chromium is still missing).
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "ensure_chromium: /usr/bin/chromium missing and not root; the browser test will skip" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no apt-get; the browser test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
{
    apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-wqy-microhei
} >/dev/null 2>&1 || {
    # fonts-wqy-microhei is only for legible Chinese in screenshots: retry without it.
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 ||
        echo "ensure_chromium: apt-get install chromium failed; the browser test will skip" >&2
}
exit 0
