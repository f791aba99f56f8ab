#!/usr/bin/env bash
# The whole test suite. Works on a fresh Debian machine with Go, as root:
# it installs the Debian packages the tests need, then runs vet, the tests
# (real zdb processes on loopback) and a short fuzz run.
set -euo pipefail
cd "$(dirname "$0")"

need_pkgs=()
command -v redis-cli >/dev/null 2>&1 || need_pkgs+=(redis-tools)   # zdb: redis-cli compatibility
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)        # zstor: the etcd metadata store
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)       # zdbfs: mounting as a user
command -v tar >/dev/null 2>&1 || need_pkgs+=(tar)                 # zdbfs: untar a source tree
if [ ${#need_pkgs[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
	echo "installing ${need_pkgs[*]} ..." >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
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
