#!/usr/bin/env bash
# bench/zstor.sh — zstor store and retrieve of one large random file over
# six zdb data backends (k=4, n=6) and four metadata backends on loopback,
# next to restic backup/restore of the same file into a local repository and
# a plain cp, all in the same run. Also the peak RSS of zstor for a larger
# file, and the throughput of each pipeline stage (go test -bench).
#
#   bench/zstor.sh                          # 1 GiB file, 4 GiB RSS run
#   SIZE_MIB=256 BIG_MIB=0 bench/zstor.sh   # quick: 256 MiB, no RSS run
#   BENCH_OUT=zstor-bench.md bench/zstor.sh # also write facts + tables
#   COMPRESSION=none bench/zstor.sh         # zstor compression algorithm
#   CONCURRENCY=8 bench/zstor.sh            # zstor's concurrency setting
#   ZDB_ARGS=--sync bench/zstor.sh          # data zdbs fsync every write
#   PROFILE_DIR=/tmp/prof bench/zstor.sh    # also CPU profiles of zstor store and
#                                           # retrieve there, and where retrieve's time goes
#   WARM_MIB=0 bench/zstor.sh               # no memory warming before each step (see drop_caches)
#
# Needs: Debian as root for apt-get of restic, redis-tools (redis-cli) and
# time (GNU time) when missing; Go to build zdb and zstor. Everything runs
# on 127.0.0.1; files go to $TMPDIR (default /tmp), whose filesystem type is
# printed. Every process and file it made is removed on exit.
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
BIG_MIB=${BIG_MIB:-4096}
COMPRESSION=${COMPRESSION:-snappy}
CONCURRENCY=${CONCURRENCY:-}   # zstor's concurrency key; empty: its default
ZDB_ARGS=${ZDB_ARGS:-}         # extra flags of the data zdbs, e.g. --sync
PROFILE_DIR=${PROFILE_DIR:-}   # where to write CPU profiles of store and retrieve
BENCH_OUT=${BENCH_OUT:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "bench/zstor.sh: $*" >&2; exit 1; }

need_pkgs=()
command -v restic >/dev/null || need_pkgs+=(restic)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
[ -x /usr/bin/time ] || need_pkgs+=(time)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${need_pkgs[*]}; install them (Debian: apt-get install ${need_pkgs[*]})"
	echo "installing ${need_pkgs[*]} ..." >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null; } ||
		die "apt-get install ${need_pkgs[*]} failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/zstor-bench.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

need_mib=$(( SIZE_MIB * 5 + BIG_MIB * 4 + ${WARM_MIB:-$(( SIZE_MIB * 2 ))} + 512 ))
avail_mib=$(df -Pm "$WORK" | awk 'NR==2{print $4}')
[ "$avail_mib" -ge "$need_mib" ] || die "needs about $need_mib MiB free in $WORK, has $avail_mib"

echo "building zdb and zstor ..." >&2
(cd "$ROOT" && go build -buildvcs=auto -o "$WORK/zdb" ./cmd/zdb && go build -buildvcs=auto -o "$WORK/zstor" ./cmd/zstor) ||
	die "go build failed"

# free_port prints a port nothing listens on (start_zdb fails loudly if
# another process takes it first).
NEXT_PORT=$(( 20000 + RANDOM % 20000 ))
free_port() {
	while (exec 3<>"/dev/tcp/127.0.0.1/$NEXT_PORT") 2>/dev/null; do NEXT_PORT=$(( NEXT_PORT + 1 )); done
	echo "$NEXT_PORT"
}

# start_zdb NAME MODE: starts a zdb, waits for it, sets PORT (not run in a
# subshell, so PIDS keeps every process for the cleanup).
start_zdb() {
	local name=$1 mode=$2 port
	port=$(free_port)
	NEXT_PORT=$(( port + 1 ))
	mkdir -p "$WORK/$name"
	# shellcheck disable=SC2086 # ZDB_ARGS is a list of flags
	"$WORK/zdb" --listen 127.0.0.1 --port "$port" --mode "$mode" $([ "$mode" = seq ] && echo "$ZDB_ARGS") \
		--data "$WORK/$name/data" --index "$WORK/$name/index" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		redis-cli -p "$port" PING >/dev/null 2>&1 && { PORT=$port; return; }
		sleep 0.05
	done
	die "zdb $name did not start: $(cat "$WORK/$name.log")"
}

KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
CFG=$WORK/zstor_config.toml
mkdir -p "$WORK/root"
{
	echo "minimal_shards = 4"
	echo "expected_shards = 6"
	echo "root = \"$WORK/root\""
	[ -z "$CONCURRENCY" ] || echo "concurrency = $CONCURRENCY"
	echo
	echo "[encryption]"
	echo "algorithm = \"AES\""
	echo "key = \"$KEY\""
	echo
	echo "[compression]"
	echo "algorithm = \"$COMPRESSION\""
	echo
	echo "[meta]"
	echo "type = \"zdb\""
	echo
	echo "[meta.config]"
	echo "prefix = \"bench\""
	echo
} >"$CFG"
for i in 1 2 3 4; do
	start_zdb "meta$i" user; port=$PORT
	redis-cli -p "$port" NSNEW zmeta >/dev/null
	redis-cli -p "$port" NSSET zmeta password mpw >/dev/null
	printf '[[meta.config.backends]]\naddress = "127.0.0.1:%s"\nnamespace = "zmeta"\npassword = "mpw"\n\n' "$port" >>"$CFG"
done
echo "[[groups]]" >>"$CFG"
for i in 1 2 3 4 5 6; do
	start_zdb "data$i" seq; port=$PORT
	redis-cli -p "$port" NSNEW zdata >/dev/null
	redis-cli -p "$port" NSSET zdata password dpw >/dev/null
	printf '[[groups.backends]]\naddress = "127.0.0.1:%s"\nnamespace = "zdata"\npassword = "dpw"\n\n' "$port" >>"$CFG"
done

"$WORK/zstor" -c "$CFG" test >"$WORK/zstor-test.out" 2>&1 || die "zstor test failed: $(cat "$WORK/zstor-test.out")"

# drop_caches empties the page cache before a timed step and gives every
# step the same start: memory that was in use a moment ago. Why: on a VM
# whose balloon has free page reporting (virtio_balloon, as on this
# project's machines) the guest hands memory that stays free for a few
# seconds back to the host, and using such a page again costs a fault on
# the host, charged to the process that touches it. Reading 1.5 GiB through
# the page cache took 2.5-3.3 s of system time when memory had been free
# for 8 s, 0.20-0.23 s right after another file's page cache was dropped
# (a physical machine has no such difference). Without this a step was
# timed with whatever the step before it happened to free: after a store
# that reads its file with O_DIRECT, and so caches nothing, the retrieve's
# zdbs spent 0.3-1 s more system time reading the same files. Reading a
# scratch file of WARM_MIB through the page cache and dropping it is what
# brings the memory back (filling and freeing tmpfs did not, in the same
# measurements).
WARM_MIB=${WARM_MIB:-$(( SIZE_MIB * 2 ))}
WARM_FILE=$WORK/warm.bin
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	if [ "$WARM_MIB" -gt 0 ]; then
		cat "$WARM_FILE" >/dev/null
		echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
	fi
}
[ "$WARM_MIB" -eq 0 ] || head -c $(( WARM_MIB << 20 )) /dev/zero >"$WARM_FILE"

# timed LABEL CMD...: runs CMD under GNU time, records seconds and peak RSS.
declare -A SECS RSS USR SYS
timed() {
	local label=$1; shift
	local tf=$WORK/time.$label
	/usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$WORK/out.$label" 2>&1 || die "$label failed: $(tail -5 "$WORK/out.$label")"
	read -r SECS[$label] RSS[$label] USR[$label] SYS[$label] <"$tf"
	echo "  $label: ${SECS[$label]} s (user ${USR[$label]} s, sys ${SYS[$label]} s), peak RSS $(( RSS[$label] / 1024 )) MiB" >&2
}
mibps() { awk -v m="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.0f", m / s; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a > 0) printf "%.2f", b / a; else print "-" }'; }

FILE=$WORK/root/random-$SIZE_MIB.bin
echo "writing a $SIZE_MIB MiB random file ..." >&2
head -c $(( SIZE_MIB << 20 )) /dev/urandom >"$FILE"
SUM=$(sha256sum "$FILE" | cut -d' ' -f1)

echo "cp (local disk):" >&2
drop_caches
timed cp sh -c "cp '$FILE' '$WORK/copy.bin' && sync '$WORK/copy.bin'"
rm -f "$WORK/copy.bin"

echo "restic (local repository):" >&2
export RESTIC_PASSWORD=bench-password RESTIC_REPOSITORY=$WORK/restic-repo RESTIC_CACHE_DIR=$WORK/restic-cache
restic init --quiet >/dev/null
drop_caches
timed restic_backup restic backup --quiet "$FILE"
drop_caches
# zstor retrieve fsyncs the file before it appears; restic restore does not,
# so its time includes a sync of the restored file, for the same durability.
timed restic_restore sh -c "restic restore latest --target '$WORK/restic-restore' && sync '$WORK/restic-restore$FILE'"
[ "$(sha256sum "$WORK/restic-restore$FILE" | cut -d' ' -f1)" = "$SUM" ] || die "restic restore differs"
rm -rf "$WORK/restic-restore" "$WORK/restic-repo" "$WORK/restic-cache"

echo "zstor (k=4, n=6, compression $COMPRESSION):" >&2
drop_caches
prof() { [ -z "$PROFILE_DIR" ] || echo "ZSTOR_CPUPROFILE=$PROFILE_DIR/$1.pprof"; }
[ -z "$PROFILE_DIR" ] || mkdir -p "$PROFILE_DIR"
# shellcheck disable=SC2046 # prof prints one VAR=value word or nothing
timed zstor_store env $(prof store) "$WORK/zstor" -c "$CFG" store -f "$FILE"
mv "$FILE" "$FILE.orig"
drop_caches
# shellcheck disable=SC2046
timed zstor_retrieve env $(prof retrieve) "$WORK/zstor" -c "$CFG" retrieve -f "$FILE"
[ "$(sha256sum "$FILE" | cut -d' ' -f1)" = "$SUM" ] || die "zstor retrieve differs"
"$WORK/zstor" -c "$CFG" delete -f "$FILE" >/dev/null 2>&1 || true
rm -f "$FILE" "$FILE.orig"

if [ "$BIG_MIB" -gt 0 ]; then
	BIG=$WORK/root/random-$BIG_MIB.bin
	echo "zstor peak RSS with a $BIG_MIB MiB file:" >&2
	head -c $(( BIG_MIB << 20 )) /dev/urandom >"$BIG"
	BIGSUM=$(sha256sum "$BIG" | cut -d' ' -f1)
	timed big_store "$WORK/zstor" -c "$CFG" store -f "$BIG"
	rm -f "$BIG"
	timed big_retrieve "$WORK/zstor" -c "$CFG" retrieve -f "$BIG"
	[ "$(sha256sum "$BIG" | cut -d' ' -f1)" = "$BIGSUM" ] || die "zstor retrieve of the big file differs"
	rm -f "$BIG"
fi

echo "pipeline stages (go test -bench) ..." >&2
(cd "$ROOT" && go test -run '^$' -bench 'Stage|Encode|Decode' ./zstor/pipeline) >"$WORK/stages.out" 2>&1 ||
	die "pipeline benchmarks failed: $(tail -5 "$WORK/stages.out")"

rev=$(cd "$ROOT" && git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
{
	echo "## zstor vs restic and cp: one ${SIZE_MIB} MiB random file"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "- host: nproc=$(nproc), cpu=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), mem=$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "- kernel: $(uname -srm); load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- files on: $(df -PT "$WORK" | awk 'NR==2{print $2}') ($WORK); caches dropped before every timed step, after reading a $WARM_MIB MiB scratch file through the page cache (see drop_caches in the script)"
	echo "- zstor: rev $rev, k=4 n=6, compression $COMPRESSION, concurrency ${CONCURRENCY:-default}, 6 data + 4 metadata zdb processes on 127.0.0.1, data zdb flags: ${ZDB_ARGS:-none, so no fsync per write as in 0-db by default}"
	echo "- restic fsyncs its pack files on backup; its restore is timed up to a sync of the restored file, since zstor retrieve fsyncs before the file appears"
	echo "- restic: $(restic version | head -1), local repository on the same disk"
	echo
	echo "| step | seconds | MiB/s | peak RSS MiB | vs restic |"
	echo "|---|---:|---:|---:|---:|"
	echo "| cp to local disk (+sync) | ${SECS[cp]} | $(mibps "$SIZE_MIB" "${SECS[cp]}") | $(( RSS[cp] / 1024 )) | |"
	echo "| restic backup | ${SECS[restic_backup]} | $(mibps "$SIZE_MIB" "${SECS[restic_backup]}") | $(( RSS[restic_backup] / 1024 )) | |"
	echo "| restic restore | ${SECS[restic_restore]} | $(mibps "$SIZE_MIB" "${SECS[restic_restore]}") | $(( RSS[restic_restore] / 1024 )) | |"
	echo "| zstor store | ${SECS[zstor_store]} | $(mibps "$SIZE_MIB" "${SECS[zstor_store]}") | $(( RSS[zstor_store] / 1024 )) | $(ratio "${SECS[zstor_store]}" "${SECS[restic_backup]}")× faster |"
	echo "| zstor retrieve | ${SECS[zstor_retrieve]} | $(mibps "$SIZE_MIB" "${SECS[zstor_retrieve]}") | $(( RSS[zstor_retrieve] / 1024 )) | $(ratio "${SECS[zstor_retrieve]}" "${SECS[restic_restore]}")× faster |"
	echo
	echo "CPU seconds (user + sys) of each step's own process: cp ${USR[cp]} + ${SYS[cp]}, restic backup ${USR[restic_backup]} + ${SYS[restic_backup]}, restic restore ${USR[restic_restore]} + ${SYS[restic_restore]}, zstor store ${USR[zstor_store]} + ${SYS[zstor_store]}, zstor retrieve ${USR[zstor_retrieve]} + ${SYS[zstor_retrieve]} (the zdb processes' CPU is not included)."
	if [ -n "$PROFILE_DIR" ]; then
		echo
		echo "Where zstor retrieve's CPU goes (\`go tool pprof -top\`, first lines):"
		echo
		echo '```'
		(cd "$ROOT" && go tool pprof -top -nodecount=25 "$WORK/zstor" "$PROFILE_DIR/retrieve.pprof" 2>/dev/null | head -32)
		echo '```'
	fi
	if [ "$BIG_MIB" -gt 0 ]; then
		echo
		echo "Peak RSS with a $BIG_MIB MiB file (target ≤ 300 MiB):"
		echo
		echo "| step | seconds | MiB/s | peak RSS MiB |"
		echo "|---|---:|---:|---:|"
		echo "| zstor store | ${SECS[big_store]} | $(mibps "$BIG_MIB" "${SECS[big_store]}") | $(( RSS[big_store] / 1024 )) |"
		echo "| zstor retrieve | ${SECS[big_retrieve]} | $(mibps "$BIG_MIB" "${SECS[big_retrieve]}") | $(( RSS[big_retrieve] / 1024 )) |"
	fi
	echo
	echo "Pipeline stages, one core each (\`go test -run '^\$' -bench 'Stage|Encode|Decode' ./zstor/pipeline\`):"
	echo
	echo '```'
	grep -E '^(Benchmark|goos|goarch|cpu)' "$WORK/stages.out"
	echo '```'
} >"$WORK/report.md"
cat "$WORK/report.md"
[ -z "$BENCH_OUT" ] || cp "$WORK/report.md" "$BENCH_OUT"
