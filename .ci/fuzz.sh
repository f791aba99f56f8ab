#!/usr/bin/env bash
# Short fuzz runs of every fuzz target, one after another. Each target's
# seeds (f.Add and testdata/fuzz/<Name>/) also run in the normal `go test`.
# A failing input is written to the package's testdata/fuzz/<Name>/: commit
# it with the fix, so that it stays a regression test.
#
# FUZZTIME overrides the time per target (default 20s).
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-20s}"
targets=(
	"./internal/resp FuzzRequestReader"
	"./zdb FuzzIndexEntry"
	"./zdb FuzzDataEntry"
	"./zdb FuzzOpenFiles"
	"./zstor/pipeline FuzzDecodeChunk"
)

status=0
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== fuzz $name ($pkg, $fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
		echo "FAIL: fuzz $name found a failing input (see $pkg/testdata/fuzz/$name/)" >&2
		status=1
	fi
done
exit $status
