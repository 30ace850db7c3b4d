#!/usr/bin/env bash
# Debian's Chromium and its WebDriver for the browser test (`make test-browser`); run as root.
# Selenium is given the driver's path, so nothing is looked up or downloaded at test time.
set -euo pipefail
missing=()
for package in chromium chromium-driver; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
