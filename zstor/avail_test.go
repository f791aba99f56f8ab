package zstor_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"qss/zstor"
	"qss/zstor/placement"
	"qss/zstor/zstortest"
)

// With exactly n backends and one down, a store writes n−1 shards per
// chunk, records the missing one, reads back, and repair writes the
// missing shard once the backend returns at its address.
func TestStoreDegradedThenRepair(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := open(t, cl, zstortest.TestKey, "")
	ctx := zstortest.Ctx(t)
	cl.Data[2].Kill()
	data := zstortest.RandomBytes(3*cl.ChunkSize + 5)
	p := cl.WriteFile("deg/a.bin", data)
	res, err := c.Store(ctx, p, zstor.StoreOptions{})
	if err != nil {
		t.Fatalf("store with one of n backends down: %v", err)
	}
	if res.MinShards != 5 {
		t.Fatalf("stored with %d shards per chunk, want 5", res.MinShards)
	}
	rec, err := c.Stat(ctx, "deg/a.bin")
	if err != nil || !rec.Degraded() || rec.MinShards() != 5 {
		t.Fatalf("record: degraded %v, %d shards, %v", rec != nil && rec.Degraded(), rec.MinShards(), err)
	}
	dead := c.Backends().All()[2].ID()
	for ci, locs := range rec.Locations {
		seen := map[string]bool{}
		for _, l := range locs {
			if l.Backend == dead || (l.Backend != "" && seen[l.Backend]) {
				t.Fatalf("chunk %d: shard on the dead or a repeated backend: %v", ci, locs)
			}
			seen[l.Backend] = true
		}
	}
	os.Remove(p)
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatalf("retrieve degraded: %v", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}

	// Two of six down: 4 shards < min_store_shards (k+1 = 5) is refused,
	// and nothing claims the object.
	cl.Data[3].Kill()
	q := cl.WriteFile("deg/b.bin", data[:1000])
	if _, err := c.Store(ctx, q, zstor.StoreOptions{}); !errors.Is(err, placement.ErrImpossible) {
		t.Fatalf("store with 4 of 6 backends: %v, want ErrImpossible", err)
	}
	if _, err := c.Check(ctx, "deg/b.bin"); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("refused store left a record: %v", err)
	}
	// ... unless min_store_shards allows k.
	c4 := open(t, cl, zstortest.TestKey, "min_store_shards = 4")
	if res, err := c4.Store(ctx, q, zstor.StoreOptions{}); err != nil || res.MinShards != 4 {
		t.Fatalf("store with min_store_shards = 4: %+v, %v", res, err)
	}

	cl.Data[2].RestartSamePort()
	cl.Data[3].RestartSamePort()
	c2 := open(t, cl, zstortest.TestKey, "")
	rr, err := c2.Repair(ctx, "")
	if err != nil || len(rr.Errors) != 0 || len(rr.Repaired) != 2 {
		t.Fatalf("repair: %+v, %v", rr, err)
	}
	for _, key := range []string{"deg/a.bin", "deg/b.bin"} {
		rec, err := c2.Stat(ctx, key)
		if err != nil || rec.Degraded() {
			t.Fatalf("%s after repair: %d shards, %v", key, rec.MinShards(), err)
		}
	}
	rep, err := c2.Scrub(ctx)
	if err != nil || len(rep.Problems) != 0 || rep.Shards != (4+1)*6 {
		t.Fatalf("scrub after repair: %+v, %v", rep, err)
	}
}

// With group rules (two groups of 3, redundant_nodes = 1) and one backend
// down, a store still succeeds degraded, and repair restores a placement
// that keeps the rules.
func TestStoreDegradedGroups(t *testing.T) {
	cl := zstortest.New(t, 3, 3)
	c := open(t, cl, zstortest.TestKey, "redundant_nodes = 1")
	ctx := zstortest.Ctx(t)
	cl.Data[4].Kill()
	data := zstortest.RandomBytes(2*cl.ChunkSize + 9)
	p := cl.WriteFile("g.bin", data)
	res, err := c.Store(ctx, p, zstor.StoreOptions{})
	if err != nil || res.MinShards != 5 {
		t.Fatalf("store with a group backend down: %+v, %v", res, err)
	}
	cl.Data[4].RestartSamePort()
	c2 := open(t, cl, zstortest.TestKey, "redundant_nodes = 1")
	if rr, err := c2.Repair(ctx, ""); err != nil || len(rr.Repaired) != 1 {
		t.Fatalf("repair: %+v, %v", rr, err)
	}
	rec, err := c2.Stat(ctx, "g.bin")
	if err != nil {
		t.Fatal(err)
	}
	for ci, locs := range rec.Locations {
		counts := make([]int, 2)
		for _, l := range locs {
			b := c2.Backends().Lookup(l.Backend)
			if b == nil {
				t.Fatalf("chunk %d: shard without a backend after repair: %v", ci, locs)
			}
			counts[b.Group]++
		}
		if !placement.Valid(placement.Rules{K: 4, N: 6, RedundantNodes: 1}, counts) {
			t.Fatalf("chunk %d: placement %v breaks the rules after repair", ci, counts)
		}
	}
	os.Remove(p)
	if _, err := c2.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
}
