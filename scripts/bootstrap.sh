#!/bin/sh
# Installs the Debian 12 packages kring needs to build, test and fuzz; installs only what is missing.
set -eu
packages="build-essential cmake pkg-config git ca-certificates
libsodium-dev libzmq3-dev cppzmq-dev libsqlite3-dev sqlite3 libcereal-dev
doctest-dev libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libssl-dev libyaml-cpp-dev openssl
clang libclang-rt-14-dev curl
chromium chromium-driver python3-selenium
systemd dpkg-dev"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# npm (for axe-core and the fhir validator): Debian's, unless one is on the PATH already.
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing packages:$missing; run this as root (or install them)" >&2
    exit 1
  fi
  echo "bootstrap: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# axe-core for the portal's browser tests, into the project (tests/browser/node_modules, not committed).
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$root/tests/browser/node_modules/axe-core/axe.min.js" ]; then
  echo "bootstrap: installing axe-core into tests/browser" >&2
  (cd "$root/tests/browser" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
# The fhir package's R4 validator for the FHIR tests, into tests/fhir (not committed).
if [ ! -f "$root/tests/fhir/node_modules/fhir/validator.js" ]; then
  echo "bootstrap: installing the fhir validator into tests/fhir" >&2
  (cd "$root/tests/fhir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "bootstrap: all build and test dependencies present" >&2
