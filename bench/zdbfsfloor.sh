#!/usr/bin/env bash
# bench/zdbfsfloor.sh — zdbfs against the FUSE floor (go-fuse's loopback)
# and the disk, side by side in the same run, round after round.
#
#   bench/zdbfsfloor.sh                                # as root, from inside a clone
#   VARIANTS="default;entrytimeout=1h,attrtimeout=1h" bench/zdbfsfloor.sh
#
# It builds ./cmd/zdb, ./cmd/zdbfs, ./bench/zdbfsfiles and go-fuse's
# example/loopback, starts one zdb (files on local disk), mounts one zdbfs
# per variant (its own namespaces; a variant is a list of zdbfs -o options,
# "default" for none) and the loopback over a directory of the same disk.
# Then, ROUNDS times, interleaved so that a change of machine load hits
# every target alike:
#
#   create   N files of 1 KiB in 10 directories (bench/zdbfsfiles), then
#            made durable: `sync MOUNTPOINT` on zdbfs (an fsync of its root
#            stores everything in zdb; syncfs never reaches a FUSE server),
#            syncfs of the directory under the loopback
#   untar    tar -xf of a tar of UNTAR_SRC (read once beforehand, so it
#            comes from the page cache), made durable the same way; the
#            tree is removed (untimed) before the next round
#   read     cold sequential read of a READ_SIZE file with dd bs=1M: on
#            the disk after dropping caches; on zdbfs (first variant only)
#            after an unmount, dropping caches and a remount
#
# and prints the median of each target and its ratio to the loopback (create,
# untar) or to the disk (read). Targets (issue 13): create and untar ≤ 1.0×
# the loopback's time; cold sequential read ≥ 0.8× the disk.
#
# Environment (defaults in brackets): ROUNDS [5], N [5000], UNTAR_SRC
# [/usr/include], READ_SIZE [512M], VARIANTS ["default"], BENCH_DIR
# [/var/tmp], ZDB_PORT [19970], SKIP_READ=1 (no read), SKIP_META=1 (read only),
# KEEP_TMP=1.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
N=${N:-5000}
UNTAR_SRC=${UNTAR_SRC:-/usr/include}
READ_SIZE=${READ_SIZE:-512M}
VARIANTS=${VARIANTS:-default}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
ZDB_PORT=${ZDB_PORT:-19970}
SKIP_READ=${SKIP_READ:-0}
SKIP_META=${SKIP_META:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '%s\n' "$*" >&2; }
die() { log "zdbfsfloor.sh: $*"; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root: dropping caches and mounting need it"
for c in fusermount3 tar go dd awk; do command -v "$c" >/dev/null || die "$c not found"; done

IFS=';' read -r -a VARS <<<"$VARIANTS"
WORK=$(mktemp -d "$BENCH_DIR/zdbfsfloor.XXXXXX")
ZDB_PID= LB_PID=
declare -A ZPID # variant index -> zdbfs pid

is_mounted() { grep -qs " $1 fuse" /proc/self/mounts; }
stop_pid() {
	[[ -n $1 ]] || return 0
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for m in "$WORK"/mnt* "$WORK/lb"; do
		is_mounted "$m" && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
	done
	for p in "${ZPID[@]}"; do stop_pid "$p"; done
	stop_pid "$LB_PID"
	stop_pid "$ZDB_PID"
	if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building ..."
(cd "$ROOT" && go build -o "$WORK/bin/zdb" ./cmd/zdb && go build -o "$WORK/bin/zdbfs" ./cmd/zdbfs &&
	go build -o "$WORK/bin/zdbfsfiles" ./bench/zdbfsfiles &&
	go build -o "$WORK/bin/loopback" github.com/hanwen/go-fuse/v2/example/loopback) || die "go build failed"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while port_busy "$ZDB_PORT"; do ZDB_PORT=$((ZDB_PORT + 1)); done
mkdir -p "$WORK/zdb/data" "$WORK/zdb/index" "$WORK/disk" "$WORK/lb" "$WORK/lborig"
"$WORK/bin/zdb" --listen 127.0.0.1 --port "$ZDB_PORT" --data "$WORK/zdb/data" --index "$WORK/zdb/index" \
	>"$WORK/zdb.log" 2>&1 &
ZDB_PID=$!
for _ in $(seq 100); do port_busy "$ZDB_PORT" && break; sleep 0.1; done
port_busy "$ZDB_PORT" || die "zdb does not listen"

mount_variant() { # index
	local i=$1 o=${VARS[$1]} opts
	opts="host=127.0.0.1,port=$ZDB_PORT,autons,mn=meta$i,dn=data$i"
	[[ $o != default ]] && opts+=",$o"
	mkdir -p "$WORK/mnt$i"
	"$WORK/bin/zdbfs" -o "$opts" "$WORK/mnt$i" >>"$WORK/zdbfs$i.log" 2>&1 &
	ZPID[$i]=$!
	for _ in $(seq 300); do is_mounted "$WORK/mnt$i" && return 0; sleep 0.1; done
	tail "$WORK/zdbfs$i.log" >&2
	die "zdbfs ($o) did not mount"
}
umount_variant() {
	umount "$WORK/mnt$1" || die "cannot unmount $WORK/mnt$1"
	wait "${ZPID[$1]}" || die "zdbfs exited with an error after unmount: $(tail -n 3 "$WORK/zdbfs$1.log")"
}
for i in "${!VARS[@]}"; do mount_variant "$i"; done
"$WORK/bin/loopback" "$WORK/lb" "$WORK/lborig" >"$WORK/loopback.log" 2>&1 &
LB_PID=$!
for _ in $(seq 100); do is_mounted "$WORK/lb" && break; sleep 0.1; done
is_mounted "$WORK/lb" || die "loopback did not mount"

tar -C "$(dirname "$UNTAR_SRC")" -cf "$WORK/src.tar" "$(basename "$UNTAR_SRC")"
cat "$WORK/src.tar" >/dev/null
entries=$(tar -tf "$WORK/src.tar" | wc -l)

echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "command: ROUNDS=$ROUNDS N=$N UNTAR_SRC=$UNTAR_SRC READ_SIZE=$READ_SIZE VARIANTS=\"$VARIANTS\" bench/zdbfsfloor.sh"
echo "host: nproc=$(nproc), $(uname -sr), disk $(df -T "$WORK" | awk 'NR==2 {print $2" "$1}')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "untar: $UNTAR_SRC, $entries entries, $(($(stat -c %s "$WORK/src.tar") / 1048576)) MiB"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b-a}'; }
last() { awk '{print $NF}' <<<"$1"; }
declare -A T # T[target,workload] = space-separated seconds

# target -> directory to work in, command to make it durable
dir_of() { if [[ $1 == lb ]]; then echo "$WORK/lb"; else echo "$WORK/mnt${1#z}"; fi; }
durable() { if [[ $1 == lb ]]; then sync -f "$WORK/lborig"; else sync "$WORK/mnt${1#z}"; fi; }
targets=(lb)
for i in "${!VARS[@]}"; do targets+=("z$i"); done
name_of() { if [[ $1 == lb ]]; then echo "go-fuse loopback"; else echo "zdbfs ${VARS[${1#z}]}"; fi; }

for r in $(seq "$ROUNDS"); do
	[[ $SKIP_META == 1 ]] && break
	# Alternate the order every round.
	order=("${targets[@]}")
	((r % 2 == 0)) && order=($(printf '%s\n' "${targets[@]}" | tac))
	for t in "${order[@]}"; do
		d=$(dir_of "$t")
		sync
		t0=$(now)
		"$WORK/bin/zdbfsfiles" -dir "$d/files$r" -n "$N" -size 1024 -dirs 10 >/dev/null
		durable "$t"
		T[$t,create]+="$(since "$t0") "
		mkdir -p "$d/untar$r"
		sync
		t0=$(now)
		tar -C "$d/untar$r" -xf "$WORK/src.tar"
		t1=$(now)
		durable "$t"
		T[$t,untar]+="$(since "$t0") "
		T[$t,untarsync]+="$(since "$t1") "
		rm -rf "$d/untar$r" "$d/files$r"
		durable "$t"
	done
	log "round $r: $(for t in "${targets[@]}"; do
		printf '%s create %s s, untar %s s (sync %s s); ' "$t" "$(last "${T[$t,create]}")" \
			"$(last "${T[$t,untar]}")" "$(last "${T[$t,untarsync]}")"
	done)"
done

if [[ $SKIP_READ != 1 ]]; then
	dd if=/dev/urandom of="$WORK/disk/read.dat" bs=1M count="$(($(numfmt --from=iec "$READ_SIZE") / 1048576))" status=none
	for i in "${!VARS[@]}"; do
		cp "$WORK/disk/read.dat" "$WORK/mnt$i/read.dat"
		sync "$WORK/mnt$i"
	done
	for r in $(seq "$ROUNDS"); do
		sync
		sleep 2
		echo 3 >/proc/sys/vm/drop_caches
		t0=$(now)
		dd if="$WORK/disk/read.dat" of=/dev/null bs=1M status=none
		T[disk,read]+="$(since "$t0") "
		for i in "${!VARS[@]}"; do
			umount_variant "$i"
			sync
			sleep 2
			echo 3 >/proc/sys/vm/drop_caches
			mount_variant "$i"
			t0=$(now)
			dd if="$WORK/mnt$i/read.dat" of=/dev/null bs=1M status=none
			T[z$i,read]+="$(since "$t0") "
		done
		log "read round $r: disk $(last "${T[disk,read]}") s, $(for i in "${!VARS[@]}"; do printf 'z%s %s s ' "$i" "$(last "${T[z$i,read]}")"; done)"
	done
fi

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
[[ $SKIP_META == 1 ]] || echo "| target | create $N × 1 KiB + sync (s) | vs loopback | untar $(basename "$UNTAR_SRC") + sync (s) | vs loopback |"
[[ $SKIP_META == 1 ]] || echo "|---|---:|---:|---:|---:|"
lbc=$(median <<<"${T[lb,create]:-}")
lbu=$(median <<<"${T[lb,untar]:-}")
for t in "${targets[@]}"; do
	[[ $SKIP_META == 1 ]] && break
	c=$(median <<<"${T[$t,create]}")
	u=$(median <<<"${T[$t,untar]}")
	printf '| %s | %s (%s) | %s× | %s (%s) | %s× |\n' "$(name_of "$t")" "$c" "${T[$t,create]% }" \
		"$(awk -v a="$c" -v b="$lbc" 'BEGIN {printf "%.2f", a/b}')" "$u" "${T[$t,untar]% }" \
		"$(awk -v a="$u" -v b="$lbu" 'BEGIN {printf "%.2f", a/b}')"
done
if [[ $SKIP_READ != 1 ]]; then
	bytes=$(numfmt --from=iec "$READ_SIZE")
	dr=$(median <<<"${T[disk,read]}")
	echo
	echo "| cold sequential read $READ_SIZE (dd bs=1M) | s (median) | all | MB/s | vs disk |"
	echo "|---|---:|---|---:|---:|"
	printf '| disk | %s | %s | %.0f | 1.00× |\n' "$dr" "${T[disk,read]% }" "$(awk -v b="$bytes" -v s="$dr" 'BEGIN {print b/1048576/s}')"
	for i in "${!VARS[@]}"; do
		zr=$(median <<<"${T[z$i,read]}")
		printf '| %s | %s | %s | %.0f | %s× |\n' "$(name_of "z$i")" "$zr" "${T[z$i,read]% }" \
			"$(awk -v b="$bytes" -v s="$zr" 'BEGIN {print b/1048576/s}')" "$(awk -v a="$dr" -v b="$zr" 'BEGIN {printf "%.2f", a/b}')"
	done
fi
