package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"qss/zstor/zstortest"
)

// TestCacheCapThroughFUSE: writing four times the cache cap through the
// mount keeps the local directory (as du sees it) within the cap plus one
// data file, during the writes and after; everything reads back, the
// evicted part fetched from the backends.
func TestCacheCapThroughFUSE(t *testing.T) {
	const capBytes, dataFile = 8 << 20, 1 << 20
	f := newFixture(t, `cache_size = "8M"
rpo = "2s"
data_file_size = "1M"
write_wait = "5s"`)
	p := f.mount()

	var mu sync.Mutex
	peak, samples := int64(0), 0
	worst := ""
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			u := diskUse(f.dir)
			mu.Lock()
			if u > capBytes+dataFile && u > peak {
				// What was there at the worst moment, for the failure's log.
				out, _ := exec.Command("du", "-a", "-B1", f.dir).Output()
				worst = string(out)
			}
			peak, samples = max(peak, u), samples+1
			mu.Unlock()
		}
	}()
	files := map[string][]byte{}
	for i := range 16 { // 16 × 2 MiB = 4 × the cap
		name := filepath.Join(f.mnt, fmt.Sprintf("f%02d", i))
		files[name] = zstortest.RandomBytes(2 << 20)
		writeFile(t, name, files[name])
	}
	f.mustRun(nil, "sync")
	close(stop)
	<-sampled
	peak = max(peak, diskUse(f.dir))
	t.Logf("du peaked at %d bytes over %d samples (cap %d + one data file %d)", peak, samples, capBytes, dataFile)
	if peak > capBytes+dataFile {
		t.Errorf("local use peaked at %d bytes, over the cap %d + one data file; then:\n%s", peak, capBytes, worst)
	}
	if samples < 3 {
		t.Errorf("only %d samples of du during the writes", samples)
	}

	if s, _ := f.status(); s.Evictions == 0 {
		t.Errorf("nothing was evicted (status %+v)", s)
	}
	// A new mount: neither the kernel's page cache nor zdbfs's holds the
	// files, so what was evicted is fetched.
	p.stop()
	f.mount()
	for name, want := range files {
		checkFile(t, name, want)
	}
	if s, _ := f.status(); s.Fetches == 0 {
		t.Errorf("nothing was fetched reading back four times the cache (status %+v)", s)
	}
	if u := diskUse(f.dir); u > capBytes+dataFile {
		t.Errorf("local use after reading everything back: %d bytes", u)
	}
}
