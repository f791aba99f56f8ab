package zstor_test

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/zstortest"
)

// TestTornStore: a file written to while Store reads it is read again; one
// that never stops changing fails with ErrChanged, commits nothing, frees
// the shards it wrote and leaves the previous version in place. Without
// the check, the first case commits a mix of the two versions (its
// checksum matches neither) and the second commits a version that never
// existed.
func TestTornStore(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	size := 3<<20 + 5 // more than the 1 MiB read buffer: the reads interleave with the writes
	p := cl.WriteFile("torn/f.bin", zstortest.RandomBytes(size))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scribble := func() {
		// Same size: only the bytes (and so the ctime) change.
		b := zstortest.RandomBytes(64)
		f.WriteAt(b, 0)
		f.WriteAt(b, int64(size-64))
	}

	// Changed once, during the first read: the second read is whole.
	calls := 0
	res, err := c.Store(ctx, p, zstor.StoreOptions{Progress: func(int) {
		if calls++; calls == 1 {
			scribble()
		}
	}})
	if err != nil {
		t.Fatalf("store of a file changed once: %v", err)
	}
	want, _ := zstor.LocalChecksum(p)
	if res.Checksum != want || res.Size != int64(size) {
		t.Fatalf("stored checksum %s, the file's is %s: a torn version was committed", res.Checksum, want)
	}

	// Changing all the time: refused, nothing committed or left behind.
	before := totalEntries(t, c)
	scribble() // changed, so not skipped as unchanged
	_, err = c.Store(ctx, p, zstor.StoreOptions{Progress: func(int) { scribble() }})
	if !errors.Is(err, zstor.ErrChanged) {
		t.Fatalf("store of a file that keeps changing: %v, want ErrChanged", err)
	}
	if got, err := c.Check(ctx, "torn/f.bin"); err != nil || got != want {
		t.Fatalf("after the refused store the stored checksum is %s (%v), want the previous %s", got, err, want)
	}
	if after := totalEntries(t, c); after != before {
		t.Fatalf("the refused store left %d shards on the backends", after-before)
	}

	// Changed through a size change only (truncate and extend back): also
	// caught, by the ctime.
	_, err = c.Store(ctx, p, zstor.StoreOptions{Progress: func(int) {
		f.Truncate(int64(size - 1))
		f.Truncate(int64(size))
	}})
	if !errors.Is(err, zstor.ErrChanged) {
		t.Fatalf("store of a file truncated and extended meanwhile: %v, want ErrChanged", err)
	}
}

// TestStoreFIFO: Store of a FIFO fails at once (a plain open would wait
// for a writer forever).
func TestStoreFIFO(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	p := cl.WriteFile("fifo/x", nil)
	os.Remove(p)
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Store(zstortest.Ctx(t), p, zstor.StoreOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("store of a FIFO succeeded")
		}
	case <-time.After(10 * time.Second):
		// Unblock the open so the goroutine ends.
		if w, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("store of a FIFO hangs")
	}
}
