#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` and `llama-bench` from the llama.cpp source that the
# llama-cpp-python sdist vendors (the same revision the game's local backend runs), once per
# machine. The binaries go to a cache folder outside the repo; later runs find them and return
# at once. Prints the folder that holds the binaries on its last line.
#
#   scripts/build-llama-tools.sh            # build if missing, print the bin folder
#   LLAMA_TOOLS_DIR=/somewhere scripts/...  # another cache folder
#
# CMAKE_ARGS (the Makefile exports the CPU flags it uses for llama-cpp-python) are passed on.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"
FLAGS="${CMAKE_ARGS:-}"
KEY="$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-12)"
ROOT="${LLAMA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/metharme-adventure/llama-tools}"
DEST="$ROOT/$VERSION-$KEY"

if [[ -x "$DEST/bin/llama-server" && -x "$DEST/bin/llama-bench" ]]; then
    echo "$DEST/bin"
    exit 0
fi

mkdir -p "$ROOT"
WORK="$(mktemp -d "$ROOT/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# pip's cache keeps the sdist, so this downloads only on a fresh machine.
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps \
    "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

# shellcheck disable=SC2086  # FLAGS is a list of -D options
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF $FLAGS >&2
cmake --build "$WORK/build" --target llama-server llama-bench \
    -j "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" >&2

# Install atomically: a half-built folder is never mistaken for a finished one.
mkdir -p "$WORK/out/bin"
cp "$WORK/build/bin/llama-server" "$WORK/build/bin/llama-bench" "$WORK/out/bin/"
rm -rf "$DEST"
mv "$WORK/out" "$DEST"
echo "$DEST/bin"
