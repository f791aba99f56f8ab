#!/usr/bin/env bash
# bench/run-all.sh — build zdb once, then run bench/zdb.sh (throughput against
# redis-server) and bench/zdbmem (memory per key, reopen time).
#
#   bench/run-all.sh                  # prints everything
#   BENCH_OUT=results.md bench/run-all.sh   # also one markdown file with both
#   ZDBMEM_ARGS="-mode seq" bench/run-all.sh
#
# Any variable of bench/zdb.sh (ROUNDS, ZDB_ARGS, ...) passes through.
# Exit status: non-zero if either benchmark reported a problem.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_OUT=${BENCH_OUT:-}
if [[ -n $BENCH_OUT && $BENCH_OUT != /* ]]; then BENCH_OUT=$PWD/$BENCH_OUT; fi
ZDBMEM_ARGS=${ZDBMEM_ARGS:-}

command -v go >/dev/null || { echo "run-all.sh: go not found" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/zdb-run-all.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

echo "building zdb and zdbmem ..." >&2
(cd "$ROOT" && go build -o "$TMP/zdb" ./cmd/zdb && go build -o "$TMP/zdbmem" ./bench/zdbmem)

rc=0
echo "=== bench/zdb.sh: zdb vs redis-server (redis-benchmark) ==="
ZDB_BIN=$TMP/zdb BENCH_OUT=${BENCH_OUT:+$TMP/zdb.md} "$ROOT/bench/zdb.sh" || rc=1
echo
echo "=== bench/zdbmem: memory per key and reopen time ==="
# shellcheck disable=SC2086 # word list on purpose
(cd "$ROOT" && "$TMP/zdbmem" -bin "$TMP/zdb" ${BENCH_OUT:+-md "$TMP/zdbmem.md"} $ZDBMEM_ARGS) || rc=1

if [[ -n $BENCH_OUT ]]; then
	{
		[[ -f $TMP/zdb.md ]] && cat "$TMP/zdb.md" && echo
		[[ -f $TMP/zdbmem.md ]] && cat "$TMP/zdbmem.md"
	} >"$BENCH_OUT" || true
	echo "wrote $BENCH_OUT" >&2
fi
exit "$rc"
