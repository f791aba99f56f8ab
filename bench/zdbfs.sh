#!/usr/bin/env bash
# bench/zdbfs.sh — zdbfs on a local zdb against the local disk, same run.
#
#   bench/zdbfs.sh                         # from anywhere inside a clone, as root
#   QUICK=1 bench/zdbfs.sh                 # smaller sizes: a smoke test (~1-2 min)
#   BENCH_OUT=zdbfs-bench.md bench/zdbfs.sh  # also write facts + table as markdown
#
# It installs fio and fuse3 with apt-get when missing (root), builds
# ./cmd/zdb, ./cmd/zdbfs and ./bench/zdbfsfiles, starts zdb on 127.0.0.1 with
# its files on local disk (the filesystem type is printed; tmpfs is refused
# unless ALLOW_TMPFS=1), mounts zdbfs, and runs every workload on the mount
# and on a directory of the same local disk:
#
#   seq write    fio rw=write bs=1M size=1G end_fsync=1 (MB/s from wall time)
#   seq read     fio rw=read bs=1M size=1G, cold: caches dropped
#                (echo 3 > /proc/sys/vm/drop_caches) and zdbfs remounted
#   rand read    fio rw=randread bs=4k direct=0 on the 1 GiB file, cold,
#                time_based runtime=20s, numjobs=1 and numjobs=4 (IOPS)
#   create       10,000 files of 1 KiB in 10 directories, then syncfs
#                (bench/zdbfsfiles), seconds
#   untar        tar -xf of a tar of $(go env GOROOT)/src, then sync -f
#   rm -rf       of that tree, then sync -f
#                (on zdbfs each also ends with `sync MOUNTPOINT`: syncfs
#                never reaches a FUSE server, an fsync of zdbfs's root
#                stores everything)
#   FUSE floor   create, untar and rm -rf also on go-fuse's own example
#                filesystem (example/loopback, a pass-through to a directory
#                of the same disk): what any go-fuse filesystem pays in
#                FUSE round trips on this machine, as a reference row
#   1M files     1,000,000 empty files in 10 directories (4 creators), then
#                the RSS of zdbfs and zdb against the configured cache bound
#
# and prints a table: workload, disk, zdbfs, ratio, spec target, pass/fail.
# Targets (spec §3): sequential write and read ≥ 0.5× the disk; 4-job random
# reads ≥ 0.3×; create and untar within 4× the disk's time; zdbfs memory
# bounded by its cache whatever the number of files.
#
# Environment (defaults in brackets):
#   QUICK=1       256 MiB files, 5 s random runs, 2,000 files, src/net for
#                 untar, 100,000 files for the memory check
#   BENCH_OUT     also write the facts and the table as markdown to this file
#   BENCH_DIR     parent of the work directory, on the disk to compare with
#                 [/var/tmp]
#   CACHE         zdbfs cache= option [64M]
#   ZDBFS_OPTS    extra zdbfs -o options (comma-separated)
#   ZDB_ARGS      extra zdb flags, e.g. "--sync"
#   ZDB_PORT      first port tried [19980]
#   SIZE RUNTIME NFILES UNTAR_SRC MILLION   override the workload sizes
#   PROFILE_DIR   write CPU profiles of zdb and of each zdbfs mount there
#   KEEP_TMP=1    keep the work directory
set -euo pipefail

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	SIZE=${SIZE:-256M} RUNTIME=${RUNTIME:-5} NFILES=${NFILES:-2000} MILLION=${MILLION:-100000}
else
	SIZE=${SIZE:-1G} RUNTIME=${RUNTIME:-20} NFILES=${NFILES:-10000} MILLION=${MILLION:-1000000}
fi
CACHE=${CACHE:-64M}
ZDBFS_OPTS=${ZDBFS_OPTS:-}
ZDB_ARGS=${ZDB_ARGS:-}
ZDB_PORT=${ZDB_PORT:-19980}
BENCH_OUT=${BENCH_OUT:-}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
PROFILE_DIR=${PROFILE_DIR:-}
STEP_TIMEOUT=${STEP_TIMEOUT:-900} # seconds, any single workload

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n $BENCH_OUT && $BENCH_OUT != /* ]]; then BENCH_OUT=$PWD/$BENCH_OUT; fi

log() { printf '%s\n' "$*" >&2; }
RUNLOG=()
say() { printf '%s\n' "$*"; RUNLOG+=("$*"); }
die() { log "zdbfs.sh: $*"; exit 1; }

# ---------------------------------------------------------------- processes
ZDB_PID= ZDBFS_PID= WORK= MNT= LB_PID= LBMNT=

is_mounted() { grep -qs " $1 fuse" /proc/self/mounts; }

stop_pid() { # pid [seconds]: SIGTERM, wait, then SIGKILL
	local pid=$1 n=$((${2:-10} * 10)) i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	for ((i = 0; i < n; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $MNT ]] && is_mounted "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null ||
			fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	fi
	if [[ -n $LBMNT ]] && is_mounted "$LBMNT"; then
		umount "$LBMNT" 2>/dev/null || umount -l "$LBMNT" 2>/dev/null || true
	fi
	stop_pid "$LB_PID"
	stop_pid "$ZDBFS_PID" 60
	stop_pid "$ZDB_PID"
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
need=()
command -v fio >/dev/null || need+=(fio)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v tar >/dev/null || need+=(tar)
if ((${#need[@]})); then
	[[ $EUID -eq 0 ]] || die "missing ${need[*]}; run as root to apt-get install them"
	log "installing ${need[*]} ..."
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
[[ $EUID -eq 0 ]] || die "run as root: dropping caches and mounting need it"
for c in fio fusermount3 tar go timeout awk; do
	command -v "$c" >/dev/null || die "$c not found"
done

mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/zdbfs-bench.XXXXXX")
FSTYPE=$(df -T "$WORK" | awk 'NR==2 {print $2}')
if [[ $FSTYPE == tmpfs || $FSTYPE == ramfs ]] && [[ ${ALLOW_TMPFS:-0} != 1 ]]; then
	die "$WORK is on $FSTYPE: set BENCH_DIR to a directory on local disk (or ALLOW_TMPFS=1)"
fi
MNT=$WORK/mnt
DISK=$WORK/disk
mkdir -p "$MNT" "$DISK" "$WORK/zdb/data" "$WORK/zdb/index"

log "building zdb, zdbfs, zdbfsfiles ..."
(cd "$ROOT" && go build -o "$WORK/bin/zdb" ./cmd/zdb && go build -o "$WORK/bin/zdbfs" ./cmd/zdbfs &&
	go build -o "$WORK/bin/zdbfsfiles" ./bench/zdbfsfiles &&
	go build -o "$WORK/bin/loopback" github.com/hanwen/go-fuse/v2/example/loopback) || die "go build failed"

# ------------------------------------------------------------------ servers
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while port_busy "$ZDB_PORT"; do ZDB_PORT=$((ZDB_PORT + 1)); done

zdb_env=()
[[ -n $PROFILE_DIR ]] && mkdir -p "$PROFILE_DIR" && zdb_env=(ZDB_CPUPROFILE="$PROFILE_DIR/zdb.prof")
# shellcheck disable=SC2086 # ZDB_ARGS is a word list on purpose
env "${zdb_env[@]}" "$WORK/bin/zdb" --listen 127.0.0.1 --port "$ZDB_PORT" --data "$WORK/zdb/data" \
	--index "$WORK/zdb/index" $ZDB_ARGS >"$WORK/zdb.log" 2>&1 &
ZDB_PID=$!
for ((i = 0; i < 100; i++)); do
	grep -q "listening" "$WORK/zdb.log" 2>/dev/null && break
	kill -0 "$ZDB_PID" 2>/dev/null || { tail "$WORK/zdb.log" >&2; die "zdb exited"; }
	sleep 0.1
done
port_busy "$ZDB_PORT" || { tail "$WORK/zdb.log" >&2; die "zdb does not listen on $ZDB_PORT"; }

MOUNTS=0
mount_zdbfs() { # phase (names the CPU profile)
	local envs=() i
	[[ -n $PROFILE_DIR ]] && envs=(ZDBFS_CPUPROFILE="$PROFILE_DIR/zdbfs-$1.prof")
	MOUNTS=$((MOUNTS + 1))
	env "${envs[@]}" "$WORK/bin/zdbfs" -o "host=127.0.0.1,port=$ZDB_PORT,autons,cache=$CACHE${ZDBFS_OPTS:+,$ZDBFS_OPTS}" \
		"$MNT" >>"$WORK/zdbfs.log" 2>&1 &
	ZDBFS_PID=$!
	for ((i = 0; i < 300; i++)); do
		is_mounted "$MNT" && return 0
		kill -0 "$ZDBFS_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$WORK/zdbfs.log" >&2
	die "zdbfs did not mount"
}

umount_zdbfs() { # clean unmount: zdbfs flushes everything and exits 0
	local rc=0
	umount "$MNT" || fusermount3 -u "$MNT" || die "cannot unmount $MNT"
	timeout 300 tail --pid="$ZDBFS_PID" -f /dev/null || true
	wait "$ZDBFS_PID" || rc=$?
	ZDBFS_PID=
	((rc == 0)) || { tail -n 20 "$WORK/zdbfs.log" >&2; die "zdbfs exited with $rc after unmount"; }
}

drop_caches() {
	# Write back what is dirty first (zdb's files, the disk file) and let
	# the disk settle, so that a cold read does not compete with writeback.
	sync
	sleep 3
	echo 3 >/proc/sys/vm/drop_caches
}

rss_kib() { awk -v f="$2" '$1==f":" {print $2}' "/proc/$1/status"; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b-a}'; }

# ----------------------------------------------------------------- facts
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
mount_zdbfs setup
facts=(
	"date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
	"command: ${QUICK:+QUICK=$QUICK }bench/zdbfs.sh"
	"host: nproc=$(nproc), cpu=${cpu_model:-unknown}, mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	"kernel: $(uname -srm)"
	"load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	"go: $(go version)"
	"fio: $(fio --version)"
	"local disk directory: $DISK, filesystem $FSTYPE ($(df -h --output=source "$WORK" | tail -n 1))"
	"zdb: 127.0.0.1:$ZDB_PORT, files on $FSTYPE ($WORK/zdb) ${ZDB_ARGS:+flags $ZDB_ARGS}"
	"zdbfs: $(awk -v m="$MNT" '$2==m {print $3" "$4}' /proc/self/mounts), cache=$CACHE${ZDBFS_OPTS:+ $ZDBFS_OPTS}"
	"sizes: file $SIZE, random runs ${RUNTIME}s, create $NFILES files, memory check $MILLION files"
)
printf '%s\n' "${facts[@]}"
echo
ZDBFS_IDLE_RSS=$(rss_kib "$ZDBFS_PID" VmRSS)

# --------------------------------------------------------------- workloads
declare -A R # R[workload,disk|zdbfs] = figure
FAILED=0

fio_run() { # out-name args...: terse output to $WORK/NAME.fio
	local name=$1
	shift
	timeout "$STEP_TIMEOUT" fio --output-format=terse --terse-version=3 "$@" >"$WORK/$name.fio" ||
		{ say "fio $name failed"; cat "$WORK/$name.fio" >&2; FAILED=1; return 1; }
}

size_bytes=$(numfmt --from=iec "${SIZE%B}")
mbps() { awk -v b="$size_bytes" -v s="$1" 'BEGIN {printf "%.1f", b/1048576/s}'; }

for target in disk zdbfs; do
	dir=$DISK
	[[ $target == zdbfs ]] && dir=$MNT

	say "[$target] sequential write $SIZE ..."
	t0=$(now)
	fio_run "seqw-$target" --name=seqwrite --filename="$dir/seq.dat" --rw=write --bs=1M --size="$SIZE" \
		--ioengine=psync --end_fsync=1 || true
	s=$(since "$t0")
	R[seqw,$target]=$(mbps "$s")
	say "    $s s, ${R[seqw,$target]} MB/s"

	cold() {
		if [[ $target == zdbfs ]]; then umount_zdbfs; drop_caches; mount_zdbfs "$1"; else drop_caches; fi
	}
	cold seqread
	say "[$target] cold sequential read $SIZE ..."
	t0=$(now)
	fio_run "seqr-$target" --name=seqread --filename="$dir/seq.dat" --rw=read --bs=1M --size="$SIZE" \
		--ioengine=psync || true
	s=$(since "$t0")
	R[seqr,$target]=$(mbps "$s")
	say "    $s s, ${R[seqr,$target]} MB/s"

	for jobs in 1 4; do
		cold "rand$jobs"
		say "[$target] cold 4 KiB random read, numjobs=$jobs, ${RUNTIME}s ..."
		fio_run "rand$jobs-$target" --name=randread --filename="$dir/seq.dat" --rw=randread --bs=4k \
			--size="$SIZE" --direct=0 --ioengine=psync --numjobs="$jobs" --group_reporting \
			--time_based --runtime="$RUNTIME" || true
		R[rand$jobs,$target]=$(awk -F';' '{print int($8)}' "$WORK/rand$jobs-$target.fio" | tail -n 1)
		say "    ${R[rand$jobs,$target]} IOPS"
	done
	rm -f "$dir/seq.dat"
	sync

	say "[$target] create $NFILES files of 1 KiB, then syncfs ..."
	extra=()
	[[ $target == zdbfs ]] && extra=(-fsync "$MNT") # syncfs never reaches a FUSE server
	out=$(timeout "$STEP_TIMEOUT" "$WORK/bin/zdbfsfiles" -dir "$dir/files" -n "$NFILES" -size 1024 -dirs 10 "${extra[@]}") ||
		{ say "    failed: $out"; FAILED=1; }
	R[create,$target]=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
	say "    $out"
done

# go-fuse's example loopback filesystem over a directory of the same
# disk: the FUSE floor for the metadata workloads.
LBMNT=$WORK/lbmnt
mkdir -p "$LBMNT" "$WORK/lborig"
"$WORK/bin/loopback" "$LBMNT" "$WORK/lborig" >"$WORK/loopback.log" 2>&1 &
LB_PID=$!
for ((i = 0; i < 100; i++)); do
	is_mounted "$LBMNT" && break
	sleep 0.1
done
is_mounted "$LBMNT" || die "go-fuse loopback did not mount"
say "[loopback] create $NFILES files of 1 KiB, then syncfs ..."
out=$(timeout "$STEP_TIMEOUT" "$WORK/bin/zdbfsfiles" -dir "$LBMNT/files" -n "$NFILES" -size 1024 -dirs 10 \
	-fsync "$WORK/lborig") ||
	{ say "    failed: $out"; FAILED=1; }
R[create,loopback]=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
say "    $out"

# The source tree as one tar on local disk, read once so both untars read
# it from the page cache.
if [[ -z ${UNTAR_SRC:-} ]]; then
	UNTAR_SRC=$(go env GOROOT)/src
	[[ $QUICK == 1 ]] && UNTAR_SRC=$UNTAR_SRC/net
fi
tar -C "$(dirname "$UNTAR_SRC")" -cf "$WORK/src.tar" "$(basename "$UNTAR_SRC")"
tar_bytes=$(stat -c %s "$WORK/src.tar")
tar_files=$(tar -tf "$WORK/src.tar" | wc -l)
cat "$WORK/src.tar" >/dev/null
say "untar source: $UNTAR_SRC, $tar_files entries, $((tar_bytes / 1048576)) MiB"
# Getting it durable: sync -f (syncfs) on the disk; syncfs never reaches
# a FUSE server (Linux sends FUSE_SYNCFS to virtiofs only), so on zdbfs
# also `sync MOUNTPOINT` (an fsync of its root stores everything), and
# for the loopback a syncfs of the disk directory beneath it.
durable() { # target dir
	sync -f "$2" || return 1
	case $1 in
	zdbfs) sync "$MNT" ;;
	loopback) sync -f "$WORK/lborig" ;;
	esac
}
for target in disk zdbfs loopback; do
	dir=$DISK
	[[ $target == zdbfs ]] && dir=$MNT
	[[ $target == loopback ]] && dir=$LBMNT
	mkdir -p "$dir/untar"
	say "[$target] untar, then sync -f ..."
	t0=$(now)
	timeout "$STEP_TIMEOUT" tar -C "$dir/untar" -xf "$WORK/src.tar" && durable "$target" "$dir/untar" ||
		{ say "    failed"; FAILED=1; }
	R[untar,$target]=$(since "$t0")
	say "    ${R[untar,$target]} s"
	say "[$target] rm -rf of it, then sync -f ..."
	t0=$(now)
	timeout "$STEP_TIMEOUT" rm -rf "$dir/untar" && durable "$target" "$dir" || { say "    failed"; FAILED=1; }
	R[rm,$target]=$(since "$t0")
	say "    ${R[rm,$target]} s"
done

umount "$LBMNT" || umount -l "$LBMNT"
stop_pid "$LB_PID"
LB_PID=

# Memory: a million empty files, on a fresh mount.
umount_zdbfs
mount_zdbfs million
ZDBFS_IDLE_RSS=$(rss_kib "$ZDBFS_PID" VmRSS)
ZDB_BEFORE_RSS=$(rss_kib "$ZDB_PID" VmRSS)
say "[zdbfs] $MILLION empty files in 10 directories, 4 creators ..."
out=$(timeout "$STEP_TIMEOUT" "$WORK/bin/zdbfsfiles" -dir "$MNT/million" -n "$MILLION" -size 0 -dirs 10 -jobs 4) ||
	{ say "    failed: $out"; FAILED=1; }
say "    $out"
ZDBFS_RSS=$(rss_kib "$ZDBFS_PID" VmRSS)
ZDBFS_HWM=$(rss_kib "$ZDBFS_PID" VmHWM)
ZDB_RSS=$(rss_kib "$ZDB_PID" VmRSS)
ZDB_HWM=$(rss_kib "$ZDB_PID" VmHWM)
say "    listing: $(find "$MNT/million" -type f | wc -l) files"
ZDBFS_RSS2=$(rss_kib "$ZDBFS_PID" VmRSS)
ZDBFS_HWM2=$(rss_kib "$ZDBFS_PID" VmHWM)
cache_kib=$(($(numfmt --from=iec "${CACHE%B}") / 1024))
mem_ok=pass
((ZDBFS_HWM2 - ZDBFS_IDLE_RSS <= cache_kib)) || { mem_ok=FAIL; }
say "    zdbfs RSS: idle after mount $((ZDBFS_IDLE_RSS / 1024)) MiB; after creating $((ZDBFS_RSS / 1024)) MiB (peak $((ZDBFS_HWM / 1024)) MiB); after listing them all $((ZDBFS_RSS2 / 1024)) MiB (peak $((ZDBFS_HWM2 / 1024)) MiB); cache bound $CACHE"
say "    zdb RSS: $((ZDB_BEFORE_RSS / 1024)) MiB before, $((ZDB_RSS / 1024)) MiB after (peak $((ZDB_HWM / 1024)) MiB) — zdb's key index, not bounded by the zdbfs cache"
umount_zdbfs
say "zdbfs statistics at the last unmount: $(grep 'zdbfs statistics' "$WORK/zdbfs.log" | tail -n 1 | sed 's/.*msg="zdbfs statistics" //')"
say "zdb data + index on disk: $(du -sh "$WORK/zdb" | cut -f1)"
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# -------------------------------------------------------------------- table
ROWS=()
row() { # name disk zdbfs unit kind(higher|lower) target
	local name=$1 d=$2 z=$3 unit=$4 kind=$5 target=$6 ratio=n/a verdict=—
	if [[ -n $d && -n $z && $d != 0 ]]; then
		ratio=$(awk -v d="$d" -v z="$z" 'BEGIN {printf "%.2f", z/d}')
		if [[ -n $target ]]; then
			if [[ $kind == higher ]]; then
				verdict=$(awk -v r="$ratio" -v t="$target" 'BEGIN {print (r >= t) ? "pass" : "FAIL"}')
			else
				verdict=$(awk -v r="$ratio" -v t="$target" 'BEGIN {print (r <= t) ? "pass" : "FAIL"}')
			fi
		fi
	fi
	local tt=—
	[[ -n $target ]] && tt=$([[ $kind == higher ]] && echo "≥ ${target}×" || echo "≤ ${target}× time")
	ROWS+=("$name|$d $unit|$z $unit|${ratio}×|$tt|$verdict")
}
row "sequential write $SIZE (bs=1M, end_fsync)" "${R[seqw,disk]}" "${R[seqw,zdbfs]}" MB/s higher 0.5
row "cold sequential read $SIZE (bs=1M)" "${R[seqr,disk]}" "${R[seqr,zdbfs]}" MB/s higher 0.5
row "cold 4 KiB random read, 1 job, ${RUNTIME}s" "${R[rand1,disk]}" "${R[rand1,zdbfs]}" IOPS higher ""
row "cold 4 KiB random read, 4 jobs, ${RUNTIME}s" "${R[rand4,disk]}" "${R[rand4,zdbfs]}" IOPS higher 0.3
row "create $NFILES × 1 KiB files + syncfs" "${R[create,disk]}" "${R[create,zdbfs]}" s lower 4
row "untar $(basename "$UNTAR_SRC") ($tar_files entries) + sync" "${R[untar,disk]}" "${R[untar,zdbfs]}" s lower 4
row "rm -rf of it + sync" "${R[rm,disk]}" "${R[rm,zdbfs]}" s lower ""
row "FUSE floor: create on go-fuse loopback" "${R[create,disk]}" "${R[create,loopback]}" s lower ""
row "FUSE floor: untar on go-fuse loopback" "${R[untar,disk]}" "${R[untar,loopback]}" s lower ""
row "FUSE floor: rm -rf on go-fuse loopback" "${R[rm,disk]}" "${R[rm,loopback]}" s lower ""
MEMROW="zdbfs RSS after $MILLION files|—|peak $((ZDBFS_HWM2 / 1024)) MiB (idle $((ZDBFS_IDLE_RSS / 1024)) MiB)|—|peak − idle ≤ cache ($CACHE)|$mem_ok"
ROWS+=("$MEMROW")
ROWS+=("zdb RSS after $MILLION files|—|$((ZDB_RSS / 1024)) MiB|—|—|—")

echo
printf '%-50s %16s %34s %8s %18s %6s\n' workload disk zdbfs ratio "spec §3 target" result
for r in "${ROWS[@]}"; do
	IFS='|' read -r a b c d e f <<<"$r"
	printf '%-50s %16s %34s %8s %18s %6s\n' "$a" "$b" "$c" "$d" "$e" "$f"
done
for r in "${ROWS[@]}"; do [[ $r == *"|FAIL" ]] && FAILED=2; done

if [[ -n $BENCH_OUT ]]; then
	{
		echo "## zdbfs against the local disk"
		echo
		for f in "${facts[@]}"; do echo "- $f"; done
		echo
		echo "| workload | disk | zdbfs | zdbfs/disk | spec §3 target | result |"
		echo "|---|---:|---:|---:|---|---|"
		for r in "${ROWS[@]}"; do
			IFS='|' read -r a b c d e f <<<"$r"
			echo "| $a | $b | $c | $d | $e | $f |"
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
# Exit status: 1 when a workload failed; 2 when a target was missed.
exit "$FAILED"
