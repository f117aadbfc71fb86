#!/usr/bin/env bash
# test-install.sh [DEB]: install the built .deb into fresh Debian root filesystems and check
# that it works there. For each suite (NFSHA_PKG_SUITES, default "bookworm bullseye"):
#   - a fresh root: debootstrap --variant=minbase (+ systemd, nfs-common, procps: what every
#     non-minimal Debian has and the package depends on), cached as a
#     tarball under $NFSHA_PKG_CACHE (default /var/cache/nfsha-pkg), unpacked anew per run;
#   - dpkg -i the package (its maintainer scripts run; the agent must stay disabled);
#   - nfsha --version, nfsha config check on the shipped example and on the conffile;
#   - systemd-analyze verify of the installed unit (the host's systemd-analyze, --root);
#   - the binary is stripped and needs no newer glibc than the root has;
#   - /etc/nfsha/nfsha.toml is a conffile: a local edit survives reinstalling, `remove`
#     keeps it, `purge` deletes it.
# Why bullseye as the oldest: it is the oldest release the reachable Debian mirror still
# has (glibc 2.31); buster (glibc 2.28, as RHEL 8) is only on archive.debian.org. The 2.28
# floor itself is checked on the binary's symbol versions (objdump -T), here and in
# build.sh. Set NFSHA_PKG_SUITES="bookworm buster" with NFSHA_PKG_MIRROR pointing at an
# archive mirror to run it on buster.
# DEB defaults to the newest $CARGO_TARGET_DIR/debian/nfsha_*.deb (packaging/build.sh).
# Needs root, debootstrap, systemd (systemd-analyze), binutils. Exit 0 only if every check
# of every suite passed; each check prints "ok" or "FAIL".
set -euo pipefail
CACHE="${NFSHA_PKG_CACHE:-/var/cache/nfsha-pkg}"
MIRROR="${NFSHA_PKG_MIRROR:-http://deb.debian.org/debian}"
SUITES="${NFSHA_PKG_SUITES:-bookworm bullseye}"
INCLUDE=systemd,nfs-common,procps
RECIPE=1
TARGET="${CARGO_TARGET_DIR:-/var/cache/nfsha-pkg/target}"
deb="${1:-$(ls -t "$TARGET"/debian/nfsha_*.deb 2>/dev/null | head -1 || true)}"
[[ -f "$deb" ]] || { echo "test-install: no .deb (run packaging/build.sh, or pass its path)" >&2; exit 2; }
for tool in debootstrap systemd-analyze objdump readelf dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "test-install: $tool missing (apt-get install debootstrap systemd binutils)" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "test-install: needs root (debootstrap, chroot)" >&2; exit 2; }

failures=0
trap 'echo "test-install: aborted at line $LINENO" >&2' ERR
check() { # name, then the command (argument vector)
  local name=$1; shift
  if "$@" >"$work/check.out" 2>&1; then
    echo "  ok    $name"
  else
    echo "  FAIL  $name"; sed 's/^/        /' "$work/check.out"; failures=$((failures + 1))
  fi
}
elapsed() { echo "$((SECONDS - $1)) s"; }
in_root() { chroot "$root" "$@"; }

mkdir -p "$CACHE/debs" "$CACHE/tmp"
echo "test-install: $deb ($(stat -c %s "$deb") bytes)"
for suite in $SUITES; do
  t0=$SECONDS
  key=$(printf '%s\n' "$suite" "$INCLUDE" "$MIRROR" "$RECIPE" | sha256sum | cut -c1-16)
  base="$CACHE/rootfs-$suite-$key.tar"
  work=$(mktemp -d "$CACHE/tmp/test-install-$suite.XXXXXX")
  root="$work/root"
  trap 'rm -rf "$work"' EXIT
  if [[ ! -f "$base" ]]; then
    echo "test-install: $suite: debootstrap (cached in $base)"
    debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$INCLUDE" \
      "$suite" "$work/boot" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
      || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
    tar -C "$work/boot" -cf "$base.tmp" . && mv "$base.tmp" "$base"
    rm -rf "$work/boot"
  fi
  mkdir "$root"
  tar -C "$root" -xf "$base"
  glibc=$(in_root ldd --version | sed -n 1p)
  echo "test-install: $suite: fresh root ($(elapsed "$t0")), $glibc"
  cp "$deb" "$root/tmp/nfsha.deb"

  check "dpkg -i (maintainer scripts)" in_root dpkg -i /tmp/nfsha.deb
  check "nfsha --version" in_root /usr/bin/nfsha --version
  in_root /usr/bin/nfsha --version | sed 's/^/        /' || true
  check "config check on the example" \
    in_root /usr/bin/nfsha config check --config /usr/share/doc/nfsha/nfsha.toml.example
  check "config check on /etc/nfsha/nfsha.toml" in_root /usr/bin/nfsha config check
  check "systemd-analyze verify nfsha-agent.service" \
    systemd-analyze verify --root="$root" --man=no nfsha-agent.service
  check "unit installed by the package, none in /etc" \
    bash -c '[[ -f "$1/usr/lib/systemd/system/nfsha-agent.service" && ! -e "$1/etc/systemd/system/nfsha-agent.service" ]]' _ "$root"
  check "agent not enabled by the install" \
    bash -c '! ls "$1"/etc/systemd/system/*.wants/nfsha-agent.service 2>/dev/null | grep -q .' _ "$root"
  check "maintainer scripts come from cargo-deb's systemd support" \
    bash -c 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./postinst | grep -q deb-systemd-helper' _ "$deb"
  check "man pages and completions installed" \
    test -s "$root/usr/share/man/man5/nfsha.toml.5" -a -s "$root/usr/share/man/man1/nfsha-agent.1" \
    -a -s "$root/usr/share/bash-completion/completions/nfsha"
  check "unit's ExecReload /bin/kill present (procps dependency)" test -x "$root/bin/kill"
  check "binary stripped (no .debug_info)" \
    bash -c '! readelf -S "$1" | grep -q "\.debug_info"' _ "$root/usr/bin/nfsha"
  need=$(objdump -T "$root/usr/bin/nfsha" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  have=GLIBC_$(in_root ldd --version | sed -n 1p | grep -o '[0-9]\+\.[0-9]\+$')
  echo "        $(stat -c %s "$root/usr/bin/nfsha") bytes, needs $need, root has $have"
  check "needs at most GLIBC_2.28 ($need)" \
    bash -c '[[ "$(printf "%s\n" GLIBC_2.28 "$1" | sort -V | tail -1)" == GLIBC_2.28 ]]' _ "$need"
  check "conffile listed" \
    bash -c 'chroot "$1" dpkg-query -W -f="\${Conffiles}" nfsha | grep -q "/etc/nfsha/nfsha.toml"' _ "$root"
  echo "# local edit" >>"$root/etc/nfsha/nfsha.toml"
  check "reinstall keeps an edited conffile" \
    bash -c 'chroot "$1" dpkg -i --force-confold /tmp/nfsha.deb && grep -q "# local edit" "$1/etc/nfsha/nfsha.toml"' _ "$root"
  check "remove keeps the conffile" \
    bash -c 'chroot "$1" dpkg -r nfsha && [[ -f "$1/etc/nfsha/nfsha.toml" && ! -e "$1/usr/bin/nfsha" ]]' _ "$root"
  check "purge deletes it" \
    bash -c 'chroot "$1" dpkg -P nfsha && [[ ! -e "$1/etc/nfsha/nfsha.toml" ]]' _ "$root"
  rm -rf "$work"
  trap - EXIT
  echo "test-install: $suite done ($(elapsed "$t0"))"
done
if ((failures)); then
  echo "test-install: $failures check(s) FAILED"
  exit 1
fi
echo "test-install: all checks passed"
