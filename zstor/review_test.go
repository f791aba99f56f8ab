package zstor_test

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qss/zdb/client"
	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/meta"
	"qss/zstor/pipeline"
	"qss/zstor/zstortest"
)

// store -d must delete the file it uploaded, never another one: a file
// replaced by rename while it was being uploaded (how most writers replace
// files) has content that was never stored, and must be kept.
func TestReviewDeleteLocalKeepsReplacedFile(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	p := cl.WriteFile("replaced.bin", zstortest.RandomBytes(3*cl.ChunkSize))
	newer := zstortest.RandomBytes(cl.ChunkSize + 7)
	var once sync.Once
	_, err := c.Store(ctx, p, zstor.StoreOptions{DeleteLocal: true, Progress: func(int) {
		once.Do(func() {
			tmp := p + ".new"
			if err := os.WriteFile(tmp, newer, 0o644); err != nil {
				t.Error(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Error(err)
			}
		})
	}})
	got, rerr := os.ReadFile(p)
	if rerr != nil || !bytes.Equal(got, newer) {
		t.Fatalf("the file renamed over %s during the upload was deleted (store err: %v; read: %v)", p, err, rerr)
	}
	if err == nil {
		t.Errorf("store -d of a file replaced during the upload reported success")
	}
}

// gate is the real metadata store with one pause: the first call made
// with a marked context after that context's first Get waits until
// released. It orders a rebuild against a concurrent store without
// changing what either does.
type gate struct {
	meta.Store
	mu      sync.Mutex
	gets    int
	paused  chan struct{} // closed when the marked call waits
	release chan struct{}
	once    sync.Once
}

type markKey struct{}

func (g *gate) wait(ctx context.Context) {
	if ctx.Value(markKey{}) == nil {
		return
	}
	g.mu.Lock()
	g.gets++
	n := g.gets
	g.mu.Unlock()
	if n == 2 {
		g.once.Do(func() { close(g.paused) })
		<-g.release
	}
}

func (g *gate) Get(ctx context.Context, key string) ([]byte, error) {
	g.wait(ctx)
	return g.Store.Get(ctx, key)
}

func (g *gate) Put(ctx context.Context, key string, v []byte) error {
	g.wait(ctx)
	return g.Store.Put(ctx, key, v)
}

func (g *gate) Delete(ctx context.Context, key string) error {
	g.wait(ctx)
	return g.Store.Delete(ctx, key)
}

func (g *gate) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return g.Store.Keys(ctx, prefix)
}

// A rebuild that read a record must not commit it over a newer version
// (or over a delete) committed meanwhile: the newer store has freed the
// shards the stale record names, so committing it loses both versions.
func TestReviewRebuildDoesNotCommitStaleRecord(t *testing.T) {
	for _, tc := range []string{"store", "delete"} {
		t.Run(tc, func(t *testing.T) {
			cl := zstortest.New(t, 7)
			text := cl.ConfigTOML(zstortest.TestKey, "")
			cfg, err := config.Parse([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			ctx := zstortest.Ctx(t)
			ms, err := meta.NewZDB(ctx, cfg.Meta.Backends, cfg.Meta.Prefix, meta.WithSealer(pipeline.NewMetaSealer(cfg.MetaKey())))
			if err != nil {
				t.Fatal(err)
			}
			g := &gate{Store: ms, paused: make(chan struct{}), release: make(chan struct{})}
			c, err := zstor.Open(ctx, cfg, zstor.Options{Meta: g, Backend: backend.Options{
				DownFor: 300 * time.Millisecond, DialTimeout: time.Second, IOTimeout: 5 * time.Second}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			p := cl.WriteFile("v.bin", zstortest.RandomBytes(2*cl.ChunkSize))
			if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
				t.Fatal(err)
			}
			// Lose one shard, so that the rebuild has work to do.
			rec, err := c.Stat(ctx, "v.bin")
			if err != nil {
				t.Fatal(err)
			}
			l := rec.Locations[0][0]
			if err := c.Backends().Lookup(l.Backend).Delete(ctx, l.Seq); err != nil {
				t.Fatal(err)
			}

			var rebuildErr atomic.Value
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, err := c.Rebuild(context.WithValue(ctx, markKey{}, true), "v.bin")
				if err != nil {
					rebuildErr.Store(err)
				}
			}()
			select {
			case <-g.paused:
			case <-done:
				t.Fatalf("rebuild ended without committing: %v", rebuildErr.Load())
			}
			// Meanwhile: a new version, or a delete, commits.
			newer := zstortest.RandomBytes(cl.ChunkSize + 3)
			if tc == "store" {
				cl.WriteFile("v.bin", newer)
				if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
					t.Fatal(err)
				}
			} else if _, err := c.Delete(ctx, "v.bin"); err != nil {
				t.Fatal(err)
			}
			close(g.release)
			<-done

			if tc == "delete" {
				if _, err := c.Check(ctx, "v.bin"); !errors.Is(err, zstor.ErrNotStored) {
					t.Fatalf("a deleted object came back after a concurrent rebuild (check: %v; rebuild: %v)", err, rebuildErr.Load())
				}
				return
			}
			os.Remove(p)
			if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
				t.Fatalf("the object is unreadable after a rebuild raced a store: %v (rebuild: %v)", err, rebuildErr.Load())
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, newer) {
				t.Fatalf("retrieved %d bytes, not the newer version (rebuild: %v)", len(got), rebuildErr.Load())
			}
		})
	}
}

// A cancelled operation (a client that gives up) must not make the
// backends look unusable to the operations that follow.
func TestReviewCancelledCallDoesNotPoisonHealth(t *testing.T) {
	cl := zstortest.New(t, 6)
	ctx := zstortest.Ctx(t)

	t.Run("snapshot", func(t *testing.T) {
		c := open(t, cl, zstortest.TestKey, "")
		if n := c.Backends().Connect(ctx); n != 6 {
			t.Fatalf("%d backends answered", n)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		c.List(cctx, "")
		p := cl.WriteFile("after-cancel.bin", zstortest.RandomBytes(1000))
		if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
			t.Fatalf("store right after a cancelled list: %v", err)
		}
	})
	t.Run("dial", func(t *testing.T) {
		c := open(t, cl, zstortest.TestKey, "")
		b := c.Backends().All()[0]
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := b.Put(cctx, []byte("x")); err == nil {
			t.Fatal("put with a cancelled context succeeded")
		}
		if b.Down() {
			t.Fatalf("backend %s marked down because a caller cancelled its dial", b)
		}
	})
}

// A store whose metadata commit fails (here: its caller gives up during
// the commit) undoes it by putting the previous record back. That must not
// happen over a newer version committed meanwhile by another store, which
// has already freed the previous record's shards: the object would come
// back as the previous version, unreadable, and both newer ones be lost.
func TestReviewStoreUndoDoesNotRestoreStaleRecord(t *testing.T) {
	cl := zstortest.New(t, 6)
	text := cl.ConfigTOML(zstortest.TestKey, "")
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	ctx := zstortest.Ctx(t)
	ms, err := meta.NewZDB(ctx, cfg.Meta.Backends, cfg.Meta.Prefix, meta.WithSealer(pipeline.NewMetaSealer(cfg.MetaKey())))
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Store: ms, paused: make(chan struct{}), release: make(chan struct{})}
	c, err := zstor.Open(ctx, cfg, zstor.Options{Meta: g, Backend: backend.Options{
		DownFor: 300 * time.Millisecond, DialTimeout: time.Second, IOTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	p := cl.WriteFile("u.bin", zstortest.RandomBytes(2*cl.ChunkSize))
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	v1 := zstortest.RandomBytes(cl.ChunkSize + 1)
	cl.WriteFile("u.bin", v1)
	actx, cancel := context.WithCancel(context.WithValue(ctx, markKey{}, true))
	defer cancel()
	var storeErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, storeErr = c.Store(actx, p, zstor.StoreOptions{})
	}()
	select {
	case <-g.paused: // its commit is about to start
	case <-done:
		t.Fatalf("store ended before its commit: %v", storeErr)
	}
	// Meanwhile another store of the key commits (and frees the first
	// version's shards).
	q := filepath.Join(t.TempDir(), "v2")
	v2 := zstortest.RandomBytes(cl.ChunkSize + 2)
	if err := os.WriteFile(q, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(ctx, q, zstor.StoreOptions{Key: "u.bin"}); err != nil {
		t.Fatal(err)
	}
	cancel() // the first store's caller gives up during its commit
	close(g.release)
	<-done
	time.Sleep(200 * time.Millisecond) // let the cancelled write land, if it does
	os.Remove(p)
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatalf("object unreadable after an undone commit raced another store: %v (first store: %v)", err, storeErr)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, v1) && !bytes.Equal(got, v2) {
		t.Fatalf("retrieved neither of the two newer versions (first store: %v)", storeErr)
	}
}

// A store whose metadata commit fails frees its new shards only once the
// previous record is back in place. When writing the previous record back
// fails too, the new record may still be on some metadata backends (or
// land there later, and spread by read repair), so the new shards must be
// kept: freeing them could leave a record naming freed shards. Here every
// metadata namespace is read-only (NSSET lock), so both the commit and the
// write-back are refused while reads still work.
func TestStoreUndoFailureKeepsNewShards(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)

	v0 := zstortest.RandomBytes(2 * cl.ChunkSize)
	p := cl.WriteFile("w.bin", v0)
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	before := totalEntries(t, c)

	setMetaLock := func(on string) {
		t.Helper()
		for _, s := range cl.Meta {
			admin, err := client.New(ctx, client.Options{Addr: s.Addr()})
			if err != nil {
				t.Fatal(err)
			}
			err = admin.NSSet(ctx, zstortest.MetaNS, "lock", on)
			admin.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	setMetaLock("1")
	cl.WriteFile("w.bin", zstortest.RandomBytes(cl.ChunkSize+5)) // 2 chunks, 6 shards each
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err == nil {
		t.Fatal("store succeeded with every metadata namespace read-only")
	}
	if after, want := totalEntries(t, c), before+2*6; after != want {
		t.Fatalf("after a failed commit whose undo also failed the data backends hold %d entries, want %d (the new shards kept)", after, want)
	}

	// The previous version is still what the record names, and readable.
	setMetaLock("0")
	os.Remove(p)
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatalf("previous version unreadable after the failed store: %v", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, v0) {
		t.Fatalf("retrieved %d bytes, not the previous version", len(got))
	}
}
