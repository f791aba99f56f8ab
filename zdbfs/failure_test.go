package zdbfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync/atomic"
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

// failingApply is a Store whose writes fail while fail is set.
type failingApply struct {
	Store
	fail atomic.Bool
}

func (s *failingApply) Apply(ctx context.Context, ops []Op) error {
	if s.fail.Load() {
		return &StoreError{Op: "apply", Err: errors.New("injected failure")}
	}
	return s.Store.Apply(ctx, ops)
}

// TestBlocksWaitForTheirMark: while the metadata namespace fails and the
// data namespace works, no block of a new file reaches zdb (the record
// with the raised high-water mark could not be stored first, so blocks
// there would be invisible to recovery and shown by a later grow), and
// once metadata writes work again a sync of the mount point stores
// everything, which a remount reads back.
func TestBlocksWaitForTheirMark(t *testing.T) {
	b := newBackend(t, "engine")
	fm := &failingApply{Store: b.meta}
	b.meta = fm
	mt := mountOn(t, b, Config{FlushAge: time.Hour})
	fm.fail.Store(true)
	data := bytes.Repeat([]byte("mark first;"), 20000) // 220,000 bytes: 4 blocks
	must(t, os.WriteFile(mt.path("f"), data, 0o644))
	var st syscall.Stat_t
	must(t, syscall.Stat(mt.path("f"), &st))
	ctx := context.Background()
	check := func() {
		for blk := range uint64(4) {
			if _, err := b.data.Get(ctx, blockKey(st.Ino, blk)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("block %d of a file whose records could not be stored is in zdb (err %v)", blk, err)
			}
		}
	}
	// The last close queued the file; every way of flushing it fails
	// before any block goes.
	time.Sleep(200 * time.Millisecond)
	check()
	root, err := os.Open(mt.Dir)
	must(t, err)
	defer root.Close()
	if err := root.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync of the mount point with metadata writes failing: %v, want EIO", err)
	}
	check()
	fm.fail.Store(false)
	must(t, root.Sync())
	got, err := os.ReadFile(mt.path("f"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	root.Close()
	mt.unmount()
	mt = mountOn(t, b, Config{})
	got, err = os.ReadFile(mt.path("f"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after remount: %d bytes, %v", len(got), err)
	}
	mt.unmount()
}

// TestStaleInodeFlush: an inode object evicted while queued for a flush
// (clean, the kernel forgot it) and replaced by a newer object of the
// same number must not flush the newer one's dirty blocks with its own
// old size and record: flushing it is a no-op, and the newer data is
// stored by the newer object.
func TestStaleInodeFlush(t *testing.T) {
	b := newBackend(t, "engine")
	mt := mountOn(t, b, Config{FlushAge: time.Hour})
	f := mt.m.FS
	ctx := context.Background()
	v1 := bytes.Repeat([]byte("old;"), 50000) // 200,000 bytes
	must(t, os.WriteFile(mt.path("x"), v1, 0o644))
	must(t, f.SyncAll(ctx))
	var st syscall.Stat_t
	must(t, syscall.Stat(mt.path("x"), &st))

	f.tmu.Lock()
	old := f.inodes[st.Ino]
	delete(f.inodes, st.Ino) // evicted, as once the kernel forgot it
	f.tmu.Unlock()
	newer, err := f.loadInode(ctx, st.Ino)
	must(t, err)
	if newer == old {
		t.Fatal("loadInode returned the evicted object")
	}
	v2 := bytes.Repeat([]byte("new data;"), 60000) // 540,000 bytes: longer
	newer.mu.Lock()
	_, err = f.writeLocked(ctx, newer, v2, 0)
	newer.mu.Unlock()
	must(t, err)

	old.mu.Lock()
	err = f.flushLocked(ctx, old) // what a stale queue entry would do
	old.mu.Unlock()
	must(t, err)
	if !f.cache.hasDirty(st.Ino) {
		t.Fatal("the evicted object's flush took the newer object's dirty blocks")
	}
	newer.mu.Lock()
	err = f.flushLocked(ctx, newer)
	newer.mu.Unlock()
	must(t, err)
	must(t, f.mlog.Flush(ctx))
	got := make([]byte, len(v2)+10)
	newer.mu.Lock()
	n, err := f.readLocked(ctx, newer, got, 0)
	newer.mu.Unlock()
	must(t, err)
	if !bytes.Equal(got[:n], v2) {
		t.Fatalf("read back %d bytes, want the newer %d", n, len(v2))
	}
	v, err := b.meta.Get(ctx, inodeKey(st.Ino))
	must(t, err)
	a, err := decodeInode(v)
	must(t, err)
	if a.Size != uint64(len(v2)) {
		t.Fatalf("stored size %d, want %d", a.Size, len(v2))
	}
	mt.forceUnmount()
}
