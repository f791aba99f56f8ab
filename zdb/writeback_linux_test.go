package zdb

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWritebackStartsEarly: data written to a namespace does not stay
// dirty in the page cache until the rotation fsyncs it; all but the last
// writebackChunk have their write-out started (what keeps the fsync at
// rotation from stalling a SET). Needs cachestat(2) (Linux 6.5 or later).
func TestWritebackStartsEarly(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: DefaultDataSize, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	value := bytes.Repeat([]byte{0x5a}, 1<<20)
	const values = 3 * writebackChunk >> 20
	for i := range values {
		if _, err := ns.Set(fmt.Appendf(nil, "k%d", i), value, 0); err != nil {
			t.Fatal(err)
		}
	}
	ns.mu.RLock()
	f := ns.dataFiles[ns.cur]
	ns.mu.RUnlock()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var cs unix.Cachestat_t
	rng := unix.CachestatRange{Off: 0, Len: uint64(fi.Size())}
	if err := unix.Cachestat(uint(f.Fd()), &rng, &cs, 0); err != nil {
		t.Fatalf("cachestat(2) of the data file: %v (needs Linux 6.5 or later)", err)
	}
	dirty := int64(cs.Dirty) * int64(os.Getpagesize())
	if dirty > writebackChunk+int64(len(value)) {
		t.Fatalf("%d of %d bytes written are still dirty, want at most %d: write-out not started", dirty, fi.Size(), writebackChunk+len(value))
	}
}
