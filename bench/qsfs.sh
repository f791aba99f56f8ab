#!/usr/bin/env bash
# bench/qsfs.sh — qsfs against its references, side by side in the same run.
#
#   bench/qsfs.sh                                          # as root, from inside a clone
#   SIZE_MIB=64 FILES=500 ROUNDS=1 RPO_SECS=15 bench/qsfs.sh   # small-scale check (~2-3 min)
#
# It builds ./cmd/zdb, ./cmd/zdbfs and ./cmd/qsfs, starts on 127.0.0.1, with
# their files on the same disk (under WORK): six data zdbs (--mode seq) and
# four metadata zdbs, as zstor's backends (k=4, n=6), and one more zdb for a
# plain zdbfs mount (-o autons). Every qsfs filesystem below gets its own data
# and metadata namespaces (NSNEW/NSSET with a password) and its own config:
# the zstor keys as zstor/zstortest's ConfigTOML writes them (no root: qsfs
# refuses it) plus a [qsfs] table (path, cache_size, rpo, data_file_size,
# metrics), with fresh random keys. Then:
#
#   1 write   ROUNDS times, interleaved (order flipped every round): dd of a
#             SIZE_MIB random file (pre-generated, in the page cache) with
#             bs=1M conv=fsync into a qsfs mount whose backups run (rpo RPO,
#             cache_size large enough never to evict) and into the plain
#             zdbfs mount; then `qsfs sync` (the upload drain), timed apart.
#   2 rpo     on the same qsfs mount: RATE_MIB MiB/s for RPO_SECS seconds (one
#             new file per second), sampling `qsfs status --json` every second:
#             median and max of rpo_seconds.
#   3 read    a SIZE_MIB file and TTFB_FILES files of 1 MiB in a qsfs mount
#             with cache_size READ_CACHE, pushed out of the cache by a filler
#             file (READ_CACHE + 64 MiB written after them) and `qsfs sync`.
#             ROUNDS times, interleaved with restic restore of the same bytes
#             from a local repository: qsfs remounted (its memory caches
#             empty), page cache dropped, `head -c 4096` of each small file
#             (time to first byte), then `cat FILE >/dev/null`; restic:
#             page cache dropped, `restic restore` of the file (no sync after
#             it: cat writes nothing either). The bytes qsfs fetched from the
#             backends in each round are printed (qsfs_fetch_bytes_total), so
#             a read that was not cold shows.
#   4 restore FILES files of 1-8 KiB in directories of 100 written into a
#             fresh qsfs, `qsfs sync`. ROUNDS times, interleaved with restic
#             restore of the same tree: qsfs unmounted, local path wiped,
#             `qsfs restore` timed, then from starting `qsfs mount` until
#             `ls -R | wc -l` answers (time to usable), then a full read of
#             every file (find | sort | xargs cat | sha256sum, checked
#             against the source tree).
#   5 memory  peak RSS (VmHWM) of the qsfs process in each phase (reset with
#             clear_refs at the start of a phase on a running mount); target:
#             under 300 MiB + zdbfs's memory cache (64 MiB).
#
# and prints one summary line per figure with its reference and ratio.
# Targets (issue 11): write ≥ 0.8× zdbfs; cold read ≥ 1.0× restic restore;
# peak RSS < 364 MiB.
#
# Environment (defaults in brackets): WORK [/var/tmp/qsfsbench] (must not
# exist; removed at the end), SIZE_MIB [1024], FILES [10000], ROUNDS [3],
# RPO [10s], RPO_SECS [60], RATE_MIB [8], READ_CACHE [256M], TTFB_FILES [5],
# DATA_FILE_SIZE [64M], KEEP_TMP=1 (keep WORK). Needs root (drop_caches,
# FUSE), Go, restic, redis-cli, fusermount3, curl, perl; installs restic and
# redis-tools with apt-get when missing.
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
FILES=${FILES:-10000}
ROUNDS=${ROUNDS:-3}
RPO=${RPO:-10s}
RPO_SECS=${RPO_SECS:-60}
RATE_MIB=${RATE_MIB:-8}
READ_CACHE=${READ_CACHE:-256M}
TTFB_FILES=${TTFB_FILES:-5}
DATA_FILE_SIZE=${DATA_FILE_SIZE:-64M}
WORK=${WORK:-/var/tmp/qsfsbench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '%s\n' "$*" >&2; }
die() { log "qsfs.sh: $*"; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root: dropping caches and mounting need it"

need_pkgs=()
command -v restic >/dev/null || need_pkgs+=(restic)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
	log "installing ${need_pkgs[*]} ..."
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null; } ||
		die "apt-get install ${need_pkgs[*]} failed"
fi
for c in go fusermount3 curl perl dd awk numfmt /usr/bin/time; do command -v "$c" >/dev/null || die "$c not found"; done

# mib SIZE: a size such as 256M or 1G (powers of 1024, as qsfs reads them) in MiB.
mib() { local x=${1%B}; x=${x%i}; echo $(($(numfmt --from=iec "$x") / 1048576)); }
read_cache_mib=$(mib "$READ_CACHE") dfs_mib=$(mib "$DATA_FILE_SIZE")
[[ $read_cache_mib -ge $((2 * dfs_mib)) ]] || die "READ_CACHE ($READ_CACHE) must hold two data files (DATA_FILE_SIZE $DATA_FILE_SIZE)"
need_mib=$((SIZE_MIB * (2 * ROUNDS + 8) + RATE_MIB * RPO_SECS * 2 + read_cache_mib * 2 + FILES * 20 / 1024 + 2048))
[[ -e $WORK ]] && die "$WORK exists: remove it (a run left it?) or set WORK"
mkdir -p "$WORK"
avail_mib=$(df -Pm "$WORK" | awk 'NR==2{print $4}')
[[ $avail_mib -ge $need_mib ]] || { rmdir "$WORK"; die "needs about $need_mib MiB free in $WORK, has $avail_mib"; }

PIDS=()              # zdb, zdbfs, samplers: stopped at the end
declare -A QPID      # qsfs filesystem name -> pid of its mount
ZDBFS_PID=
is_mounted() { grep -qs " $1 fuse" /proc/self/mounts; }
stop_pid() {
	[[ -n ${1:-} ]] || return 0
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 400); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local m
	for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/self/mounts); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	for p in "${QPID[@]}"; do stop_pid "$p"; done
	stop_pid "$ZDBFS_PID"
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building zdb, zdbfs, qsfs ..."
mkdir -p "$WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/zdb" ./cmd/zdb && go build -o "$WORK/bin/zdbfs" ./cmd/zdbfs &&
	go build -o "$WORK/bin/qsfs" ./cmd/qsfs) || die "go build failed"
ZDB=$WORK/bin/zdb QSFS=$WORK/bin/qsfs

NEXT_PORT=$((20000 + RANDOM % 20000))
free_port() {
	while (exec 3<>"/dev/tcp/127.0.0.1/$NEXT_PORT") 2>/dev/null; do NEXT_PORT=$((NEXT_PORT + 1)); done
	echo "$NEXT_PORT"
}
# start_zdb NAME MODE: starts a zdb with its files under WORK, sets PORT.
start_zdb() {
	local name=$1 mode=$2 port
	port=$(free_port)
	NEXT_PORT=$((port + 1))
	mkdir -p "$WORK/zdb/$name"
	"$ZDB" --listen 127.0.0.1 --port "$port" --mode "$mode" \
		--data "$WORK/zdb/$name/data" --index "$WORK/zdb/$name/index" >"$WORK/zdb/$name.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		redis-cli -p "$port" PING >/dev/null 2>&1 && { PORT=$port; return; }
		sleep 0.05
	done
	die "zdb $name did not start: $(cat "$WORK/zdb/$name.log")"
}
META_PORTS=() DATA_PORTS=()
for i in 1 2 3 4; do start_zdb "meta$i" user; META_PORTS+=("$PORT"); done
for i in 1 2 3 4 5 6; do start_zdb "data$i" seq; DATA_PORTS+=("$PORT"); done
start_zdb plain user
PLAIN_PORT=$PORT

hexkey() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
nsnew() { # PORT NAME PASSWORD
	[[ $(redis-cli -p "$1" NSNEW "$2") == OK ]] || die "NSNEW $2 on port $1 failed"
	[[ $(redis-cli -p "$1" NSSET "$2" password "$3") == OK ]] || die "NSSET $2 password on port $1 failed"
}
# new_fs NAME CACHE_SIZE: namespaces of its own on every backend and
# WORK/NAME/qsfs.toml (path WORK/NAME/local, mount point WORK/NAME/mnt).
declare -A MPORT # filesystem -> metrics port
new_fs() {
	local name=$1 cache=$2 d=$WORK/$1 pw p
	pw=$(hexkey | head -c 24)
	mkdir -p "$d/mnt"
	MPORT[$name]=$(free_port)
	NEXT_PORT=$((MPORT[$name] + 1))
	{
		printf 'minimal_shards = 4\nexpected_shards = 6\n\n'
		printf '[encryption]\nalgorithm = "AES"\nkey = "%s"\n\n' "$(hexkey)"
		printf '[compression]\nalgorithm = "snappy"\n\n'
		printf '[meta]\ntype = "zdb"\n\n[meta.config]\nprefix = "qsfsbench"\n\n'
		for p in "${META_PORTS[@]}"; do
			nsnew "$p" "m-$name" "$pw"
			printf '[[meta.config.backends]]\naddress = "127.0.0.1:%s"\nnamespace = "m-%s"\npassword = "%s"\n\n' "$p" "$name" "$pw"
		done
		printf '[[groups]]\n'
		for p in "${DATA_PORTS[@]}"; do
			nsnew "$p" "d-$name" "$pw"
			printf '[[groups.backends]]\naddress = "127.0.0.1:%s"\nnamespace = "d-%s"\npassword = "%s"\n\n' "$p" "$name" "$pw"
		done
		printf '[qsfs]\npath = "%s"\ncache_size = "%s"\nrpo = "%s"\ndata_file_size = "%s"\nmetrics = "127.0.0.1:%s"\n' \
			"$d/local" "$cache" "$RPO" "$DATA_FILE_SIZE" "${MPORT[$name]}"
	} >"$d/qsfs.toml"
	chmod 600 "$d/qsfs.toml"
}
# qs NAME ARGS...: a qsfs command on filesystem NAME, bounded in time.
qs() {
	local name=$1 rc=0
	shift
	timeout 600 "$QSFS" -c "$WORK/$name/qsfs.toml" "$@" || rc=$?
	[[ $rc != 124 ]] || die "qsfs $* on $name did not return within 600 s"
	return "$rc"
}
# status_field NAME FIELD: a number from qsfs status --json.
status_field() {
	{ timeout 10 "$QSFS" -c "$WORK/$1/qsfs.toml" status --json 2>/dev/null || true; } |
		grep -o "\"$2\": *[0-9.eE+-]*" | head -n 1 | awk -F: '{print $2 + 0}'
}
mount_fs() { # NAME
	local name=$1
	"$QSFS" -c "$WORK/$name/qsfs.toml" mount "$WORK/$name/mnt" >>"$WORK/$name/qsfs.log" 2>&1 &
	QPID[$name]=$!
	for _ in $(seq 600); do
		is_mounted "$WORK/$name/mnt" && return 0
		kill -0 "${QPID[$name]}" 2>/dev/null || break
		sleep 0.05
	done
	tail -n 5 "$WORK/$name/qsfs.log" >&2
	die "qsfs $name did not mount"
}
umount_fs() { # NAME
	local name=$1 rc=0
	umount "$WORK/$name/mnt" || die "cannot unmount $WORK/$name/mnt"
	wait "${QPID[$name]}" || rc=$?
	unset "QPID[$name]"
	[[ $rc == 0 ]] || die "qsfs $name exited $rc after unmount: $(tail -n 3 "$WORK/$name/qsfs.log")"
}
hwm_reset() { echo 5 >"/proc/${QPID[$1]}/clear_refs"; }
hwm_mib() { awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/${QPID[$1]}/status"; }
fetched() { # NAME [METRIC]: bytes fetched by range since the mount started (or another qsfs_ counter)
	curl -fsS "http://127.0.0.1:${MPORT[$1]}/metrics" | awk -v m="qsfs_${2:-fetch_bytes}_total" '$1 == m {printf "%d", $2}'
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b-a}'; }
last() { awk '{print $NF}' <<<"$1"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
maxof() { tr ' ' '\n' | grep . | sort -g | tail -n 1; }
mibps() { awk -v m="$1" -v s="$2" 'BEGIN {printf "%.0f", m/s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
declare -A T # T[figure] = space-separated values, one per round

echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "command: SIZE_MIB=$SIZE_MIB FILES=$FILES ROUNDS=$ROUNDS RPO=$RPO RPO_SECS=$RPO_SECS RATE_MIB=$RATE_MIB READ_CACHE=$READ_CACHE TTFB_FILES=$TTFB_FILES DATA_FILE_SIZE=$DATA_FILE_SIZE bench/qsfs.sh"
echo "host: nproc=$(nproc), $(uname -sr), disk $(df -PT "$WORK" | awk 'NR==2 {print $2" "$1}') ($WORK), $(restic version | head -1)"
echo "qsfs: rev $(cd "$ROOT" && git rev-parse --short=12 HEAD 2>/dev/null || echo unknown), k=4 n=6 snappy, 6 data (seq) + 4 metadata zdbs on 127.0.0.1"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

log "source file: $SIZE_MIB MiB of random bytes ..."
SRC=$WORK/src.bin
head -c $((SIZE_MIB << 20)) /dev/urandom >"$SRC"
SRC_SUM=$(sha256sum "$SRC" | cut -d' ' -f1)

# ---- 1 write: qsfs with backups running against plain zdbfs -------------
log "phase 1: write $SIZE_MIB MiB, $ROUNDS rounds ..."
new_fs w "$((SIZE_MIB * 2 * ROUNDS + RATE_MIB * RPO_SECS * 2 + 2048 + 3 * dfs_mib))M"
mount_fs w
mkdir -p "$WORK/plain/mnt"
"$WORK/bin/zdbfs" -o "host=127.0.0.1,port=$PLAIN_PORT,autons" "$WORK/plain/mnt" >"$WORK/plain/zdbfs.log" 2>&1 &
ZDBFS_PID=$!
for _ in $(seq 300); do is_mounted "$WORK/plain/mnt" && break; sleep 0.05; done
is_mounted "$WORK/plain/mnt" || die "zdbfs did not mount: $(tail -n 5 "$WORK/plain/zdbfs.log")"
cat "$SRC" >/dev/null
hwm_reset w
for r in $(seq "$ROUNDS"); do
	order=(q z)
	((r % 2 == 0)) && order=(z q)
	for t in "${order[@]}"; do
		if [[ $t == q ]]; then
			qs w sync
			sync
			t0=$(now)
			dd if="$SRC" of="$WORK/w/mnt/w$r" bs=1M conv=fsync status=none
			T[wq]+="$(since "$t0") "
			t0=$(now)
			qs w sync
			T[wsync]+="$(since "$t0") "
			rm "$WORK/w/mnt/w$r"
		else
			sync "$WORK/plain/mnt"
			sync
			t0=$(now)
			dd if="$SRC" of="$WORK/plain/mnt/w$r" bs=1M conv=fsync status=none
			T[wz]+="$(since "$t0") "
			rm "$WORK/plain/mnt/w$r"
			sync "$WORK/plain/mnt"
		fi
	done
	log "write round $r: qsfs $(last "${T[wq]}") s (then qsfs sync $(last "${T[wsync]}") s), zdbfs $(last "${T[wz]}") s"
done
T[mem_write]=$(hwm_mib w)
T[wevict]=$(status_field w evictions)
umount "$WORK/plain/mnt"
wait "$ZDBFS_PID" || die "zdbfs exited with an error after unmount"
ZDBFS_PID=

# ---- 2 live RPO under a steady write load ------------------------------
log "phase 2: live RPO, $RATE_MIB MiB/s for $RPO_SECS s ..."
qs w sync
hwm_reset w
mkdir -p "$WORK/w/mnt/rpo"
(
	while :; do
		t0=$(now)
		status_field w rpo_seconds
		sleep "$(awk -v a="$t0" -v b="$(now)" 'BEGIN {d = 1 - (b - a); print (d > 0) ? d : 0}')"
	done
) >"$WORK/rpo.samples" &
SAMPLER=$!
PIDS+=("$SAMPLER")
start=$(now)
span=$((SIZE_MIB > RATE_MIB ? SIZE_MIB - RATE_MIB : 1))
for i in $(seq "$RPO_SECS"); do
	dd if="$SRC" of="$WORK/w/mnt/rpo/f$i" bs=1M count="$RATE_MIB" skip=$(((i * RATE_MIB) % span)) status=none
	sleep "$(awk -v s="$start" -v i="$i" -v n="$(now)" 'BEGIN {d = s + i - n; print (d > 0) ? d : 0}')"
done
stop_pid "$SAMPLER"
T[rpo]=$(tr '\n' ' ' <"$WORK/rpo.samples")
[[ -n ${T[rpo]// /} ]] || die "no rpo_seconds from qsfs status --json during the load"
T[rpo_written]=$(since "$start")
T[mem_rpo]=$(hwm_mib w)
umount_fs w

# ---- 3 cold read of evicted files against restic restore ----------------
log "phase 3: cold read of an evicted $SIZE_MIB MiB file, cache $READ_CACHE, $ROUNDS rounds ..."
new_fs r "$READ_CACHE"
mount_fs r
dd if="$SRC" of="$WORK/r/mnt/big" bs=1M conv=fsync status=none
mkdir "$WORK/r/mnt/small"
for i in $(seq "$TTFB_FILES"); do
	dd if=/dev/urandom of="$WORK/r/mnt/small/s$i" bs=1M count=1 status=none
done
log "  filler of $((read_cache_mib + 64)) MiB to push them out of the cache ..."
dd if=/dev/urandom of="$WORK/r/mnt/filler" bs=1M count=$((read_cache_mib + 64)) conv=fsync status=none
qs r sync
sleep 3 # the evictor checks local use every second
export RESTIC_PASSWORD=bench-password RESTIC_REPOSITORY=$WORK/restic-repo RESTIC_CACHE_DIR=$WORK/restic-cache
restic init --quiet >/dev/null
restic backup --quiet "$SRC" >/dev/null
for r in $(seq "$ROUNDS"); do
	order=(q x)
	((r % 2 == 0)) && order=(x q)
	for t in "${order[@]}"; do
		if [[ $t == q ]]; then
			umount_fs r
			drop_caches
			mount_fs r
			hwm_reset r
			f0=$(fetched r)
			for i in $(seq "$TTFB_FILES"); do
				t0=$(now)
				head -c 4096 "$WORK/r/mnt/small/s$i" >/dev/null
				T[ttfb]+="$(since "$t0") "
			done
			f1=$(fetched r)
			n0=$(fetched r fetches)
			t0=$(now)
			cat "$WORK/r/mnt/big" >/dev/null
			T[rq]+="$(since "$t0") "
			f2=$(fetched r)
			n1=$(fetched r fetches)
			T[rfetch]+="$(((f2 - f1) >> 20)) "
			T[rfetchn]+="$((n1 - n0)) "
			T[ttfbfetch]+="$(((f1 - f0) >> 10)) "
			T[mem_read]+="$(hwm_mib r) "
		else
			rm -rf "$WORK/restic-restore"
			drop_caches
			t0=$(now)
			restic restore --quiet latest --target "$WORK/restic-restore" >/dev/null
			T[rx]+="$(since "$t0") "
		fi
	done
	log "read round $r: qsfs cat $(last "${T[rq]}") s ($(last "${T[rfetch]}") MiB fetched in $(last "${T[rfetchn]}") range reads), restic restore $(last "${T[rx]}") s, ttfb $(awk '{for (i = NF - n + 1; i <= NF; i++) printf "%s ", $i}' n="$TTFB_FILES" <<<"${T[ttfb]}")s"
done
[[ $(sha256sum <"$WORK/r/mnt/big" | cut -d' ' -f1) == "$SRC_SUM" ]] || die "qsfs read back other bytes than were written (big)"
[[ $(sha256sum <"$WORK/restic-restore$SRC" | cut -d' ' -f1) == "$SRC_SUM" ]] || die "restic restored other bytes"
rm -rf "$WORK/restic-restore" "$WORK/restic-repo" "$WORK/restic-cache"
umount_fs r

# ---- 4 restore of a tree of small files against restic restore ----------
log "phase 4: restore of $FILES files of 1-8 KiB, $ROUNDS rounds ..."
TREE=$WORK/tree
mkdir -p "$TREE"
perl -e '
	my ($dir, $n) = @ARGV;
	open(my $rnd, "<", "/dev/urandom") or die "urandom: $!";
	for my $i (0 .. $n - 1) {
		my $d = sprintf("%s/d%03d", $dir, int($i / 100));
		-d $d or mkdir $d or die "$d: $!";
		read($rnd, my $b, 1024 + int(rand(7169))) or die "read: $!";
		open(my $f, ">", "$d/f$i") or die "$d/f$i: $!";
		print $f $b;
		close($f) or die "$d/f$i: $!";
	}' "$TREE" "$FILES"
tree_sum() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1); }
TREE_SUM=$(tree_sum "$TREE")
TREE_MIB=$(du -sm --apparent-size "$TREE" | cut -f1)
new_fs t "$((2048 + 3 * dfs_mib))M"
mount_fs t
t0=$(now)
cp -r "$TREE" "$WORK/t/mnt/tree"
sync "$WORK/t/mnt"
T[tcopy]=$(since "$t0")
t0=$(now)
qs t sync
T[tsync]=$(since "$t0")
entries=$(cd "$WORK/t/mnt" && ls -R | wc -l)
export RESTIC_REPOSITORY=$WORK/restic-tree
restic init --quiet >/dev/null
restic backup --quiet "$TREE" >/dev/null
for r in $(seq "$ROUNDS"); do
	order=(q x)
	((r % 2 == 0)) && order=(x q)
	for t in "${order[@]}"; do
		if [[ $t == q ]]; then
			umount_fs t
			rm -rf "$WORK/t/local"
			drop_caches
			timeout 600 /usr/bin/time -f '%e %M' -o "$WORK/t/restore.time" "$QSFS" -c "$WORK/t/qsfs.toml" restore >"$WORK/t/restore.log" 2>&1 ||
				die "qsfs restore failed: $(tail -n 5 "$WORK/t/restore.log")"
			read -r secs kib <"$WORK/t/restore.time"
			T[trestore]+="$secs "
			T[mem_restorecmd]+="$((kib / 1024)) "
			t0=$(now)
			mount_fs t
			n=$(cd "$WORK/t/mnt" && ls -R | wc -l)
			T[tusable]+="$(since "$t0") "
			[[ $n == "$entries" ]] || die "ls -R of the restored tree gives $n lines, $entries before"
			t0=$(now)
			sum=$(tree_sum "$WORK/t/mnt/tree")
			T[tread]+="$(since "$t0") "
			[[ $sum == "$TREE_SUM" ]] || die "the restored tree reads back other bytes than were written"
			T[mem_restore]+="$(hwm_mib t) "
		else
			rm -rf "$WORK/restic-restore"
			drop_caches
			t0=$(now)
			restic restore --quiet latest --target "$WORK/restic-restore" >/dev/null
			T[tx]+="$(since "$t0") "
			[[ $(tree_sum "$WORK/restic-restore$TREE") == "$TREE_SUM" ]] || die "restic restored other bytes (tree)"
		fi
	done
	log "restore round $r: qsfs restore $(last "${T[trestore]}") s, usable $(last "${T[tusable]}") s, full read $(last "${T[tread]}") s; restic restore $(last "${T[tx]}") s"
done
umount_fs t

# ---- summary -------------------------------------------------------------
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
wq=$(median <<<"${T[wq]}") wz=$(median <<<"${T[wz]}")
printf 'write %d MiB (dd bs=1M conv=fsync): qsfs with backups %s MiB/s (s: %s), plain zdbfs %s MiB/s (s: %s), ratio %s× (target ≥ 0.8×)\n' \
	"$SIZE_MIB" "$(mibps "$SIZE_MIB" "$wq")" "${T[wq]% }" "$(mibps "$SIZE_MIB" "$wz")" "${T[wz]% }" "$(ratio "$wz" "$wq")"
printf 'qsfs sync after the write (upload drain): median %s s (s: %s); data files evicted during the writes: %s (should be 0)\n' "$(median <<<"${T[wsync]}")" "${T[wsync]% }" "${T[wevict]:-unknown}"
rq=$(median <<<"${T[rq]}") rx=$(median <<<"${T[rx]}")
printf 'cold read of an evicted %d MiB file (cat): qsfs %s MiB/s (s: %s; MiB fetched from backends: %s, in range reads: %s), restic restore %s MiB/s (s: %s), ratio %s× (target ≥ 1.0×)\n' \
	"$SIZE_MIB" "$(mibps "$SIZE_MIB" "$rq")" "${T[rq]% }" "${T[rfetch]% }" "${T[rfetchn]% }" "$(mibps "$SIZE_MIB" "$rx")" "${T[rx]% }" "$(ratio "$rx" "$rq")"
printf 'time to first byte of an evicted 1 MiB file (head -c 4096): median %s ms, max %s ms over %d reads (KiB fetched per round: %s)\n' \
	"$(awk -v s="$(median <<<"${T[ttfb]}")" 'BEGIN {printf "%.0f", s*1000}')" "$(awk -v s="$(maxof <<<"${T[ttfb]}")" 'BEGIN {printf "%.0f", s*1000}')" \
	"$(wc -w <<<"${T[ttfb]}")" "${T[ttfbfetch]% }"
tr_=$(median <<<"${T[trestore]}") tu=$(median <<<"${T[tusable]}") td=$(median <<<"${T[tread]}") tx=$(median <<<"${T[tx]}")
printf 'restore %d files (%d MiB; written in %s s, qsfs sync %s s): qsfs restore %s s (s: %s), then mount to ls -R answering %s s (s: %s), full read %s s (s: %s); restic restore %s s (s: %s); usable (restore + mount + ls -R) vs restic restore %s×, restore + full read vs restic %s×\n' \
	"$FILES" "$TREE_MIB" "${T[tcopy]}" "${T[tsync]}" "$tr_" "${T[trestore]% }" "$tu" "${T[tusable]% }" "$td" "${T[tread]% }" "$tx" "${T[tx]% }" \
	"$(awk -v a="$tx" -v b="$tr_" -v c="$tu" 'BEGIN {printf "%.2f", a/(b+c)}')" "$(awk -v a="$tx" -v b="$tr_" -v c="$tu" -v d="$td" 'BEGIN {printf "%.2f", a/(b+c+d)}')"
printf 'live RPO at %d MiB/s for %d s (rpo %s): median %.2f s, max %.2f s over %d samples (target ≤ %s)\n' \
	"$RATE_MIB" "$RPO_SECS" "$RPO" "$(median <<<"${T[rpo]}")" "$(maxof <<<"${T[rpo]}")" "$(wc -w <<<"${T[rpo]}")" "$RPO"
printf 'qsfs peak RSS (VmHWM, MiB; target < 364 = 300 + the 64 MiB zdbfs cache): write %s, live RPO %s, cold read %s, restored mount %s, qsfs restore command %s\n' \
	"${T[mem_write]}" "${T[mem_rpo]}" "$(maxof <<<"${T[mem_read]}")" "$(maxof <<<"${T[mem_restore]}")" "$(maxof <<<"${T[mem_restorecmd]}")"
