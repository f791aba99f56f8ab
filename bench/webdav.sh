#!/usr/bin/env bash
# bench/webdav.sh — how fast rclone copies a tree into qsfs's WebDAV server
# (web/dav behind auth.Basic, serving a directory through fsys.OpenRoot)
# compared with `rclone serve webdav` serving a directory on the same disk.
#
# Usage: bench/webdav.sh            (2,000 files of mixed sizes, ~200 MiB)
#        FILES=20 TOTAL_MIB=2 bench/webdav.sh     (a smoke run)
# Env: FILES, TOTAL_MIB, WORK (scratch directory; default a new temp dir,
# removed at the end), TRANSFERS (rclone --transfers, default 4).
# Needs: go, rclone (Debian package rclone).
set -euo pipefail

FILES=${FILES:-2000}
TOTAL_MIB=${TOTAL_MIB:-200}
TRANSFERS=${TRANSFERS:-4}
cd "$(dirname "$0")/.."

command -v rclone >/dev/null || { echo "rclone not found: apt-get install -y rclone" >&2; exit 1; }

if [[ -z "${WORK:-}" ]]; then
	WORK=$(mktemp -d)
	own_work=1
else
	mkdir -p "$WORK"
	own_work=0
fi
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ $own_work == 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

src=$WORK/src ours=$WORK/ours theirs=$WORK/theirs
rm -rf "$src" "$ours" "$theirs"
mkdir -p "$src" "$ours" "$theirs"

# The source: FILES files in 20 folders; every tenth is large (5.5 times
# the mean size), the others small (half the mean), TOTAL_MIB in all.
mean=$(( TOTAL_MIB * 1024 * 1024 / FILES ))
echo "generating $FILES files, ~$TOTAL_MIB MiB, in $src" >&2
for ((i = 0; i < FILES; i++)); do
	d=$src/dir$(( i % 20 ))
	[[ -d $d ]] || mkdir -p "$d"
	if (( i % 10 == 0 )); then size=$(( mean * 11 / 2 )); else size=$(( mean / 2 )); fi
	head -c "$size" /dev/urandom >"$d/file$i.bin"
done

pass=bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
go build -o "$WORK/davbench" ./web/dav/internal/davbench

# Our server, on a free loopback port it prints.
"$WORK/davbench" -dir "$ours" -user bench -pass "$pass" >"$WORK/ours.log" 2>&1 &
pids+=($!)
# rclone's own WebDAV server, same disk.
rclone serve webdav "$theirs" --addr 127.0.0.1:0 --user bench --pass "$pass" >"$WORK/theirs.log" 2>&1 &
pids+=($!)

ours_url="" theirs_url=""
for _ in $(seq 100); do
	ours_url=$(sed -n 's/^listening on \(http[^ ]*\)$/\1/p' "$WORK/ours.log")
	theirs_url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$WORK/theirs.log" | head -1 || true)
	[[ -n $ours_url && -n $theirs_url ]] && break
	sleep 0.1
done
[[ -n $ours_url ]] || { echo "davbench did not start:" >&2; cat "$WORK/ours.log" >&2; exit 1; }
[[ -n $theirs_url ]] || { echo "rclone serve webdav did not start:" >&2; cat "$WORK/theirs.log" >&2; exit 1; }

obscured=$(rclone obscure "$pass")
export RCLONE_CONFIG=$WORK/rclone.conf
: >"$RCLONE_CONFIG"
for name in OURS THEIRS; do
	export "RCLONE_CONFIG_${name}_TYPE=webdav" "RCLONE_CONFIG_${name}_VENDOR=other"
	export "RCLONE_CONFIG_${name}_USER=bench" "RCLONE_CONFIG_${name}_PASS=$obscured"
done
export RCLONE_CONFIG_OURS_URL=$ours_url RCLONE_CONFIG_THEIRS_URL=$theirs_url

# copy REMOTE: times rclone copy of the source into REMOTE, checks the
# result by size and prints the seconds.
copy() {
	local t0 t1
	t0=$(date +%s.%N)
	rclone copy --transfers "$TRANSFERS" "$src" "$1:" >&2
	t1=$(date +%s.%N)
	rclone check --size-only --one-way "$src" "$1:" >&2 2>"$WORK/check.log" || {
		echo "copy into $1 is incomplete:" >&2; cat "$WORK/check.log" >&2; exit 1; }
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

echo "copying into qsfs WebDAV ($ours_url)" >&2
t_ours=$(copy ours)
echo "copying into rclone serve webdav ($theirs_url)" >&2
t_theirs=$(copy theirs)

# curlput URL DESTDIR: the same tree with plain WebDAV requests, MKCOL per
# folder then every file PUT by curl --parallel (TRANSFERS at once): the
# servers' own cost, without rclone's client pacing (rclone 1.60's WebDAV
# backend spaces its calls at least 10 ms apart: about 30 ms a file).
curlput() {
	local t0 t1 cfg=$WORK/curl.$RANDOM dest
	dest=${1%/}/$2
	: >"$cfg"
	printf 'url = "%s/"\noutput = "/dev/null"\n' "$dest" >>"$cfg"
	for d in "$src"/*/; do
		printf 'url = "%s/%s/"\noutput = "/dev/null"\n' "$dest" "$(basename "$d")" >>"$cfg"
	done
	t0=$(date +%s.%N)
	curl -sS -f -u "bench:$pass" -X MKCOL -K "$cfg" >&2
	: >"$cfg"
	(cd "$src" && find . -type f) | sed 's|^\./||' | while read -r f; do
		printf 'url = "%s/%s"\nupload-file = "%s/%s"\noutput = "/dev/null"\n' "$dest" "$f" "$src" "$f"
	done >"$cfg"
	curl -sS -f --no-progress-meter -u "bench:$pass" --parallel --parallel-max "$TRANSFERS" -K "$cfg" >&2
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
echo "curl PUTs into qsfs WebDAV and rclone serve webdav" >&2
c_ours=$(curlput "$ours_url" curl)
c_theirs=$(curlput "$theirs_url" curl)
n_ours=$(find "$ours/curl" -type f | wc -l) n_theirs=$(find "$theirs/curl" -type f | wc -l)
[[ $n_ours == "$FILES" && $n_theirs == "$FILES" ]] || { echo "curl PUT: $n_ours and $n_theirs files, want $FILES" >&2; exit 1; }

printf 'files %d, %d MiB, transfers %d\n' "$FILES" "$TOTAL_MIB" "$TRANSFERS"
printf 'curl PUT, qsfs webdav:          %.2f s\n' "$c_ours"
printf 'curl PUT, rclone serve webdav:  %.2f s\n' "$c_theirs"
printf 'curl PUT ratio (qsfs/rclone):   %.2f\n' "$(awk -v a="$c_ours" -v b="$c_theirs" 'BEGIN { print a / b }')"
printf 'rclone copy, qsfs webdav:         %.2f s\n' "$t_ours"
printf 'rclone copy, rclone serve webdav: %.2f s\n' "$t_theirs"
printf 'rclone copy ratio (qsfs/rclone):  %.2f\n' "$(awk -v a="$t_ours" -v b="$t_theirs" 'BEGIN { print a / b }')"
