#!/bin/sh
# Installs the Debian 12 packages kring needs to build, test and fuzz; installs only what is missing.
set -eu
packages="build-essential cmake pkg-config git ca-certificates
libsodium-dev libzmq3-dev cppzmq-dev libsqlite3-dev sqlite3 libcereal-dev
doctest-dev libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libssl-dev libyaml-cpp-dev openssl
clang libclang-rt-14-dev curl"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
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
echo "bootstrap: all build dependencies present" >&2
