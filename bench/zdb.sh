#!/usr/bin/env bash
# bench/zdb.sh — throughput of our zdb against Debian's redis-server, measured
# with redis-benchmark over TCP loopback in the same run.
#
#   sudo bench/zdb.sh                      # from anywhere inside a clone
#   BENCH_OUT=results.md bench/zdb.sh      # also write the table as markdown
#
# For each pipeline depth (none, then -P 16) it runs
#   redis-benchmark -h 127.0.0.1 -p PORT -t set,get -d 4096 -c 50 -n 200000 \
#                   -r 1000000 --csv [-P 16]
# against zdb, then against redis (the order flips every round), so both see
# the same machine state. Both servers keep running for the whole script: the
# second pipeline depth runs on the keys the first one wrote.
#
# Things to know when reading the figures:
#   * redis-benchmark's SET payload is 4096 constant 'x' bytes. zdb answers a
#     SET whose payload is byte-identical to the stored one with nil ($-1) and
#     writes nothing, so a SET on a key that already holds that payload is
#     cheaper on zdb than a first write. With -r 1000000 and 200000 requests
#     most SETs hit a fresh key, so most SETs do write (see the DBSIZE lines).
#     This is expected, and is what a real client re-sending a value sees too.
#   * GETs pick random keys out of 1,000,000 of which only the ones SET so far
#     exist (~18% after the first SET run), so most GETs answer nil, on both
#     servers alike.
#   * redis-benchmark starts by sending CONFIG GET; zdb answers
#     "-Command not supported" and redis-benchmark prints a warning about it.
#     That is harmless. An error reply to SET or GET, on the other hand, makes
#     redis-benchmark exit 1 ("Error from server: ..."); this script reports
#     that run as FAILED.
#   * redis runs without persistence (--save "" --appendonly no); zdb appends
#     every write to its data and index files (no fsync unless ZDB_ARGS adds
#     --sync). The filesystem holding zdb's files is printed with the facts.
#
# Environment (defaults in brackets):
#   BENCH_OUT    also write the facts and the table as markdown to this file
#   ZDB_BIN      use this zdb binary instead of building ./cmd/zdb
#   ZDB_ARGS     extra zdb flags, e.g. "--mode user" or "--sync"   [none]
#   BENCH_DIR    parent of the temporary directory                 [$TMPDIR or /tmp]
#   ZDB_PORT / REDIS_PORT  first port to try                       [19900 / 16379]
#   ROUNDS       repetitions of each run; the median is reported   [1]
#   REQUESTS CLIENTS SIZE KEYSPACE PIPELINES   [200000 50 4096 1000000 "1 16"]
#   RUN_TIMEOUT  seconds before one redis-benchmark run is killed  [180]
#   KEEP_TMP=1   keep the temporary directory (binary, data, logs)
set -euo pipefail

REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
SIZE=${SIZE:-4096}
KEYSPACE=${KEYSPACE:-1000000}
PIPELINES=${PIPELINES:-"1 16"}
ROUNDS=${ROUNDS:-1}
# PIN=1 gives each server one core (taskset -c 0) and redis-benchmark the
# other (taskset -c 1): on a 2-core machine this keeps the load generator and
# the server from competing for the same core, the fairest setup for a
# single-threaded redis-server. PIN=0 (default) lets the kernel schedule.
PIN=${PIN:-0}
SRV_PIN=() CLI_PIN=()
if [[ $PIN == 1 ]]; then
	SRV_PIN=(taskset -c 0) CLI_PIN=(taskset -c 1)
fi
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
ZDB_BIN=${ZDB_BIN:-}
ZDB_ARGS=${ZDB_ARGS:-}
BENCH_OUT=${BENCH_OUT:-}
ZDB_PORT=${ZDB_PORT:-19900}
REDIS_PORT=${REDIS_PORT:-16379}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n $BENCH_OUT && $BENCH_OUT != /* ]]; then BENCH_OUT=$PWD/$BENCH_OUT; fi

log() { printf '%s\n' "$*" >&2; }
RUNLOG=()
say() { printf '%s\n' "$*"; RUNLOG+=("$*"); } # run reports: stdout and the markdown
die() { log "zdb.sh: $*"; exit 1; }

# ---------------------------------------------------------------- processes
ZDB_PID=
REDIS_PID=
BENCH_PID=
WORK=

stop_pid() { # pid: SIGTERM, up to 10 s, then SIGKILL
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pid "$BENCH_PID"
	stop_pid "$ZDB_PID"
	stop_pid "$REDIS_PID"
	if [[ -n $WORK && -d $WORK ]]; then
		if [[ ${KEEP_TMP:-0} == 1 ]]; then
			log "kept $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------- dependencies
if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
	[[ $EUID -eq 0 ]] || die "redis-benchmark/redis-server missing; run as root to install redis-tools and redis-server"
	log "installing redis-tools redis-server ..."
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2
	apt-get install -y redis-tools redis-server >&2
	# The package may start its own redis on 6379. We never use it (our redis
	# has its own port and settings); stop it so it costs nothing meanwhile.
	if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
		systemctl stop redis-server || true
	fi
fi
for c in redis-benchmark redis-server redis-cli timeout awk; do
	command -v "$c" >/dev/null || die "$c not found"
done

mkdir -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/zdb-bench.XXXXXX")

if [[ -z $ZDB_BIN ]]; then
	command -v go >/dev/null || die "go not found (needed to build ./cmd/zdb; or set ZDB_BIN)"
	log "building zdb ..."
	(cd "$ROOT" && go build -buildvcs=auto -o "$WORK/zdb" ./cmd/zdb) || die "go build ./cmd/zdb failed"
	ZDB_BIN=$WORK/zdb
fi
[[ -x $ZDB_BIN ]] || die "$ZDB_BIN is not executable"

# ------------------------------------------------------------------ servers
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p=$1
	while port_busy "$p"; do p=$((p + 1)); done
	echo "$p"
}

wait_ping() { # port pid name logfile
	local i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$2" 2>/dev/null || { log "$3 exited during startup:"; tail -n 30 "$4" >&2; return 1; }
		if [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null) == PONG ]]; then
			return 0
		fi
		sleep 0.1
	done
	log "$3 did not answer PING on port $1 within 30 s:"
	tail -n 30 "$4" >&2
	return 1
}

ZDB_PORT=$(free_port "$ZDB_PORT")
mkdir -p "$WORK/zdb-data" "$WORK/zdb-index"
# shellcheck disable=SC2086 # ZDB_ARGS is a word list on purpose
"${SRV_PIN[@]}" "$ZDB_BIN" --listen 127.0.0.1 --port "$ZDB_PORT" --data "$WORK/zdb-data" \
	--index "$WORK/zdb-index" $ZDB_ARGS >"$WORK/zdb.log" 2>&1 &
ZDB_PID=$!
wait_ping "$ZDB_PORT" "$ZDB_PID" zdb "$WORK/zdb.log" || die "zdb did not start"

REDIS_PORT=$(free_port "$REDIS_PORT")
[[ $REDIS_PORT != "$ZDB_PORT" ]] || REDIS_PORT=$(free_port $((ZDB_PORT + 1)))
(cd "$WORK" && exec "${SRV_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
	--appendonly no --daemonize no) >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
wait_ping "$REDIS_PORT" "$REDIS_PID" redis-server "$WORK/redis.log" || die "redis-server did not start"

# A 4 KiB round trip on zdb before benchmarking, so a broken server shows up
# as such rather than as odd figures.
probe=$(head -c 4096 /dev/zero | tr '\0' 'x')
r1=$(timeout 5 redis-cli -h 127.0.0.1 -p "$ZDB_PORT" SET bench-probe "$probe" 2>&1 || true)
r2=$(timeout 5 redis-cli -h 127.0.0.1 -p "$ZDB_PORT" GET bench-probe 2>&1 || true)
[[ $r1 == bench-probe && $r2 == "$probe" ]] ||
	die "zdb probe failed: SET -> '${r1:0:80}', GET -> ${#r2} bytes '${r2:0:40}...'"
timeout 5 redis-cli -h 127.0.0.1 -p "$ZDB_PORT" DEL bench-probe >/dev/null 2>&1 || true

# -------------------------------------------------------------------- facts
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
facts=(
	"date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
	"host: nproc=$(nproc), cpu=${cpu_model:-unknown}, mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	"kernel: $(uname -srm)"
	"load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
	"go: $(go version 2>/dev/null || echo 'not used')"
	"zdb: $ZDB_BIN $ZDB_ARGS ($(go version -m "$ZDB_BIN" 2>/dev/null | awk '$2=="vcs.revision"{r=$3} $2=="vcs.modified"{m=$3} END{if(r!="")printf "rev %s%s", substr(r,1,12), (m=="true"?"+dirty":""); else printf "rev unknown"}'))"
	"zdb files on: $(df -T "$WORK" | awk 'NR==2 {print $2}') ($WORK)"
	"redis: $(redis-server --version)"
	"cpu pinning: $([[ $PIN == 1 ]] && echo 'servers on cpu 0, redis-benchmark on cpu 1' || echo 'none')"
	"redis-benchmark: $(redis-benchmark --version) -t set,get -d $SIZE -c $CLIENTS -n $REQUESTS -r $KEYSPACE --csv, pipelines: $PIPELINES, rounds: $ROUNDS"
)
printf '%s\n' "${facts[@]}"
echo

# --------------------------------------------------------------------- runs
declare -A RES   # RES[server,test,pipe] = "rps rps ..." over rounds
declare -A NOTE  # NOTE[server,pipe] = FAILED / DEAD
FAILED=0

run_one() { # server port pipe round
	local server=$1 port=$2 pipe=$3 round=$4 pid out rc=0 t line
	pid=$([[ $server == zdb ]] && echo "$ZDB_PID" || echo "$REDIS_PID")
	out="$WORK/$server-P$pipe-r$round"
	if ! kill -0 "$pid" 2>/dev/null; then
		say "[$server P=$pipe round $round] server is not running; skipped"
		NOTE[$server,$pipe]=DEAD; FAILED=1; return
	fi
	local args=(-h 127.0.0.1 -p "$port" -t set,get -d "$SIZE" -c "$CLIENTS" -n "$REQUESTS" -r "$KEYSPACE" --csv)
	[[ $pipe -gt 1 ]] && args+=(-P "$pipe")
	local t0=$SECONDS
	timeout -k 5 "$RUN_TIMEOUT" "${CLI_PIN[@]}" redis-benchmark "${args[@]}" >"$out.csv" 2>"$out.err" &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=
	local dbsize v rps=""
	dbsize=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" DBSIZE 2>&1 | head -n 1 || true)
	for t in SET GET; do
		v=$(tr -d '"\r' <"$out.csv" | awk -F, -v t="$t" '$1==t {print $2; exit}')
		[[ -n $v ]] && RES[$server,$t,$pipe]+="$v " && rps+=", $t $v rps"
	done
	say "[$server P=$pipe round $round] exit $rc in $((SECONDS - t0)) s$rps, DBSIZE now $dbsize"
	if [[ -s $out.err ]]; then
		# Warnings (CONFIG GET against zdb) and errors, each distinct line once.
		while IFS= read -r line; do say "    redis-benchmark stderr: $line"; done < <(
			tr '\r' '\n' <"$out.err" | sed '/^[[:space:]]*$/d' | awk '!seen[$0]++' | head -n 5)
	fi
	if [[ $rc -ne 0 ]]; then
		[[ $rc -eq 124 || $rc -eq 137 ]] && say "    timed out after ${RUN_TIMEOUT}s"
		if ! kill -0 "$pid" 2>/dev/null; then
			say "    $server is no longer running; last lines of its log:"
			while IFS= read -r line; do say "      $line"; done < <(tail -n 20 "$WORK/$server.log")
		fi
		NOTE[$server,$pipe]=FAILED; FAILED=1
	fi
	return 0
}

round=1
while ((round <= ROUNDS)); do
	for pipe in $PIPELINES; do
		if ((round % 2)); then
			run_one zdb "$ZDB_PORT" "$pipe" "$round"
			run_one redis "$REDIS_PORT" "$pipe" "$round"
		else
			run_one redis "$REDIS_PORT" "$pipe" "$round"
			run_one zdb "$ZDB_PORT" "$pipe" "$round"
		fi
	done
	round=$((round + 1))
done

say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# -------------------------------------------------------------------- table
median() { # values...
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR==0) exit; if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'
}

ROWS=()
for t in SET GET; do
	for pipe in $PIPELINES; do
		z=$(median ${RES[zdb,$t,$pipe]:-})
		r=$(median ${RES[redis,$t,$pipe]:-})
		ratio=n/a
		[[ -n $z && -n $r ]] && ratio=$(awk -v z="$z" -v r="$r" 'BEGIN {printf "%.2f", z/r}')
		z=${z:-${NOTE[zdb,$pipe]:-n/a}}
		r=${r:-${NOTE[redis,$pipe]:-n/a}}
		[[ -n ${NOTE[zdb,$pipe]:-} && $z != "${NOTE[zdb,$pipe]}" ]] && z="$z (${NOTE[zdb,$pipe]})"
		[[ -n ${NOTE[redis,$pipe]:-} && $r != "${NOTE[redis,$pipe]}" ]] && r="$r (${NOTE[redis,$pipe]})"
		ROWS+=("$t|$pipe|$z|$r|$ratio")
	done
done

echo
printf '%-6s %8s %14s %14s %12s\n' test pipeline "zdb rps" "redis rps" "zdb/redis"
for row in "${ROWS[@]}"; do
	IFS='|' read -r t p z r q <<<"$row"
	printf '%-6s %8s %14s %14s %12s\n' "$t" "$p" "$z" "$r" "$q"
done

if [[ -n $BENCH_OUT ]]; then
	{
		echo "## zdb vs redis-server, redis-benchmark over TCP loopback"
		echo
		for f in "${facts[@]}"; do echo "- $f"; done
		echo
		echo "| test | pipeline | zdb rps | redis rps | zdb/redis |"
		echo "|---|---:|---:|---:|---:|"
		for row in "${ROWS[@]}"; do
			IFS='|' read -r t p z r q <<<"$row"
			echo "| $t | $p | $z | $r | $q |"
		done
		echo
		echo "Runs:"
		echo
		echo '```'
		printf '%s\n' "${RUNLOG[@]}"
		echo '```'
	} >"$BENCH_OUT"
	log "wrote $BENCH_OUT"
fi

exit "$FAILED"
