#!/usr/bin/env bash
# Build the .deb (and, with NFSHA_PKG_RPM=1, the .rpm) of nfsha.
#
# The binary is linked against glibc 2.28 (RHEL 8, Debian 10; Ubuntu 20.04 has 2.31) with
# cargo-zigbuild and the zig of the `ziglang` PyPI package, so it runs on the oldest
# distributions the deployments use, not only on the build host (Debian 12, glibc 2.36).
# Everything is written outside the source tree:
#   $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/nfsha             the binary
#   …/release/nfsha-generated/{man,completions,systemd}                     __generate-docs
#   …/release/nfsha-rpm/nfsha{,.debug}                                      stripped + debug info (rpm)
#   $CARGO_TARGET_DIR/debian/nfsha_<v>_amd64.deb, nfsha-dbgsym_<v>_amd64.ddeb
#   $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/generate-rpm/nfsha-<v>-1.x86_64.rpm (NFSHA_PKG_RPM=1)
# CARGO_TARGET_DIR defaults to /var/cache/nfsha-pkg/target. Tools missing on first use are
# installed: cargo-zigbuild and cargo-deb (cargo install --locked), ziglang (pip, into a
# venv under $NFSHA_PKG_CACHE, default /var/cache/nfsha-pkg), cargo-generate-rpm only for
# the rpm. Needs objcopy (binutils) for the debug symbols. The paths of the packages are
# printed last, one per line.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/nfsha-pkg/target}"
CACHE="${NFSHA_PKG_CACHE:-/var/cache/nfsha-pkg}"
TRIPLE=x86_64-unknown-linux-gnu
GLIBC=2.28
log() { echo "build.sh: $*" >&2; }
t0=$SECONDS

command -v objcopy >/dev/null || { log "objcopy missing: apt-get install binutils"; exit 1; }
command -v cargo-zigbuild >/dev/null || cargo install --locked cargo-zigbuild
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
if [[ "${NFSHA_PKG_RPM:-0}" == 1 ]]; then
  command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm
fi
if ! command -v zig >/dev/null; then
  if [[ ! -x "$CACHE/zig-venv/bin/python" ]]; then
    mkdir -p "$CACHE"
    python3 -m venv "$CACHE/zig-venv"
    "$CACHE/zig-venv/bin/pip" install -q ziglang
  fi
  zigdir=$("$CACHE/zig-venv/bin/python" -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')
  export PATH="$zigdir:$PATH"
fi
log "zig $(zig version), $(cargo-zigbuild --version 2>/dev/null || echo cargo-zigbuild)"

cargo zigbuild --release --locked -p nfsha --target "$TRIPLE.$GLIBC"
rel="$CARGO_TARGET_DIR/$TRIPLE/release"
log "binary built ($((SECONDS - t0)) s)"

# The binary must not need a newer glibc than $GLIBC: check its symbol versions.
newest=$(objdump -T "$rel/nfsha" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
log "newest glibc symbol version: $newest"
if [[ "$(printf '%s\n' "GLIBC_$GLIBC" "$newest" | sort -V | tail -1)" != "GLIBC_$GLIBC" ]]; then
  log "the binary needs $newest, newer than GLIBC_$GLIBC"
  exit 1
fi

rm -rf "$rel/nfsha-generated"
"$rel/nfsha" __generate-docs "$rel/nfsha-generated" >&2
# The unit cargo-deb installs (systemd-units reads it from the source tree) must be the one
# the binary renders.
cmp "$rel/nfsha-generated/systemd/nfsha-agent.service" packaging/systemd/nfsha-agent.service \
  || { log "packaging/systemd/nfsha-agent.service is stale: copy it from $rel/nfsha-generated/systemd/"; exit 1; }

rm -f "$CARGO_TARGET_DIR"/debian/nfsha*_*.deb "$CARGO_TARGET_DIR"/debian/nfsha*_*.ddeb
cargo deb -p nfsha --no-build --target "$TRIPLE" --output "$CARGO_TARGET_DIR/debian/" >&2
out=("$CARGO_TARGET_DIR"/debian/nfsha*_*.deb "$CARGO_TARGET_DIR"/debian/nfsha*_*.ddeb)

if [[ "${NFSHA_PKG_RPM:-0}" == 1 ]]; then
  mkdir -p "$rel/nfsha-rpm"
  objcopy --only-keep-debug --compress-debug-sections=zlib "$rel/nfsha" "$rel/nfsha-rpm/nfsha.debug"
  objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$rel/nfsha-rpm/nfsha.debug" \
    "$rel/nfsha" "$rel/nfsha-rpm/nfsha"
  rm -f "$CARGO_TARGET_DIR/$TRIPLE"/generate-rpm/nfsha-*.rpm
  cargo generate-rpm -p crates/nfsha --target "$TRIPLE" >&2
  out+=("$CARGO_TARGET_DIR/$TRIPLE"/generate-rpm/nfsha-*.rpm "$rel/nfsha-rpm/nfsha.debug")
fi
log "done ($((SECONDS - t0)) s)"
ls -1 "${out[@]}"
