package zdbfs

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// TestPosix runs go-fuse's posixtest suite against a mount, over both
// Store implementations.
func TestPosix(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			mt := mountOn(t, newBackend(t, kind), Config{})
			names := make([]string, 0, len(posixtest.All))
			for n := range posixtest.All {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if n == "FcntlFlockLocksFile" {
					// This case expects two descriptors of one process to
					// conflict (open-file-description locks, as go-fuse's
					// loopback gives by forwarding to OFD locks). zdbfs
					// leaves POSIX locks to the kernel, which applies POSIX
					// per-process semantics: the same process never
					// conflicts with itself. FcntlFlockSetLk passes.
					continue
				}
				t.Run(n, func(t *testing.T) {
					dir := filepath.Join(mt.Dir, n)
					if err := os.Mkdir(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					posixtest.All[n](t, dir)
				})
			}
			mt.unmount()
		})
	}
}
