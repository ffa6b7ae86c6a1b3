#!/usr/bin/env bash
# Makes sure Rust's standard library for the build target that .cargo/config.toml names
# (x86_64-unknown-linux-musl; CARGO_BUILD_TARGET overrides it) is installed: with rustup, adds
# it if missing (a download, once); without rustup, says what is missing. Prints nothing when
# it is there.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_BUILD_TARGET:-$(sed -n 's/^target = "\(.*\)"$/\1/p' "$repo/.cargo/config.toml")}
cd "$repo"
sysroot=$(rustc --print sysroot)
if [ -d "$sysroot/lib/rustlib/$target/lib" ]; then exit 0; fi
if command -v rustup >/dev/null; then
    rustup target add "$target" >&2
else
    echo "rust-target: the standard library for $target is missing from $sysroot and there is" \
        "no rustup to add it (.cargo/config.toml says why the shim is built for it)" >&2
    exit 1
fi
