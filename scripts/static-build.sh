#!/usr/bin/env bash
# Builds statically linked reflow-peer and reflow-discovery for a musl target,
# for hosts without a (matching) glibc: small embedded Linux systems, scratch
# containers.
#
#     scripts/static-build.sh x86_64-unknown-linux-musl
#     scripts/static-build.sh aarch64-unknown-linux-musl
#
# The target's standard library must be installed first
# (`rustup target add TARGET`); the script checks and says so if it is not.
# The dependencies are pure Rust, so no C cross-compiler is needed: for a
# target other than the host's architecture the link is done by `rust-lld`,
# which ships with the toolchain, against the musl C library and start-up
# objects that come with the target. A linker set by the caller
# (CARGO_TARGET_<TRIPLE>_LINKER) is kept.
#
# The binaries land in target/TARGET/release/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: $0 TARGET   (x86_64-unknown-linux-musl or aarch64-unknown-linux-musl)" >&2
    exit 2
}

[ $# -eq 1 ] || usage
target=$1
case "$target" in
    -h | --help) usage ;;
    *-linux-musl*) ;;
    *)
        echo "error: $target is not a musl target; a static build needs *-unknown-linux-musl" >&2
        exit 2
        ;;
esac

if ! command -v rustup >/dev/null 2>&1; then
    echo "error: rustup not found; it is needed to check and install the $target standard library" >&2
    exit 1
fi
if ! rustup target list --installed | grep -qx "$target"; then
    echo "error: the Rust target $target is not installed for this toolchain." >&2
    echo "Install it (needs access to static.rust-lang.org) with:" >&2
    echo "" >&2
    echo "    rustup target add $target" >&2
    echo "" >&2
    echo "then run this script again." >&2
    exit 1
fi

host_arch=$(uname -m)
target_arch=${target%%-*}
linker_var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER"
if [ "$target_arch" != "$host_arch" ] && [ -z "${!linker_var:-}" ]; then
    export "$linker_var"=rust-lld
    echo "linking with rust-lld ($linker_var)"
fi

cargo build --release --bins --target "$target"

for bin in reflow-peer reflow-discovery; do
    path="target/$target/release/$bin"
    printf '%-44s %9d bytes\n' "$path" "$(stat -c %s "$path")"
    if command -v file >/dev/null 2>&1; then
        file -b "$path" | sed 's/^/    /'
    fi
done
