package zstor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qss/zdb/client"
	"qss/zstor"
	"qss/zstor/pipeline"
	"qss/zstor/zstortest"
)

// rangeObject stores an object of 10 chunks and a short one (some chunks
// compressible, so they are stored compressed) under name and returns its
// bytes.
func rangeObject(t *testing.T, c *zstor.Client, cl *zstortest.Cluster, name string) []byte {
	t.Helper()
	cs := cl.ChunkSize
	data := zstortest.RandomBytes(10*cs + 1234)
	for i := 2; i < 10; i += 3 {
		copy(data[i*cs:], bytes.Repeat([]byte("compressible "), cs/13))
	}
	p := cl.WriteFile(name, data)
	if _, err := c.Store(zstortest.Ctx(t), p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	return data
}

// chunkGets records the shard GETs of c's reads, by chunk of the object
// key (shards of other objects are ignored).
type chunkGets struct {
	mu     sync.Mutex
	chunk  map[zstor.Location]int
	counts map[int]int
}

func countGets(t *testing.T, c *zstor.Client, key string) *chunkGets {
	t.Helper()
	rec, err := c.Stat(zstortest.Ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	g := &chunkGets{chunk: map[zstor.Location]int{}, counts: map[int]int{}}
	for ci, locs := range rec.Locations {
		for _, l := range locs {
			g.chunk[l] = ci
		}
	}
	c.SetShardGetHookForTest(func(l zstor.Location) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if ci, ok := g.chunk[l]; ok {
			g.counts[ci]++
		}
	})
	t.Cleanup(func() { c.SetShardGetHookForTest(nil) })
	return g
}

// take returns the GETs per chunk since the last call.
func (g *chunkGets) take() map[int]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.counts
	g.counts = map[int]int{}
	return m
}

// checkRange reads [off, off+n) through r and compares with data. It
// reports with t.Errorf, so it may run in other goroutines.
func checkRange(t *testing.T, ctx context.Context, r *zstor.ObjectReader, data []byte, off int64, n int) {
	t.Helper()
	p := make([]byte, n)
	got, err := r.ReadAtContext(ctx, p, off)
	wantN := max(0, min(int64(n), int64(len(data))-off))
	switch {
	case off+int64(n) > int64(len(data)) || off >= int64(len(data)):
		if err != io.EOF {
			t.Errorf("read [%d, +%d) of %d bytes: %d, %v; want io.EOF", off, n, len(data), got, err)
			return
		}
	case err != nil:
		t.Errorf("read [%d, +%d): %v", off, n, err)
		return
	}
	if int64(got) != wantN {
		t.Errorf("read [%d, +%d) of %d bytes: n = %d, want %d", off, n, len(data), got, wantN)
	} else if wantN > 0 && !bytes.Equal(p[:got], data[off:off+wantN]) {
		t.Errorf("read [%d, +%d): bytes differ from the file's", off, n)
	}
}

func TestReadAtRanges(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := rangeObject(t, c, cl, "seg/d1")
	cs := int64(cl.ChunkSize)
	size := int64(len(data))

	r, err := c.OpenObject(ctx, "seg/d1", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != size {
		t.Fatalf("size %d, want %d", r.Size(), size)
	}
	if sum, _ := zstor.LocalChecksum(filepath.Join(cl.Root, "seg/d1")); r.Checksum() != sum {
		t.Fatalf("checksum %s, want %s", r.Checksum(), sum)
	}
	edges := []struct {
		off int64
		n   int
	}{
		{0, 1}, {0, int(cs)}, {cs - 1, 2}, {cs, int(cs)}, {3*cs - 10, int(2*cs) + 20}, // chunk boundaries
		{0, int(size)},                // everything
		{10 * cs, int(size - 10*cs)},  // the last, short chunk
		{10*cs - 5, 100},              // into it
		{size - 1, 1}, {size - 1, 10}, // last byte, then past the end
		{size - 100, 1000}, {size, 1}, {size + 5, 10}, // at and beyond the end
		{5 * cs, 0}, // empty read
	}
	for _, e := range edges {
		checkRange(t, ctx, r, data, e.off, e.n)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := rng.Int64N(size + 10)
		n := rng.IntN(3*int(cs)) + 1
		checkRange(t, ctx, r, data, off, n)
	}
	if _, err := r.ReadAtContext(ctx, make([]byte, 1), -1); err == nil || err == io.EOF {
		t.Fatalf("negative offset: %v", err)
	}

	// The io.ReaderAt adapter, read sequentially in odd sizes.
	got, err := io.ReadAll(io.NewSectionReader(r.ReaderAt(ctx), 0, size))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read all through ReaderAt: %d bytes, %v", len(got), err)
	}

	// The one-shot Client.ReadAt.
	p := make([]byte, 3000)
	if n, err := c.ReadAt(ctx, "seg/d1", p, 2*cs-1000); n != len(p) || err != nil || !bytes.Equal(p, data[2*cs-1000:2*cs+2000]) {
		t.Fatalf("Client.ReadAt: %d, %v", n, err)
	}
	if n, err := c.ReadAt(ctx, "seg/d1", p, size-1000); n != 1000 || err != io.EOF || !bytes.Equal(p[:n], data[size-1000:]) {
		t.Fatalf("Client.ReadAt at the end: %d, %v", n, err)
	}

	// An empty object: every read is at its end.
	cl.WriteFile("empty", nil)
	if _, err := c.Store(ctx, filepath.Join(cl.Root, "empty"), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadAt(ctx, "empty", p, 0); n != 0 || err != io.EOF {
		t.Fatalf("empty object: %d, %v", n, err)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAtContext(ctx, p, 0); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestReadAtErrors(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	p := make([]byte, 10)

	if _, err := c.ReadAt(ctx, "never/stored", p, 0); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("missing key: %v", err)
	}

	link := filepath.Join(cl.Root, "link")
	if err := os.Symlink("target", link); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(ctx, link, zstor.StoreOptions{Links: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenObject(ctx, "link", zstor.ReaderOptions{}); !errors.Is(err, zstor.ErrNotFile) {
		t.Fatalf("symbolic link: %v", err)
	}

	data := rangeObject(t, c, cl, "gone")
	r, err := c.OpenObject(ctx, "gone", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkRange(t, ctx, r, data, 100, 10)
	if _, err := c.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	// Deleted (a tombstone in the metadata store): opening fails; the
	// open reader fails on chunks it has not cached, saying why.
	if _, err := c.ReadAt(ctx, "gone", p, 0); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("deleted key: %v", err)
	}
	checkRange(t, ctx, r, data, 110, 10) // cached chunk 0
	if _, err := r.ReadAtContext(ctx, p, int64(5*cl.ChunkSize)); !errors.Is(err, zstor.ErrObjectChanged) || !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("read of a deleted object's chunk: %v", err)
	}

	// A cancelled read returns the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	data = rangeObject(t, c, cl, "other")
	r2, err := c.OpenObject(ctx, "other", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r2.ReadAtContext(cctx, p, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	checkRange(t, ctx, r2, data, 0, 10) // the cancelled fetch left nothing behind
}

// TestReadAtFetchesOnlyNeededChunks counts the shard GETs per chunk: a
// range reads the chunks that cover it, and no other.
func TestReadAtFetchesOnlyNeededChunks(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := rangeObject(t, c, cl, "seg/d2")
	cs := int64(cl.ChunkSize)
	gets := countGets(t, c, "seg/d2")
	r, err := c.OpenObject(ctx, "seg/d2", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	check := func(off int64, n int, want ...int) {
		t.Helper()
		checkRange(t, ctx, r, data, off, n)
		got := gets.take()
		if len(got) != len(want) {
			t.Fatalf("read [%d, +%d): GETs by chunk %v, want chunks %v only", off, n, got, want)
		}
		for _, ci := range want {
			// k = 4 of n = 6; a hedge on a slow backend may add some.
			if got[ci] < 4 || got[ci] > 6 {
				t.Fatalf("read [%d, +%d): GETs by chunk %v, want 4–6 for chunk %d", off, n, got, ci)
			}
		}
	}
	check(3*cs+100, 4096, 3)
	check(3*cs+9000, 4096)        // cached: no GET
	check(6*cs-10, 20, 5, 6)      // across a boundary (not sequential: no read-ahead)
	check(10*cs+5, 100, 10)       // the short last chunk
	check(int64(len(data))+1, 10) // beyond the end
	if st := r.Stats(); st.Fetches != 4 || st.ReadAhead != 0 || st.BadShards != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestReadAtDegraded reads with a backend down and with a corrupt shard.
func TestReadAtDegraded(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := rangeObject(t, c, cl, "seg/d3")
	cs := int64(cl.ChunkSize)

	// A bit flipped in shard 2 of chunk 4. A fresh client has no latency figures, so it asks shards 0–3 first:
	// the corrupt one is among them, GCM refuses the chunk, and the
	// verified refetch replaces it by shard 4 or 5.
	flipShard(t, c, cl, "seg/d3", 4, 2)
	c2 := open(t, cl, zstortest.TestKey, "")
	r, err := c2.OpenObject(ctx, "seg/d3", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	gets := countGets(t, c2, "seg/d3")
	checkRange(t, ctx, r, data, 4*cs+50, 3000)
	if st := r.Stats(); st.BadShards != 1 {
		t.Fatalf("corrupt shard: stats %+v, want 1 bad shard", st)
	}
	// The refetch verified the four shards it had and asked one more
	// backend (a hedge on a slow one may add one).
	if g := gets.take(); len(g) != 1 || g[4] < 5 || g[4] > 6 {
		t.Fatalf("GETs by chunk %v, want 5 for chunk 4", g)
	}

	// Three of the six shards of chunk 8 bad: it cannot be authenticated,
	// and the read says so, returning only the bytes before it.
	for _, sh := range []int{0, 3, 5} {
		flipShard(t, c, cl, "seg/d3", 8, sh)
	}
	p := make([]byte, 2*cs)
	n, err := r.ReadAtContext(ctx, p, 7*cs+100)
	if !errors.Is(err, pipeline.ErrNotEnoughShards) || n != int(cs-100) || !bytes.Equal(p[:n], data[7*cs+100:8*cs]) {
		t.Fatalf("read over an unreadable chunk: n = %d, %v", n, err)
	}
	t.Logf("unreadable chunk: %v", err)

	// One backend down: every chunk (but 8) still reads from the other five.
	cl.Data[0].Kill()
	r2, err := c.OpenObject(ctx, "seg/d3", zstor.ReaderOptions{NoReadAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	for ci := range int64(11) {
		if ci != 8 {
			checkRange(t, ctx, r2, data, ci*cs+7, 1000)
		}
	}

	// An object stored degraded (backend 0 down: one shard of each chunk
	// has no copy), with a bad shard in chunk 1 too: four good shards are
	// left there, and both the missing and the bad one are counted.
	deg := rangeObject(t, c, cl, "seg/deg")
	rec, err := c.Stat(ctx, "seg/deg")
	if err != nil {
		t.Fatal(err)
	}
	if rec.MinShards() != 5 {
		t.Fatalf("degraded store: %d shards per chunk, want 5", rec.MinShards())
	}
	for i, l := range rec.Locations[1] {
		if l.Backend != "" {
			flipShard(t, c, cl, "seg/deg", 1, i) // a fresh client asks it first
			break
		}
	}
	c3 := open(t, cl, zstortest.TestKey, "")
	r3, err := c3.OpenObject(ctx, "seg/deg", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	checkRange(t, ctx, r3, deg, cs+1000, 5000)
	if st := r3.Stats(); st.BadShards != 2 {
		t.Fatalf("degraded object with a bad shard: %+v, want 2 bad shards (no copy, corrupt)", st)
	}
	if got, err := io.ReadAll(io.NewSectionReader(r3.ReaderAt(ctx), 0, r3.Size())); err != nil || !bytes.Equal(got, deg) {
		t.Fatalf("degraded object read whole: %d bytes, %v", len(got), err)
	}
}

// flipShard flips one bit in the payload of shard `shard` of chunk `chunk`
// of key and writes it back through the backend's zdb (SET on its seq id):
// zdb's own CRC then matches, so only zstor's checks can catch it.
func flipShard(t *testing.T, c *zstor.Client, cl *zstortest.Cluster, key string, chunk, shard int) {
	t.Helper()
	ctx := zstortest.Ctx(t)
	rec, err := c.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	loc := rec.Locations[chunk][shard]
	b := c.Backends().Lookup(loc.Backend)
	v, err := b.Get(ctx, loc.Seq)
	if err != nil {
		t.Fatal(err)
	}
	v[pipeline.HeaderSize+100] ^= 0x08
	zc, err := client.New(ctx, client.Options{Addr: cl.Data[b.Index].Addr(), Namespace: zstortest.DataNS, Password: zstortest.DataPass})
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	if _, _, err := zc.Set(ctx, client.EncodeID(loc.Seq), v); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, loc.Seq); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("the flipped shard does not read back: %v", err)
	}
}

// TestReadAtSharedFetch: concurrent reads of one chunk share one fetch.
func TestReadAtSharedFetch(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := rangeObject(t, c, cl, "seg/d4")
	cs := int64(cl.ChunkSize)
	gets := countGets(t, c, "seg/d4")
	var slow atomic.Bool
	slow.Store(true)
	c.SetShardGetHookForTest(func(l zstor.Location) {
		if slow.Load() {
			time.Sleep(300 * time.Millisecond) // every reader joins meanwhile
		}
		gets.mu.Lock()
		gets.counts[gets.chunk[l]]++
		gets.mu.Unlock()
	})
	r, err := c.OpenObject(ctx, "seg/d4", zstor.ReaderOptions{NoReadAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const readers = 8
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() { checkRange(t, ctx, r, data, 7*cs+int64(i)*1000, 500) })
	}
	wg.Wait()
	st := r.Stats()
	if st.Fetches != 1 || st.Shared+st.CacheHits != readers-1 {
		t.Fatalf("stats %+v: want one fetch shared by %d readers", st, readers)
	}
	if g := gets.take(); len(g) != 1 || g[7] > 6 {
		t.Fatalf("GETs by chunk %v, want one fetch of chunk 7", g)
	}
}

// TestReadAtReadAhead: sequential reads fetch the next chunk in the
// background; random ones do not.
func TestReadAtReadAhead(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := rangeObject(t, c, cl, "seg/d5")
	cs := int64(cl.ChunkSize)
	gets := countGets(t, c, "seg/d5")
	r, err := c.OpenObject(ctx, "seg/d5", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	checkRange(t, ctx, r, data, 0, 16<<10)      // first read: no read-ahead
	checkRange(t, ctx, r, data, 16<<10, 16<<10) // sequential: chunk 1 ahead
	if st := r.Stats(); st.ReadAhead != 1 || st.Fetches != 2 {
		t.Fatalf("after two sequential reads: %+v, want chunk 1 read ahead", st)
	}
	// Chunk 1 is being fetched or cached: reading it starts no fetch.
	checkRange(t, ctx, r, data, cs, 16<<10)
	if st := r.Stats(); st.Fetches != 2 || st.Shared+st.CacheHits != 2 {
		t.Fatalf("read of the chunk read ahead: %+v", st)
	}
	if g := gets.take(); len(g) != 2 || g[0] < 4 || g[1] < 4 {
		t.Fatalf("GETs by chunk %v, want chunks 0 and 1", g)
	}
	// Not sequential (from the end of chunk 1's read): nothing ahead.
	checkRange(t, ctx, r, data, 5*cs, 100)
	if st := r.Stats(); st.ReadAhead != 1 || st.Fetches != 3 {
		t.Fatalf("after a random read: %+v", st)
	}
}

// TestReadAtClose: Close cancels the fetches in flight, waits for them,
// and the reads waiting on them say the reader was closed.
func TestReadAtClose(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	rangeObject(t, c, cl, "seg/d6")
	started := make(chan struct{}, 16)
	c.SetShardGetHookForTest(func(zstor.Location) {
		started <- struct{}{}
		time.Sleep(200 * time.Millisecond)
	})
	t.Cleanup(func() { c.SetShardGetHookForTest(nil) })
	r, err := c.OpenObject(ctx, "seg/d6", zstor.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := r.ReadAtContext(ctx, make([]byte, 100), 0)
		errc <- err
	}()
	<-started
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("read cut short by Close: %v", err)
	}
}

// TestReadAtReadAheadDepth: with ReadAheadChunks, a sequential read keeps
// that many chunks in flight, never more than the cache holds beside the
// current chunk.
func TestReadAtReadAheadDepth(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := rangeObject(t, c, cl, "seg/d7")
	for _, tc := range []struct{ ahead, cache, want int64 }{{3, 4, 3}, {3, 2, 1}} {
		r, err := c.OpenObject(ctx, "seg/d7", zstor.ReaderOptions{ReadAheadChunks: int(tc.ahead), CacheChunks: int(tc.cache)})
		if err != nil {
			t.Fatal(err)
		}
		checkRange(t, ctx, r, data, 0, 16<<10)
		checkRange(t, ctx, r, data, 16<<10, 16<<10) // sequential: chunks 1.. ahead
		if st := r.Stats(); st.ReadAhead != tc.want || st.Fetches != 1+tc.want {
			t.Fatalf("ahead %d, cache %d: %+v, want %d chunks read ahead", tc.ahead, tc.cache, st, tc.want)
		}
		r.Close()
	}
}
