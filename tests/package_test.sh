#!/bin/sh
# Builds the Debian package from the already-built tree and checks it: files, modes, control data, maintainer scripts, and the systemd unit (systemd-analyze verify and security, offline: no running systemd needed).
# Usage: package_test.sh CPACK BUILD_DIR
set -eu
cpack=$1
build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "package_test: $*" >&2; exit 1; }

(cd "$work" && "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$work" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log" >&2; fail "cpack failed"; }
deb=$(ls "$work"/kring_*.deb) || fail "no .deb built"

# Control data: name, dependencies found from the binary, the maintainer scripts and the conffile.
dpkg-deb -I "$deb" >"$work/info"
grep -q '^ Package: kring$' "$work/info" || fail "package is not named kring"
for dep in adduser libzmq5 libsodium23 libsqlite3-0 libssl3; do
  grep '^ Depends:' "$work/info" | grep -q "$dep" || fail "Depends lacks $dep"
done
for script in postinst prerm postrm conffiles; do
  grep -q " $script" "$work/info" || fail "control archive lacks $script"
done
dpkg-deb -e "$deb" "$work/control"
[ "$(cat "$work/control/conffiles")" = /etc/kring/kring.toml ] || fail "conffiles is not /etc/kring/kring.toml"
for script in postinst prerm postrm; do
  sh -n "$work/control/$script" || fail "$script is not valid sh"
done

# What postinst does, with the commands that change the system replaced by
# stand-ins that record their arguments (this test must not add users).
shims="$work/shims"
mkdir -p "$shims"
for cmd in addgroup adduser install chown chmod systemctl; do
  printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$cmd" "$work/calls" >"$shims/$cmd"
done
printf '#!/bin/sh\nexit "${GETENT_RC:-2}"\n' >"$shims/getent"
chmod +x "$shims"/*
GETENT_RC=2 PATH="$shims:$PATH" sh "$work/control/postinst" configure || fail "postinst configure failed"
grep -qx 'addgroup --system --quiet kring' "$work/calls" || fail "postinst does not create the group kring"
grep -q '^adduser --system --quiet --ingroup kring --home /var/lib/kring --no-create-home --shell /usr/sbin/nologin .* kring$' \
  "$work/calls" || fail "postinst does not create the system user kring"
grep -qx 'install -d -o kring -g kring -m 0700 /var/lib/kring' "$work/calls" || fail "postinst does not make /var/lib/kring owner-only"
grep -qx 'install -d -o root -g kring -m 0750 /etc/kring' "$work/calls" || fail "postinst does not make /etc/kring root:kring 0750"
rm "$work/calls"
GETENT_RC=0 PATH="$shims:$PATH" sh "$work/control/postinst" configure 0.0.9 || fail "postinst upgrade failed"
! grep -q '^add' "$work/calls" || fail "postinst creates the user again on upgrade"
PATH="$shims:$PATH" sh "$work/control/prerm" remove || fail "prerm failed"
PATH="$shims:$PATH" sh "$work/control/postrm" purge 2>/dev/null || fail "postrm failed"

# Contents and modes.
dpkg-deb -c "$deb" >"$work/contents"
expect() {  # MODE PATH
  grep -q "^$1 root/root .* \./$2\$" "$work/contents" || { cat "$work/contents" >&2; fail "no $2 with mode $1"; }
}
expect '-rwxr-xr-x' usr/bin/kring-node
expect '-rw-r--r--' usr/lib/systemd/system/kring-node.service
expect '-rw-r-----' etc/kring/kring.toml
expect 'drwx------' var/lib/kring/
expect '-rw-r--r--' usr/share/kring/prometheus/kring-alerts.yml
for doc in README.md operations.md api.md api.yaml protocol.md threat-model.md kring.toml; do
  expect '-rw-r--r--' "usr/share/doc/kring/$doc"
done

# The packaged binary runs and reads the packaged example configuration.
root="$work/root"
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/kring-node" --version | grep -q '^kring-node ' || fail "kring-node --version"
KRING_DATA="$work/node" "$root/usr/bin/kring-node" init --org package-test --name "Package test" >/dev/null 2>&1 ||
  fail "kring-node init"
KRING_DATA="$work/node" "$root/usr/bin/kring-node" peer list --config "$root/etc/kring/kring.toml" >/dev/null ||
  fail "peer list with the packaged kring.toml"

# The unit, as the package installs it.
unit="$root/usr/lib/systemd/system/kring-node.service"
for line in 'Type=simple' 'Restart=on-failure' 'User=kring' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/kring' \
            'NoNewPrivileges=yes' 'PrivateTmp=yes' 'ExecStart=/usr/bin/kring-node run --config /etc/kring/kring.toml'; do
  grep -qx "$line" "$unit" || fail "unit lacks $line"
done
# systemd-analyze verify resolves the unit's dependencies (sysinit.target...)
# and its ExecStart inside --root: give it the host's unit files beside the
# package's files. It reports a bad setting on stderr but still exits 0, so
# any output fails the test.
cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
mkdir -p "$root/etc/systemd/system"
if ! systemd-analyze verify --root="$root" --man=no /usr/lib/systemd/system/kring-node.service >"$work/verify" 2>&1 ||
   [ -s "$work/verify" ]; then
  cat "$work/verify" >&2
  fail "systemd-analyze verify rejects the unit"
fi
# The hardening, scored by systemd itself (0 = fully locked down, 10 = none).
systemd-analyze security --offline=true --root="$root" kring-node.service >"$work/security" 2>&1 ||
  { cat "$work/security" >&2; fail "systemd-analyze security failed"; }
exposure=$(sed -n 's/.*Overall exposure level for kring-node.service: \([0-9.]*\).*/\1/p' "$work/security")
[ -n "$exposure" ] || { cat "$work/security" >&2; fail "no exposure level"; }
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || { cat "$work/security" >&2; fail "exposure $exposure above 2.0"; }
echo "package_test: $(basename "$deb") ok; unit verified, exposure $exposure"
