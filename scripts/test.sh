#!/usr/bin/env bash
# The test command (README "Running the tests"): formatting, lints, every test tier,
# then the real-kernel NFS failover lab (seed Test 2 end to end).
#   NFSHA_SKIP_LAB=1  skip the lab tier (it needs qemu + debootstrap, ~10 min)
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

# Build prerequisites a fresh machine may lack (.ci/run installs them): stop here with the
# package to install rather than deep inside a dependency's build script.
missing=()
command -v protoc >/dev/null || missing+=("protoc (package protobuf-compiler)")
protoc_include=$(dirname "$(command -v protoc 2>/dev/null || echo /usr/bin/protoc)")/../include
[[ -f /usr/include/google/protobuf/descriptor.proto || -f $protoc_include/google/protobuf/descriptor.proto ]] \
  || missing+=("google/protobuf/descriptor.proto (package libprotobuf-dev)")
command -v cargo-nextest >/dev/null || missing+=("cargo-nextest (cargo install --locked cargo-nextest)")
if ((${#missing[@]})); then
  printf 'test.sh: a build prerequisite is missing: %s\n' "${missing[@]}" >&2
  echo "test.sh: install them (bash .ci/run does, with --no-install-recommends) and run again" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (deny warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit, FUSE, RPC, etcd and CLI tests"
cargo nextest run --workspace --locked --no-fail-fast

step "doc tests"
cargo test --workspace --doc --locked

step "lab result assembly (host-side, no VM)"
bash lab/tests/lab_finish.sh

if [[ "${NFSHA_SKIP_LAB:-0}" == 1 ]]; then
  echo "lab tier skipped because NFSHA_SKIP_LAB=1"
else
  step "real-kernel NFS lab: seed Test 2 failover end to end"
  bash lab/ci.sh
fi
