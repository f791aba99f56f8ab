#!/usr/bin/env bash
# The whole test suite. Works on a fresh Debian machine with Go, as root:
# it installs the Debian packages the tests need, then runs vet, the tests
# (real zdb processes on loopback) and a short fuzz run.
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
if [ ${#need_pkgs[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
	echo "installing ${need_pkgs[*]} ..." >&2
	apt_get update -qq
	apt_get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go test -count=1 -timeout 20m ./...
if [ -x .ci/fuzz.sh ] || [ -f .ci/fuzz.sh ]; then
	bash .ci/fuzz.sh
fi
