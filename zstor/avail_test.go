package zstor_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
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

// proxy forwards connections from a new loopback port to target: a second
// address that reaches the same server, which only the server's identity
// can tell.
func proxy(t *testing.T, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return l.Addr().String()
}

// One backend listed under several spellings (localhost:P, the IPv4-mapped
// IPv6 form, and another address reaching the same server) counts as one:
// no chunk gets two shards on one server, and a cluster whose distinct
// live backends are too few refuses the store instead of doubling shards.
func TestSpellingsOfOneBackendMerged(t *testing.T) {
	cl := zstortest.New(t, 6)
	port := func(i int) string { return strconv.Itoa(cl.Data[i].Port) }
	server := map[string]int{} // configured address → cl.Data index
	for i, s := range cl.Data {
		server[s.Addr()] = i
	}
	extra := map[string]int{
		"localhost:" + port(0):          0,
		"[::ffff:127.0.0.1]:" + port(1): 1,
		proxy(t, cl.Data[2].Addr()):     2,
	}
	text := cl.ConfigTOML(zstortest.TestKey, "")
	for addr, i := range extra {
		server[addr] = i
		text += fmt.Sprintf("[[groups.backends]]\naddress = %q\nnamespace = %q\npassword = %q\n\n", addr, zstortest.DataNS, zstortest.DataPass)
	}
	c := openText(t, text)
	ctx := zstortest.Ctx(t)
	check := func(key string) {
		t.Helper()
		rec, err := c.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		for ci, locs := range rec.Locations {
			seen := map[int]string{}
			for _, l := range locs {
				addr := strings.TrimSuffix(l.Backend, "/"+zstortest.DataNS)
				i, ok := server[addr]
				if !ok {
					t.Fatalf("chunk %d: shard on unknown backend %q", ci, l.Backend)
				}
				if prev, dup := seen[i]; dup {
					t.Fatalf("chunk %d: two shards on server %d (%s and %s)", ci, i, prev, l.Backend)
				}
				seen[i] = l.Backend
			}
		}
	}
	// Several stores, so free-space ranking rotates over all spellings.
	for f := range 4 {
		name := fmt.Sprintf("sp/%d", f)
		roundTrip(t, ctx, c, cl, name, zstortest.RandomBytes(6*cl.ChunkSize))
		check(name)
	}
	// Two servers down: 4 distinct backends (7 entries) < min_store_shards.
	cl.Data[3].Kill()
	cl.Data[4].Kill()
	p := cl.WriteFile("sp/refused", zstortest.RandomBytes(1000))
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); !errors.Is(err, placement.ErrImpossible) {
		t.Fatalf("store on 4 distinct servers under 7 names: %v, want ErrImpossible", err)
	}
}

func openText(t *testing.T, text string) *zstor.Client {
	t.Helper()
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

// A record written before spellings were merged may hold two shards of a
// chunk on one server: list counts them once, scrub reports the extra one,
// and repair moves it to a distinct backend and frees the doubled copy.
func TestRepairMovesDoubledShard(t *testing.T) {
	cl := zstortest.New(t, 6) // every server gets a shard
	text := cl.ConfigTOML(zstortest.TestKey, "")
	alias := "localhost:" + strconv.Itoa(cl.Data[0].Port)
	text += fmt.Sprintf("[[groups.backends]]\naddress = %q\nnamespace = %q\npassword = %q\n\n", alias, zstortest.DataNS, zstortest.DataPass)
	c := openText(t, text)
	ctx := zstortest.Ctx(t)
	data := zstortest.RandomBytes(cl.ChunkSize / 3)
	p := cl.WriteFile("doubled", data)
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	rec, err := c.Stat(ctx, "doubled")
	if err != nil {
		t.Fatal(err)
	}
	first := c.Backends().All()[0].ID()
	onFirst, moved := false, -1
	for i, l := range rec.Locations[0] {
		if l.Backend == first {
			onFirst = true
		} else if moved < 0 {
			moved = i
		}
	}
	if !onFirst || moved < 0 {
		t.Fatalf("six shards on six servers expected: %v", rec.Locations[0])
	}
	// Copy shard `moved` to server 0 under its other spelling.
	l := rec.Locations[0][moved]
	shard, err := c.Backends().Lookup(l.Backend).Get(ctx, l.Seq)
	if err != nil {
		t.Fatal(err)
	}
	aliasB := c.Backends().Lookup(alias + "/" + zstortest.DataNS)
	seq, err := aliasB.Put(ctx, shard)
	if err != nil {
		t.Fatal(err)
	}
	rec.Locations[0][moved] = zstor.Location{Backend: aliasB.ID(), Seq: seq}
	if err := c.PutRecordForTest(ctx, "doubled", rec); err != nil {
		t.Fatal(err)
	}
	if !c.Doubled(rec) {
		t.Fatal("Doubled does not see two shards on one server")
	}
	es, _, err := c.List(ctx, "doubled")
	if err != nil || len(es) != 1 || es[0].MinShards != 5 {
		t.Fatalf("list: %+v, %v (want 5 distinct shards)", es, err)
	}
	rep, err := c.Scrub(ctx)
	if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Err, "same backend") {
		t.Fatalf("scrub: %+v, %v", rep, err)
	}
	extra := rec.Locations[0][rep.Problems[0].Shard] // the copy repair replaces
	rr, err := c.Repair(ctx, "")
	if err != nil || len(rr.Repaired) != 1 || rr.Repaired[0].Rebuilt != 1 {
		t.Fatalf("repair: %+v, %v", rr, err)
	}
	after, err := c.Stat(ctx, "doubled")
	if err != nil || c.Doubled(after) {
		t.Fatalf("still doubled after repair: %v", err)
	}
	if _, err := c.Backends().Lookup(extra.Backend).Get(ctx, extra.Seq); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("the doubled copy was not freed: %v", err)
	}
	os.Remove(p)
	if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
}
