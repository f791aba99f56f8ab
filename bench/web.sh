#!/usr/bin/env bash
# bench/web.sh — upload and download throughput of one large file through
# the web interface, against curl to a plain Go file server
# (bench/plainserver) on the same disk. Three servers, one disk:
#   plain  bench/plainserver: PUT / GET, no auth, no checks (the reference)
#   web    the web interface over a plain directory (web/internal/devserver):
#          login, tus upload (one PATCH), download through /api/files/download
#   qsfs   `qsfs demo`: the same web interface over the qsfs mount (zdbfs,
#          the local engine, uploads to six local backends running)
# Each transfer is run ROUNDS times; the best time of each is kept.
#
# Usage: bench/web.sh               (1 GiB, 3 rounds)
#        SIZE_MIB=64 ROUNDS=1 bench/web.sh   (a smoke run)
# Env: SIZE_MIB, ROUNDS, WORK (scratch directory on the disk to measure;
# default a new directory under /var/tmp, removed at the end), SKIP_QSFS=1.
# Needs: go, curl, python3; root and /dev/fuse for the qsfs part.
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/.."

if [[ -z "${WORK:-}" ]]; then
	WORK=$(mktemp -d /var/tmp/webbench.XXXXXX)
	own_work=1
else
	mkdir -p "$WORK"
	own_work=0
fi
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if mountpoint -q "$WORK/demo/mnt" 2>/dev/null; then umount -l "$WORK/demo/mnt" || true; fi
	if [[ $own_work == 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

go build -o "$WORK/plainserver" ./bench/plainserver
go build -o "$WORK/devserver" ./web/internal/devserver
go build -o "$WORK/qsfs" ./cmd/qsfs

src=$WORK/src.bin
echo "generating $SIZE_MIB MiB of random data" >&2
head -c $((SIZE_MIB << 20)) /dev/urandom >"$src"
size=$(stat -c %s "$src")

# wait_line FILE PATTERN: the first line of FILE matching PATTERN (30 s).
wait_line() {
	for _ in $(seq 300); do
		if l=$(grep -m1 -E "$2" "$1" 2>/dev/null); then echo "$l"; return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for /$2/ in $1:" >&2; cat "$1" >&2; return 1
}

# best CMD...: the best wall time (seconds) of ROUNDS runs of CMD.
best() {
	local b="" t0 t1 t
	for _ in $(seq "$ROUNDS"); do
		sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
		t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N)
		t=$(echo "$t1 - $t0" | bc -l)
		if [[ -z $b ]] || (( $(echo "$t < $b" | bc -l) )); then b=$t; fi
	done
	echo "$b"
}

mibs() { echo "scale=0; $size / 1048576 / $1" | bc -l; }

# --- plain ---
mkdir -p "$WORK/plain"
"$WORK/plainserver" -root "$WORK/plain" >"$WORK/plain.log" 2>&1 &
pids+=($!)
plain=$(wait_line "$WORK/plain.log" '^http://')
plain_up() { curl -sfS -o /dev/null -T "$src" "${plain}big.bin"; }
plain_down() { curl -sfS -o /dev/null "${plain}big.bin"; }
pu=$(best plain_up); pd=$(best plain_down)

# --- the web interface: login, tus create + one PATCH, download ---
# web_login URL USER PASS: sets JAR and CSRF.
web_login() {
	JAR=$WORK/jar.$RANDOM
	CSRF=$(curl -sfS -c "$JAR" -H 'Content-Type: application/json' \
		-d "{\"user\":\"$2\",\"password\":\"$3\"}" "${1}api/auth/login" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf"])')
}
web_up() { # URL
	local meta loc
	meta="filename $(printf 'big.bin' | base64),dir $(printf '/' | base64),overwrite $(printf 1 | base64)"
	loc=$(curl -sfS -b "$JAR" -H "X-CSRF-Token: $CSRF" -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $size" \
		-H "Upload-Metadata: $meta" -X POST -D - -o /dev/null "${1}api/upload/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
	[[ $loc == http* ]] || loc="${1%/}$loc"
	curl -sfS -b "$JAR" -H "X-CSRF-Token: $CSRF" -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
		-H 'Content-Type: application/offset+octet-stream' -X PATCH -T "$src" -o /dev/null "$loc"
}
web_down() { curl -sfS -b "$JAR" -o /dev/null "${1}api/files/download?path=/big.bin"; }

pass=bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$WORK/web" "$WORK/webstate"
"$WORK/devserver" -root "$WORK/web" -state "$WORK/webstate" -addr 127.0.0.1:0 -user bench -password "$pass" >"$WORK/web.log" 2>&1 &
pids+=($!)
web=$(wait_line "$WORK/web.log" '^serving' | grep -o 'http://[^ ]*')
web_login "$web" bench "$pass"
wu=$(best web_up "$web"); wd=$(best web_down "$web")
cmp "$src" "$WORK/web/big.bin"

echo
echo "file: $SIZE_MIB MiB, best of $ROUNDS; disk: $(df --output=source "$WORK" | tail -1)"
printf '%-34s %9s %9s %7s\n' "" "upload" "download" ""
printf '%-34s %6s MiB/s %6s MiB/s\n' "plain Go file server (curl)" "$(mibs "$pu")" "$(mibs "$pd")"
printf '%-34s %6s MiB/s %6s MiB/s   ratio up %.2f, down %.2f\n' "web interface, plain directory" "$(mibs "$wu")" "$(mibs "$wd")" \
	"$(echo "$pu / $wu" | bc -l)" "$(echo "$pd / $wd" | bc -l)"

if [[ ${SKIP_QSFS:-0} != 1 ]]; then
	"$WORK/qsfs" demo "$WORK/demo" >"$WORK/demo.log" 2>&1 &
	pids+=($!)
	qurl=$(wait_line "$WORK/demo.log" 'web: +http' | grep -o 'http://[^ ]*' | head -1)
	qpass=$(wait_line "$WORK/demo.log" 'login: +demo' | awk '{print $4}')
	web_login "$qurl" demo "$qpass"
	qu=$(best web_up "$qurl"); qd=$(best web_down "$qurl")
	cmp "$src" "$WORK/demo/mnt/big.bin"
	# The floor of the qsfs rows: the same file written and read on the
	# mount directly (dd, fsync like the upload's), same rounds.
	mount_up() { dd if="$src" of="$WORK/demo/mnt/direct.bin" bs=4M conv=fsync status=none; }
	mount_down() { dd if="$WORK/demo/mnt/direct.bin" of=/dev/null bs=4M status=none; }
	mu=$(best mount_up); md=$(best mount_down)
	printf '%-34s %6s MiB/s %6s MiB/s   ratio up %.2f, down %.2f\n' "web interface, qsfs demo mount" "$(mibs "$qu")" "$(mibs "$qd")" \
		"$(echo "$pu / $qu" | bc -l)" "$(echo "$pd / $qd" | bc -l)"
	printf '%-34s %6s MiB/s %6s MiB/s   (web over it: up %.2f, down %.2f)\n' "qsfs demo mount directly (dd)" "$(mibs "$mu")" "$(mibs "$md")" \
		"$(echo "$mu / $qu" | bc -l)" "$(echo "$md / $qd" | bc -l)"
fi
