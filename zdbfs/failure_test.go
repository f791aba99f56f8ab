package zdbfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"qss/zdb/client"
)

// TestLease: a second mount of the same namespaces is refused while the
// first one is live, and allowed after it unmounted.
func TestLease(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			b := newBackend(t, kind)
			mt := mountOn(t, b, Config{})
			_, err := New(context.Background(), Config{Meta: b.meta, Data: b.data, Logger: quietLogger()})
			if !errors.Is(err, ErrMounted) {
				t.Fatalf("second mount: %v", err)
			}
			mt.unmount()
			mountOn(t, b, Config{}).unmount()
		})
	}
}

// TestNoSpace: a full data namespace gives ENOSPC at write or fsync time,
// and after a remount every byte reported written (fsync'ed) is there,
// neither missing nor zeroed (0-db-fs lost the tail).
func TestNoSpace(t *testing.T) {
	b := newBackend(t, "client")
	ctx := context.Background()
	admin, err := client.New(ctx, client.Options{Addr: b.srv.Addr()})
	must(t, err)
	defer admin.Close()
	must(t, admin.NSSet(ctx, "data", "maxsize", "1000000"))
	mt := mountOn(t, b, Config{})
	f, err := os.Create(mt.path("big"))
	must(t, err)
	chunk := make([]byte, 64<<10)
	synced := 0
	var failure error
	for i := 0; i < 100 && failure == nil; i++ {
		for j := range chunk {
			chunk[j] = byte(i + 1)
		}
		if _, err := f.Write(chunk); err != nil {
			failure = err
			break
		}
		if err := f.Sync(); err != nil {
			failure = err
			break
		}
		synced += len(chunk)
	}
	f.Close()
	if !errors.Is(failure, syscall.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v after %d bytes", failure, synced)
	}
	mt.forceUnmount()
	mt = mountOn(t, b, Config{})
	got, err := os.ReadFile(mt.path("big"))
	must(t, err)
	if len(got) < synced {
		t.Fatalf("after remount %d bytes, %d were fsync'ed", len(got), synced)
	}
	for i := 0; i < synced; i += len(chunk) {
		if !bytes.Equal(got[i:i+len(chunk)], bytes.Repeat([]byte{byte(i/len(chunk) + 1)}, len(chunk))) {
			t.Fatalf("chunk at %d missing or zeroed after remount", i)
		}
	}
	mt.unmount()
}

// TestBackendDown: with zdb down, operations fail with EIO (never ENOENT),
// and the filesystem works again once zdb is back. The names are looked up
// on a fresh mount: names this mount has not seen must be asked of zdb
// (a directory created by the same mount can answer "absent" from memory).
func TestBackendDown(t *testing.T) {
	b := newBackend(t, "client")
	mt := mountOn(t, b, Config{})
	must(t, os.WriteFile(mt.path("kept"), []byte("kept"), 0o644))
	mt.unmount()
	mt = mountOn(t, b, Config{})
	b.srv.Kill()
	if _, err := os.Stat(mt.path("never-seen")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("lookup with zdb down: %v, want EIO", err)
	}
	if _, err := os.ReadFile(mt.path("kept")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("open of an existing file with zdb down: %v, want EIO", err)
	}
	if err := os.WriteFile(mt.path("new"), []byte("x"), 0o644); !errors.Is(err, syscall.EIO) {
		t.Fatalf("create with zdb down: %v, want EIO", err)
	}
	b.srv.RestartAfterKill()
	b.addr.Store(b.srv.Addr())
	time.Sleep(100 * time.Millisecond)
	must(t, os.WriteFile(mt.path("new"), []byte("back"), 0o644))
	got, err := os.ReadFile(mt.path("kept"))
	if err != nil || string(got) != "kept" {
		t.Fatalf("after restart: %q %v", got, err)
	}
	mt.unmount()
}
