#!/usr/bin/env bash
# The whole test suite. Works on a fresh Debian machine with Go, as root:
# it installs the Debian packages the tests need and staticcheck, then runs
# vet, gofmt, staticcheck, the tests (real zdb processes on loopback), the
# race detector (over all but two long tests), and a short fuzz run.
set -euo pipefail
cd "$(dirname "$0")"

# apt_get runs apt-get and waits up to 10 minutes for another apt-get or
# dpkg (another checkout's test run, an unattended upgrade) to let go of its
# lock instead of failing. DPkg::Lock::Timeout makes install wait for the
# dpkg lock; apt-get update (apt 2.6) ignores it and fails at once on the
# package lists' lock, so a failure over a lock is retried until the same
# deadline.
apt_get() {
	local deadline=$((SECONDS + 600)) out
	while :; do
		if out=$(LC_ALL=C DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1); then
			return 0
		fi
		if [[ $out != *"Could not get lock"* ]] || [ $SECONDS -ge $deadline ]; then
			printf '%s\n' "$out" >&2
			return 1
		fi
		echo "apt-get $*: another package manager holds its lock; waiting ..." >&2
		sleep 5
	done
}

need_pkgs=()
command -v redis-cli >/dev/null 2>&1 || need_pkgs+=(redis-tools)   # zdb: redis-cli compatibility
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)        # zstor: the etcd metadata store
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)       # zdbfs: mounting as a user
command -v tar >/dev/null 2>&1 || need_pkgs+=(tar)                 # zdbfs: untar a source tree
command -v litmus >/dev/null 2>&1 || need_pkgs+=(litmus)           # web/dav: the WebDAV conformance suite
command -v rclone >/dev/null 2>&1 || need_pkgs+=(rclone)           # web/dav: a real WebDAV client
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)       # web/e2e: the browser tests
command -v cwebp >/dev/null 2>&1 || need_pkgs+=(webp)              # web/files: a WebP thumbnail fixture
if [ ${#need_pkgs[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
	echo "installing ${need_pkgs[*]} ..." >&2
	apt_get update -qq
	apt_get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

# staticcheck, from the Go module proxy; a version that knows this Go.
staticcheck_version=v0.8.2 # staticcheck 2026.2.2
staticcheck="$(go env GOPATH)/bin/staticcheck"
if ! "$staticcheck" -version 2>/dev/null | grep -qF "(${staticcheck_version#v})"; then
	echo "installing staticcheck $staticcheck_version ..." >&2
	GOBIN="$(dirname "$staticcheck")" go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi

go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
"$staticcheck" ./...
go test -count=1 -timeout 20m ./...
# The race detector, over every package: the helper processes the tests
# start (zdb, zstor, zdbfs, the daemon) are race-built too, and a race that
# one of them reports fails its test (internal/racetest). Two tests that
# only push volume through one process are left out, as together they
# would add about two minutes: zdbfs TestUntarSourceTree (72 s under -race;
# 12.8k files) and cmd/zstor TestBigFile (55 s; 1 GiB); their
# code paths run, smaller, in the other tests. Measured on 2 cores: 116 s
# with a warm build cache, 198 s with a cold one (a new machine).
go test -race -count=1 -timeout 20m -skip '^(TestUntarSourceTree|TestBigFile)$' ./...
if [ -x .ci/fuzz.sh ] || [ -f .ci/fuzz.sh ]; then
	bash .ci/fuzz.sh
fi
