#!/bin/sh
# Makes the npm solcjs (WebAssembly solc) usable as py-solc-x's `solc_binary`.
#
# Why a wrapper: solcjs prints a ">>> Cannot retry compilation with SMT" line before the
# JSON, and its stdout is cut at 64 KiB when it is a pipe (the process exits before the
# pipe drains), so the output goes to a temporary file first and is printed from there.
set -u
here=$(cd "$(dirname "$0")" && pwd)
solcjs="$here/../node_modules/solc/solc.js"
if [ ! -f "$solcjs" ]; then
    echo "solcjs not found at $solcjs; run 'npm install' in the repository root" >&2
    exit 127
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT INT TERM
node "$solcjs" "$@" >"$out"
status=$?
# py-solc-x reads the version from "--version" output ("0.8.28+commit.7893614a..."), which
# solcjs already prints in that form; filtering keeps the SMT notice out of it too.
grep -v '^>>> Cannot retry compilation with SMT' "$out"
exit "$status"
