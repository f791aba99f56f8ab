package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"qss/zstor/zstortest"
)

// TestLoseTwoBackends: with n−k = 2 data backends gone, what the cache
// evicted still reads back correctly from the other four, and status
// reports the two unreachable (exit 2).
func TestLoseTwoBackends(t *testing.T) {
	f := newFixture(t, `cache_size = "4M"
rpo = "2s"
data_file_size = "1M"`)
	p := f.mount()
	files := map[string][]byte{}
	for i := range 12 { // three times the cache
		name := filepath.Join(f.mnt, fmt.Sprintf("f%02d", i))
		files[name] = zstortest.RandomBytes(1 << 20)
		writeFile(t, name, files[name])
	}
	f.mustRun(nil, "sync")
	p.stop()

	f.cl.Data[1].Stop()
	f.cl.Data[4].Stop()
	// A new mount: nothing of the files is in a memory cache.
	f.mount()
	for name, want := range files {
		checkFile(t, name, want)
	}
	s, code := f.status()
	if s.Fetches == 0 {
		t.Error("nothing was fetched: the reads did not need the backends")
	}
	down := map[string]bool{}
	for _, b := range s.Backends {
		if !b.Reachable {
			down[b.Address] = true
		}
	}
	if code != exitAtRisk || len(down) != 2 || !down[f.cl.Data[1].Addr()] || !down[f.cl.Data[4].Addr()] {
		t.Errorf("status with two backends down: exit %d, unreachable %v, at risk %q (want exit %d, %s and %s)",
			code, down, s.AtRisk, exitAtRisk, f.cl.Data[1].Addr(), f.cl.Data[4].Addr())
	}
	t.Logf("fetches %d, at risk %q", s.Fetches, s.AtRisk)
}
