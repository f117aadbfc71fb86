#!/usr/bin/env bash
# Build the .deb and .rpm: release binary, man pages + completions + unit, then
# cargo-deb and cargo-generate-rpm (installed on first use). Output paths are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm
cargo build --release --locked -p nfsha
"$target/release/nfsha" __generate-docs packaging/generated
cargo deb -p nfsha --no-build
cargo generate-rpm -p crates/nfsha
ls -1 "$target"/debian/*.deb "$target"/generate-rpm/*.rpm
