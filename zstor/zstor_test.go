package zstor_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/pipeline"
	"qss/zstor/placement"
	"qss/zstor/zstortest"
)

func open(t *testing.T, cl *zstortest.Cluster, key, extra string) *zstor.Client {
	t.Helper()
	text := cl.ConfigTOML(key, extra)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	c, err := zstor.Open(zstortest.Ctx(t), cfg, zstor.Options{Backend: backend.Options{
		DownFor: 300 * time.Millisecond, DialTimeout: time.Second, IOTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip stores data under name, removes the local file, retrieves it
// and compares.
func roundTrip(t *testing.T, ctx context.Context, c *zstor.Client, cl *zstortest.Cluster, name string, data []byte) *zstor.StoreResult {
	t.Helper()
	p := cl.WriteFile(name, data)
	res, err := c.Store(ctx, p, zstor.StoreOptions{})
	if err != nil {
		t.Fatalf("store %s (%d bytes): %v", name, len(data), err)
	}
	want, _ := zstor.LocalChecksum(p)
	if res.Checksum != want || res.Size != int64(len(data)) {
		t.Fatalf("store result %+v, local checksum %s", res, want)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatalf("retrieve %s: %v", name, err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s: retrieved %d bytes differ from the %d stored", name, len(got), len(data))
	}
	return res
}

// totalEntries sums the live entries of the data backends.
func totalEntries(t *testing.T, c *zstor.Client) int64 {
	var n int64
	for _, h := range c.Backends().HealthAll(zstortest.Ctx(t)) {
		n += h.Entries
	}
	return n
}

func TestRoundTrips(t *testing.T) {
	cl := zstortest.New(t, 3, 3)
	c := open(t, cl, zstortest.TestKey, "redundant_nodes = 1")
	ctx := zstortest.Ctx(t)
	chunk := cl.ChunkSize
	for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 7*chunk + 123} {
		roundTrip(t, ctx, c, cl, filepath.Join("sizes", "f"+strings.Repeat("x", size%7)+string(rune('a'+size%26))), zstortest.RandomBytes(size))
	}

	// Unchanged: skipped. Changed: a new version, the old shards freed.
	data := zstortest.RandomBytes(3*chunk + 5)
	p := cl.WriteFile("versioned.bin", data)
	first, err := c.Store(ctx, p, zstor.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := totalEntries(t, c)
	again, err := c.Store(ctx, p, zstor.StoreOptions{})
	if err != nil || !again.Skipped {
		t.Fatalf("unchanged file: %+v, %v; want skipped", again, err)
	}
	data[0] ^= 1
	cl.WriteFile("versioned.bin", data)
	second, err := c.Store(ctx, p, zstor.StoreOptions{})
	if err != nil || second.Skipped || !second.Replaced || second.Checksum == first.Checksum {
		t.Fatalf("changed file: %+v, %v", second, err)
	}
	if after := totalEntries(t, c); after != before {
		t.Fatalf("%d shards on the backends after overwrite, %d before: old version not freed", after, before)
	}
	sum, err := c.Check(ctx, "versioned.bin")
	if err != nil || sum != second.Checksum {
		t.Fatalf("check: %s, %v", sum, err)
	}

	// List, with a prefix.
	entries, foreign, err := c.List(ctx, "sizes/")
	if err != nil || foreign != 0 || len(entries) != 6 {
		t.Fatalf("list sizes/: %d entries, %d foreign, %v", len(entries), foreign, err)
	}
	for _, e := range entries {
		if e.MinShards != 6 || !strings.HasPrefix(e.Key, "sizes/") {
			t.Fatalf("entry %+v", e)
		}
	}

	// Delete frees the shards and the record.
	if _, err := c.Delete(ctx, "versioned.bin"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctx, "versioned.bin"); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("check after delete: %v", err)
	}
	if after := totalEntries(t, c); after != before-int64(6*len(second.Key)*0+6*4) {
		t.Fatalf("%d shards after delete, want %d", after, before-24)
	}

	// Placement across the two groups honours redundant_nodes = 1.
	rec, err := c.Stat(ctx, "sizes/"+"f"+strings.Repeat("x", (7*chunk+123)%7)+string(rune('a'+(7*chunk+123)%26)))
	if err != nil {
		t.Fatal(err)
	}
	for ci, locs := range rec.Locations {
		counts := make([]int, 2)
		seen := map[string]bool{}
		for _, l := range locs {
			b := c.Backends().Lookup(l.Backend)
			if b == nil || seen[l.Backend] {
				t.Fatalf("chunk %d: bad or duplicate backend %q", ci, l.Backend)
			}
			seen[l.Backend] = true
			counts[b.Group]++
		}
		if !placement.Valid(placement.Rules{K: 4, N: 6, RedundantNodes: 1}, counts) {
			t.Fatalf("chunk %d: invalid placement %v", ci, counts)
		}
	}
}

func TestLargeAndPrivacy(t *testing.T) {
	cl := zstortest.New(t, 6)
	cl.ChunkSize = 1 << 20
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)

	big := zstortest.RandomBytes(64 << 20)
	start := time.Now()
	roundTrip(t, ctx, c, cl, "big.bin", big)
	t.Logf("64 MiB round trip: %v", time.Since(start))

	marker := []byte("PLAINTEXT-MARKER-7f3a9")
	name := "secret-file-name-qz81.txt"
	roundTrip(t, ctx, c, cl, name, bytes.Repeat(marker, 5000))
	if hits := cl.GrepBackends(marker); len(hits) > 0 {
		t.Fatalf("plaintext marker found in %v", hits)
	}
	if hits := cl.GrepBackends([]byte("secret-file-name")); len(hits) > 0 {
		t.Fatalf("file name found in %v", hits)
	}
}

func TestDegradedRetrieve(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := zstortest.RandomBytes(5*cl.ChunkSize + 77)
	p := cl.WriteFile("d/file.bin", data)
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	cl.Data[1].Kill()
	cl.Data[4].Kill()
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatalf("retrieve with n-k backends down: %v", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
	os.Remove(p)
	cl.Data[0].Kill()
	_, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{})
	if !errors.Is(err, pipeline.ErrNotEnoughShards) {
		t.Fatalf("retrieve with n-k+1 down: %v, want ErrNotEnoughShards", err)
	}
	t.Logf("error: %v", err)
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 0 {
		t.Fatalf("partial files left: %v", ents)
	}
	// Store must fail cleanly: 3 backends cannot take 6 shards.
	q := cl.WriteFile("d/new.bin", data[:1000])
	if _, err := c.Store(ctx, q, zstor.StoreOptions{}); !errors.Is(err, placement.ErrImpossible) {
		t.Fatalf("store with 3 of 6 backends: %v", err)
	}
	if _, err := c.Check(ctx, "d/new.bin"); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("failed store left a record: %v", err)
	}
}

func TestCorruptShardScrubRepair(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	data := zstortest.RandomBytes(3*cl.ChunkSize + 1)
	p := cl.WriteFile("c.bin", data)
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	bi := zstortest.FlipShardByte(t, c, cl, "c.bin")

	os.Remove(p)
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatalf("retrieve with a corrupt shard: %v", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
	rep, err := c.Scrub(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Chunk != 0 || rep.Problems[0].Shard != 2 ||
		c.Backends().Lookup(rep.Problems[0].Backend).Index != bi {
		t.Fatalf("scrub: %+v", rep)
	}
	rr, err := c.Repair(ctx, "")
	if err != nil || len(rr.Repaired) != 1 || rr.Repaired[0].Rebuilt != 1 || len(rr.Errors) != 0 {
		t.Fatalf("repair: %+v, %v", rr, err)
	}
	rep, err = c.Scrub(ctx)
	if err != nil || len(rep.Problems) != 0 || rep.Shards != 4*6 {
		t.Fatalf("scrub after repair: %+v, %v", rep, err)
	}
}

func TestReplaceDeadBackend(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	files := map[string][]byte{"r/a": zstortest.RandomBytes(2*cl.ChunkSize + 3), "r/b": zstortest.RandomBytes(100)}
	for name, data := range files {
		if _, err := c.Store(ctx, cl.WriteFile(name, data), zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cl.Data[3].Kill()
	cl.Data[3] = cl.StartData()
	c2 := open(t, cl, zstortest.TestKey, "")
	rr, err := c2.Repair(ctx, "")
	if err != nil || len(rr.Repaired) != 2 || len(rr.Errors) != 0 {
		t.Fatalf("repair: %+v, %v", rr, err)
	}
	rep, err := c2.Scrub(ctx)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("scrub: %+v, %v", rep, err)
	}
	entries, _, err := c2.List(ctx, "")
	if err != nil || len(entries) != 2 {
		t.Fatalf("list: %v, %v", entries, err)
	}
	for _, e := range entries {
		if e.MinShards != 6 {
			t.Fatalf("%s has %d healthy shards after repair", e.Key, e.MinShards)
		}
	}
	for name, data := range files {
		p := filepath.Join(cl.Root, name)
		os.Remove(p)
		if _, err := c2.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatalf("%s differs", name)
		}
	}
}

func TestBackendDiesMidStore(t *testing.T) {
	cl := zstortest.New(t, 4, 3)
	c := open(t, cl, zstortest.TestKey, "redundant_nodes = 1")
	ctx := zstortest.Ctx(t)
	data := zstortest.RandomBytes(160 * cl.ChunkSize)
	p := cl.WriteFile("mid.bin", data)
	var killedAt time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Kill backend 0 once it has received some shards.
		for range 500 {
			if len(zstortest.DataFiles(cl.Data[0])) > 0 {
				if fi, err := os.Stat(zstortest.DataFiles(cl.Data[0])[0]); err == nil && fi.Size() > 1<<20 {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		cl.Data[0].Kill()
		killedAt = time.Now()
	}()
	res, err := c.Store(ctx, p, zstor.StoreOptions{})
	<-done
	if err != nil {
		// Failing is allowed, but then nothing may claim the object.
		t.Logf("store failed: %v", err)
		if _, cerr := c.Check(ctx, "mid.bin"); !errors.Is(cerr, zstor.ErrNotStored) {
			t.Fatalf("failed store left a record: %v", cerr)
		}
		return
	}
	t.Logf("store completed %v after the kill, %d chunks", time.Since(killedAt), res.Chunks)
	rec, err := c.Stat(ctx, "mid.bin")
	if err != nil {
		t.Fatal(err)
	}
	for ci, locs := range rec.Locations {
		counts := make([]int, 2)
		seen := map[string]bool{}
		for _, l := range locs {
			b := c.Backends().Lookup(l.Backend)
			if b == nil || seen[l.Backend] {
				t.Fatalf("chunk %d: bad or duplicate backend %q", ci, l.Backend)
			}
			seen[l.Backend] = true
			counts[b.Group]++
		}
		if !placement.Valid(placement.Rules{K: 4, N: 6, RedundantNodes: 1}, counts) {
			t.Fatalf("chunk %d: invalid placement %v", ci, counts)
		}
	}
	os.Remove(p)
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
}

func TestMetadataBackendLoss(t *testing.T) {
	cl := zstortest.New(t, 6)
	cl.Meta[2].Kill()
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	roundTrip(t, ctx, c, cl, "m/one", zstortest.RandomBytes(1000))
	roundTrip(t, ctx, c, cl, "m/two", zstortest.RandomBytes(2*cl.ChunkSize))
	entries, _, err := c.List(ctx, "m/")
	if err != nil || len(entries) != 2 {
		t.Fatalf("list: %v, %v", entries, err)
	}
}

func TestWrongKey(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	p := cl.WriteFile("k.bin", zstortest.RandomBytes(5000))
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	bad := open(t, cl, zstortest.OtherKey, "")
	_, err := bad.Retrieve(ctx, p, zstor.RetrieveOptions{})
	if err == nil || !strings.Contains(err.Error(), "wrong encryption key") {
		t.Fatalf("retrieve with the wrong key: %v", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("a file appeared")
	}
	if ents, _ := os.ReadDir(cl.Root); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
	if _, err := bad.Check(ctx, "k.bin"); err == nil {
		t.Fatal("check with the wrong key succeeded")
	}
	entries, foreign, err := bad.List(ctx, "")
	if err != nil || len(entries) != 0 || foreign != 1 {
		t.Fatalf("list with the wrong key: %v, %d, %v", entries, foreign, err)
	}
}
