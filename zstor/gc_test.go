package zstor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/meta"
	"qss/zstor/pipeline"
	"qss/zstor/zstortest"
)

// orphan stores a file and removes its record behind zstor's back, as a
// crash between writing the shards and committing would leave it; it
// returns how many shards were orphaned.
func orphan(t *testing.T, ctx context.Context, c *zstor.Client, cl *zstortest.Cluster, name string, size int) int {
	t.Helper()
	before := metaKeys(t, ctx, c)
	res, err := c.Store(ctx, cl.WriteFile(name, zstortest.RandomBytes(size)), zstor.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range metaKeys(t, ctx, c) {
		if !before[k] {
			if err := c.Meta().Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			return res.Chunks * 6
		}
	}
	t.Fatal("no new record")
	return 0
}

func metaKeys(t *testing.T, ctx context.Context, c *zstor.Client) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for k, err := range c.Meta().Keys(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		out[k] = true
	}
	return out
}

// checkAll retrieves every file of want and scrubs: nothing live may have
// been collected.
func checkAll(t *testing.T, ctx context.Context, c *zstor.Client, cl *zstortest.Cluster, want map[string][]byte) {
	t.Helper()
	for name, data := range want {
		p := filepath.Join(cl.Root, name)
		os.Remove(p)
		if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
			t.Fatalf("retrieve %s: %v", name, err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatalf("%s differs", name)
		}
	}
	rep, err := c.Scrub(ctx)
	if err != nil || len(rep.Problems) != 0 || rep.Objects != len(want) {
		t.Fatalf("scrub: %+v, %v", rep, err)
	}
}

// GC deletes the shards of crashed stores once past the grace period, and
// nothing else: not live objects, not young shards, not values that are
// not shards of this key, not shards of stores running meanwhile.
func TestGCCollectsOrphansOnly(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	live := map[string][]byte{}
	for i := range 3 {
		name := fmt.Sprintf("live/%d", i)
		live[name] = zstortest.RandomBytes(2*cl.ChunkSize + i)
		if _, err := c.Store(ctx, cl.WriteFile(name, live[name]), zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	orphans := orphan(t, ctx, c, cl, "crashed/a", 3*cl.ChunkSize) + orphan(t, ctx, c, cl, "crashed/b", 100)
	// A value that is not a shard of this key (another deployment's).
	stranger := c.Backends().All()[0]
	junk := zstortest.RandomBytes(5000)
	junkSeq, err := stranger.Put(ctx, junk)
	if err != nil {
		t.Fatal(err)
	}
	// The grace is long enough that the young orphans stay young through
	// both collections on a loaded machine (zdb times have second
	// precision).
	const grace = 4 * time.Second
	time.Sleep(grace + 1100*time.Millisecond)
	young := orphan(t, ctx, c, cl, "crashed/young", 100)

	// Stores keep running during the collection.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("during/%d", i)
			data := zstortest.RandomBytes(cl.ChunkSize + i)
			if _, err := c.Store(ctx, cl.WriteFile(name, data), zstor.StoreOptions{}); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			live[name] = data
			mu.Unlock()
		}
	})
	dry, err := c.GC(ctx, zstor.GCOptions{Grace: grace, DryRun: true})
	rep, err2 := c.GC(ctx, zstor.GCOptions{Grace: grace})
	close(stop)
	wg.Wait()
	if err != nil || dry.Garbage != orphans || dry.Deleted != 0 {
		t.Fatalf("dry run: %+v, %v (want %d garbage)", dry, err, orphans)
	}
	err = err2
	if err != nil || rep.Deleted != orphans || rep.Garbage != orphans || rep.Foreign != 1 || rep.Young < young || rep.Backends != 6 || len(rep.Errors) != 0 {
		t.Fatalf("gc: %+v, %v (want %d deleted, 1 foreign, ≥ %d young)", rep, err, orphans, young)
	}
	t.Logf("gc: %+v", rep)
	if got, err := stranger.Get(ctx, junkSeq); err != nil || !bytes.Equal(got, junk) {
		t.Fatalf("a value that is not a shard of this key was touched: %v", err)
	}
	checkAll(t, ctx, c, cl, live)
	// Nothing left to collect but the young orphans, once they are old.
	time.Sleep(grace + 1100*time.Millisecond)
	rep, err = c.GC(ctx, zstor.GCOptions{Grace: grace})
	if err != nil || rep.Deleted != young {
		t.Fatalf("second gc: %+v, %v (want %d)", rep, err, young)
	}
	checkAll(t, ctx, c, cl, live)
}

// held is the real metadata store whose next Put with a marked context
// waits until released: a store that wrote its shards and has not
// committed yet.
type held struct {
	meta.Store
	waiting chan struct{}
	release chan struct{}
	onKeys  func()
	once    sync.Once
}

func (h *held) Put(ctx context.Context, key string, v []byte) error {
	if ctx.Value(markKey{}) != nil {
		close(h.waiting)
		<-h.release
	}
	return h.Store.Put(ctx, key, v)
}

func (h *held) Keys(ctx context.Context, prefix string) iter.Seq2[string, error] {
	if h.onKeys != nil {
		h.once.Do(h.onKeys)
	}
	return h.Store.Keys(ctx, prefix)
}

func openHeld(t *testing.T, cl *zstortest.Cluster) (*zstor.Client, *held) {
	t.Helper()
	cfg, err := config.Parse([]byte(cl.ConfigTOML(zstortest.TestKey, "")))
	if err != nil {
		t.Fatal(err)
	}
	store, err := meta.NewZDB(zstortest.Ctx(t), cfg.Meta.Backends, cfg.Meta.Prefix, meta.WithSealer(pipeline.NewMetaSealer(cfg.MetaKey())))
	if err != nil {
		t.Fatal(err)
	}
	h := &held{Store: store, waiting: make(chan struct{}), release: make(chan struct{})}
	c, err := zstor.Open(zstortest.Ctx(t), cfg, zstor.Options{Meta: h, Backend: backend.Options{
		DownFor: 300 * time.Millisecond, DialTimeout: time.Second, IOTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, h
}

// A store that wrote its shards before the collection and commits after
// it read the records keeps every shard: they are within the grace period.
func TestGCSparesUncommittedStore(t *testing.T) {
	cl := zstortest.New(t, 6)
	c, h := openHeld(t, cl)
	ctx := zstortest.Ctx(t)
	other := zstortest.RandomBytes(100)
	if _, err := c.Store(ctx, cl.WriteFile("other", other), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	orphans := orphan(t, ctx, c, cl, "crashed", 2*cl.ChunkSize)
	time.Sleep(2100 * time.Millisecond)
	data := zstortest.RandomBytes(3 * cl.ChunkSize)
	p := cl.WriteFile("slow", data)
	done := make(chan error, 1)
	go func() {
		_, err := c.Store(context.WithValue(ctx, markKey{}, true), p, zstor.StoreOptions{})
		done <- err
	}()
	<-h.waiting // shards written, record not committed
	rep, err := c.GC(ctx, zstor.GCOptions{Grace: 2 * time.Second})
	if err != nil || rep.Deleted != orphans {
		t.Fatalf("gc: %+v, %v (want %d deleted)", rep, err, orphans)
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkAll(t, ctx, c, cl, map[string][]byte{"slow": data, "other": other})
}

// wipe stops a data backend, deletes its files and starts it again empty at
// the same address: its ids restart from the beginning.
func wipe(t *testing.T, s *zdbtest.Server) {
	t.Helper()
	s.Stop()
	for _, d := range []string{s.DataDir(), s.IndexDir()} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	s.RestartSamePort()
	zstortest.CreateNS(t, s.Addr(), zstortest.DataNS, zstortest.DataPass, "")
}

// putRetry writes a value, retrying while the backend's client reconnects
// after a restart.
func putRetry(t *testing.T, ctx context.Context, b *backend.Backend, v []byte) uint64 {
	t.Helper()
	var err error
	for range 50 {
		var seq uint64
		if seq, err = b.Put(ctx, v); err == nil {
			return seq
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
	return 0
}

// A backend wiped and restarted at its address between the scan and the
// deletes: the ids GC listed now hold other values, which it must not
// delete even when they are shards of this key.
func TestGCWipedBackendReusesIDs(t *testing.T) {
	cl := zstortest.New(t, 6)
	c, h := openHeld(t, cl)
	ctx := zstortest.Ctx(t)
	orphan(t, ctx, c, cl, "crashed", 3*cl.ChunkSize)
	keep := zstortest.RandomBytes(cl.ChunkSize)
	if _, err := c.Store(ctx, cl.WriteFile("live", keep), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	// A shard of this key to copy into the wiped backend: it verifies.
	rec, err := c.Stat(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	loc := rec.Locations[0][0]
	shard, err := c.Backends().Lookup(loc.Backend).Get(ctx, loc.Seq)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	victim := c.Backends().All()[1]
	var copies []uint64
	h.onKeys = func() { // after the scan, before the records are read
		wipe(t, cl.Data[1])
		for range 8 {
			copies = append(copies, putRetry(t, ctx, victim, shard))
		}
	}
	rep, err := c.GC(ctx, zstor.GCOptions{Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v", rep)
	for _, seq := range copies {
		if _, err := victim.Get(ctx, seq); err != nil {
			t.Fatalf("value %d written after the wipe was deleted: %v", seq, err)
		}
	}
	if rep.Foreign == 0 {
		t.Fatalf("no rewritten id noticed: %+v", rep)
	}
}

// GC refuses when a record cannot be opened with this key (its shards
// would look unreferenced), and when there are no records at all.
func TestGCRefuses(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	n := orphan(t, ctx, c, cl, "crashed", 100)
	time.Sleep(2100 * time.Millisecond)
	if _, err := c.GC(ctx, zstor.GCOptions{Grace: time.Second}); !errors.Is(err, zstor.ErrGCRefused) {
		t.Fatalf("gc with no records at all: %v, want ErrGCRefused", err)
	}
	other := open(t, cl, zstortest.OtherKey, "")
	if _, err := other.Store(ctx, cl.WriteFile("other", []byte("x")), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(ctx, cl.WriteFile("mine", []byte("y")), zstor.StoreOptions{}); err == nil {
		// The store refuses too (wrong key?), so the metadata has only
		// the foreign record; either way GC must refuse.
		t.Log("stored next to a foreign record")
	}
	rep, err := c.GC(ctx, zstor.GCOptions{Grace: time.Second})
	if !errors.Is(err, zstor.ErrGCRefused) || rep.Deleted != 0 {
		t.Fatalf("gc with a foreign record: %+v, %v, want ErrGCRefused", rep, err)
	}
	if e := totalEntries(t, c); e < int64(n) {
		t.Fatalf("shards deleted by a refused gc: %d entries left", e)
	}
}

// A backend wiped and restarted at its address restarts its ids: records
// written before name ids that now hold other objects' shards. Repairing,
// replacing or deleting the old objects must not free those.
func TestWipedBackendFreesOnlyOwnShards(t *testing.T) {
	for _, op := range []string{"repair", "replace", "delete"} {
		t.Run(op, func(t *testing.T) {
			cl := zstortest.New(t, 6)
			c := open(t, cl, zstortest.TestKey, "")
			ctx := zstortest.Ctx(t)
			old := zstortest.RandomBytes(cl.ChunkSize / 2)
			if _, err := c.Store(ctx, cl.WriteFile("old", old), zstor.StoreOptions{}); err != nil {
				t.Fatal(err)
			}
			wipe(t, cl.Data[1])
			time.Sleep(400 * time.Millisecond) // the client's pause after the failure ends
			newer := zstortest.RandomBytes(cl.ChunkSize / 2)
			if _, err := c.Store(ctx, cl.WriteFile("new", newer), zstor.StoreOptions{}); err != nil {
				t.Fatal(err)
			}
			// Both records now name id 0 of the wiped backend.
			ro, _ := c.Stat(ctx, "old")
			rn, _ := c.Stat(ctx, "new")
			victim := c.Backends().All()[1].ID()
			shared := false
			for _, a := range ro.Locations[0] {
				for _, b := range rn.Locations[0] {
					shared = shared || (a == b && a.Backend == victim)
				}
			}
			if !shared {
				t.Fatalf("no shared location on the wiped backend: %v / %v", ro.Locations[0], rn.Locations[0])
			}
			switch op {
			case "repair":
				if rr, err := c.Repair(ctx, ""); err != nil || len(rr.Errors) != 0 {
					t.Fatalf("repair: %+v, %v", rr, err)
				}
			case "replace":
				if _, err := c.Store(ctx, cl.WriteFile("old", zstortest.RandomBytes(100)), zstor.StoreOptions{}); err != nil {
					t.Fatal(err)
				}
			case "delete":
				if _, err := c.Delete(ctx, "old"); err != nil {
					t.Fatal(err)
				}
			}
			if now, err := c.Stat(ctx, "new"); err != nil || !slices.Equal(now.Locations[0], rn.Locations[0]) {
				t.Fatalf("%s of the old object changed the new one's shards (lost and rebuilt): %v", op, err)
			}
			rep, err := c.Scrub(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Problems {
				if p.Key == "new" {
					t.Fatalf("%s of the old object freed a shard of the new one: %s", op, p)
				}
			}
		})
	}
}

// hooked is the real metadata store running beforePut before each Put made
// with a marked context.
type hooked struct {
	meta.Store
	beforePut func()
}

func (h *hooked) Put(ctx context.Context, key string, v []byte) error {
	if ctx.Value(markKey{}) != nil {
		h.beforePut()
	}
	return h.Store.Put(ctx, key, v)
}

// After rounds of failed stores (every metadata backend lost right before
// the commit, so the shards are kept in case the record landed), GC leaves
// exactly the shards the records name, and every object reads back.
func TestGCAfterFailedCommits(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg, err := config.Parse([]byte(cl.ConfigTOML(zstortest.TestKey, "")))
	if err != nil {
		t.Fatal(err)
	}
	store, err := meta.NewZDB(zstortest.Ctx(t), cfg.Meta.Backends, cfg.Meta.Prefix, meta.WithSealer(pipeline.NewMetaSealer(cfg.MetaKey())))
	if err != nil {
		t.Fatal(err)
	}
	h := &hooked{Store: store, beforePut: func() {
		for _, m := range cl.Meta {
			m.Kill()
		}
	}}
	c, err := zstor.Open(zstortest.Ctx(t), cfg, zstor.Options{Meta: h, Backend: backend.Options{
		DownFor: 300 * time.Millisecond, DialTimeout: time.Second, IOTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := zstortest.Ctx(t)
	retry := func(fn func() error) {
		t.Helper()
		var err error
		for range 30 { // the metadata clients pause after failures
			if err = fn(); err == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatal(err)
	}
	live := map[string][]byte{}
	for round := range 3 {
		name := fmt.Sprintf("live/%d", round)
		live[name] = zstortest.RandomBytes(2*cl.ChunkSize + round)
		retry(func() error {
			_, err := c.Store(ctx, cl.WriteFile(name, live[name]), zstor.StoreOptions{})
			return err
		})
		mctx := context.WithValue(ctx, markKey{}, true)
		if _, err := c.Store(mctx, cl.WriteFile(fmt.Sprintf("failed/%d", round), zstortest.RandomBytes(3*cl.ChunkSize)), zstor.StoreOptions{}); err == nil {
			t.Fatal("store committed without a metadata quorum")
		}
		for _, m := range cl.Meta {
			m.RestartSamePort()
		}
		if _, err := c.Check(ctx, fmt.Sprintf("failed/%d", round)); !errors.Is(err, zstor.ErrNotStored) {
			retry(func() error { // not "unavailable": the pause after the failures
				_, err := c.Check(ctx, fmt.Sprintf("failed/%d", round))
				if errors.Is(err, zstor.ErrNotStored) {
					return nil
				}
				return fmt.Errorf("the failed store's record: %v", err)
			})
		}
	}
	before := totalEntries(t, c)
	time.Sleep(2100 * time.Millisecond)
	var rep *zstor.GCReport
	retry(func() error {
		var err error
		rep, err = c.GC(ctx, zstor.GCOptions{Grace: time.Second})
		return err
	})
	referenced := int64(0)
	for name := range live {
		rec, err := c.Stat(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		referenced += int64(len(rec.Locations) * 6)
	}
	after := totalEntries(t, c)
	t.Logf("entries %d → %d, referenced %d; gc %+v", before, after, referenced, rep)
	if after != referenced || rep.Deleted != int(before-referenced) || rep.Deleted != 3*3*6 {
		t.Fatalf("after gc %d entries, %d referenced (deleted %d of %d)", after, referenced, rep.Deleted, before)
	}
	checkAll(t, ctx, c, cl, live)
}
