package zstor_test

// Attacks by one dishonest metadata backend (or a dishonest etcd), from the
// threat model of docs/zstor-format.md: metadata backends are trusted with
// neither confidentiality nor integrity. Each test plays the backend by
// writing to it directly, with everything a backend can know: the
// documented envelope formats (v1 with its public CRC, v2) and the records
// it holds itself.

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"math"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"qss/internal/etcdtest"
	"qss/zdb/client"
	"qss/zstor"
	"qss/zstor/config"
	"qss/zstor/pipeline"
	"qss/zstor/zstortest"
)

// attackClient opens a zstor client on the cluster with its zdb metadata
// backends, or, when etcd is set, with the etcd store at that endpoint.
func attackClient(t *testing.T, cl *zstortest.Cluster, etcd string) *zstor.Client {
	t.Helper()
	cfg, err := config.Parse([]byte(cl.ConfigTOML(zstortest.TestKey, "")))
	if err != nil {
		t.Fatal(err)
	}
	if etcd != "" {
		cfg.Meta.Type = config.MetaEtcd
		cfg.Meta.Endpoints = []string{etcd}
		cfg.Meta.Backends = nil
	}
	c, err := zstor.Open(zstortest.Ctx(t), cfg, zstor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// metaDirect is a client on metadata backend i, bypassing zstor.
func metaDirect(t *testing.T, cl *zstortest.Cluster, i int) *client.Client {
	t.Helper()
	c, err := client.New(zstortest.Ctx(t), client.Options{Addr: cl.Meta[i].Addr(), Namespace: zstortest.MetaNS, Password: zstortest.MetaPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// onlyMetaKey returns the store key of the only record in the store.
func onlyMetaKey(t *testing.T, c *zstor.Client) string {
	t.Helper()
	var keys []string
	for k, err := range c.Meta().Keys(zstortest.Ctx(t), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 1 {
		t.Fatalf("%d records, want 1", len(keys))
	}
	return keys[0]
}

// rawAll returns what every metadata backend holds under zkey.
func rawAll(t *testing.T, cl *zstortest.Cluster, zkey []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range cl.Meta {
		v, err := metaDirect(t, cl, i).Get(zstortest.Ctx(t), zkey)
		if err != nil {
			t.Fatalf("backend %d: %v", i, err)
		}
		out = append(out, v)
	}
	return out
}

// withVersion returns a copy of the envelope env (v1 or v2) with its
// version replaced, and, for v1, its CRC recomputed as anyone can.
func withVersion(env []byte, version uint64) []byte {
	b := bytes.Clone(env)
	binary.LittleEndian.PutUint64(b[4:12], version)
	if b[2] == 1 {
		fixV1CRC(b)
	}
	return b
}

func fixV1CRC(b []byte) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	c := crc32.Update(0, tab, b[:16])
	c = crc32.Update(c, tab, b[20:])
	binary.LittleEndian.PutUint32(b[16:20], c)
}

// v1Envelope builds a v1 envelope (kind 1 live, 2 tombstone) around value,
// with a valid CRC.
func v1Envelope(kind byte, version uint64, value []byte) []byte {
	n := 20
	if kind == 1 {
		n = 24 + len(value)
	}
	b := make([]byte, n)
	b[0], b[1], b[2], b[3] = 'Q', 'M', 1, kind
	binary.LittleEndian.PutUint64(b[4:12], version)
	binary.LittleEndian.PutUint32(b[12:16], 0xffffffff)
	if kind == 1 {
		binary.LittleEndian.PutUint32(b[20:24], uint32(len(value)))
		copy(b[24:], value)
	}
	fixV1CRC(b)
	return b
}

// soon is a version a little ahead of now, well within any clock bound.
func soon() uint64 { return uint64(time.Now().Add(time.Minute).UnixMilli()) << 16 }

// stored stores data as name and returns its checksum.
func stored(t *testing.T, c *zstor.Client, cl *zstortest.Cluster, name string, data []byte) pipeline.Checksum {
	t.Helper()
	res, err := c.Store(zstortest.Ctx(t), cl.WriteFile(name, data), zstor.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Checksum
}

// mustCheck fails unless the object's stored checksum is want, and the
// object retrieves to want.
func mustCheck(t *testing.T, c *zstor.Client, cl *zstortest.Cluster, name string, want pipeline.Checksum, what string) {
	t.Helper()
	ctx := zstortest.Ctx(t)
	sum, err := c.Check(ctx, name)
	if err != nil || sum != want {
		t.Fatalf("%s: check = %s, %v; want %s", what, sum, err, want)
	}
	p := c.PathFor(name)
	os.Remove(p)
	if rr, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil || rr.Checksum != want {
		t.Fatalf("%s: retrieve = %+v, %v", what, rr, err)
	}
}

// honestUnchanged waits a little for read repair, then fails if the honest
// backends (all but 0) hold anything other than before.
func honestUnchanged(t *testing.T, cl *zstortest.Cluster, zkey []byte, before [][]byte, what string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	now := rawAll(t, cl, zkey)
	for i := 1; i < len(now); i++ {
		if !bytes.Equal(now[i], before[i]) {
			t.Fatalf("%s: honest backend %d was rewritten (read repair copied the forgery)", what, i)
		}
	}
}

// TestAttackForgedTombstone: one backend of four writes a tombstone with a
// future version, in every format it knows. The file stays stored and
// readable, and read repair does not copy the tombstone.
func TestAttackForgedTombstone(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := attackClient(t, cl, "")
	want := stored(t, c, cl, "victim.bin", zstortest.RandomBytes(3*cl.ChunkSize))
	zkey := []byte(zstortest.TestPrefix + "/" + onlyMetaKey(t, c))
	time.Sleep(200 * time.Millisecond) // the replicas beyond the quorum
	before := rawAll(t, cl, zkey)
	evil := metaDirect(t, cl, 0)

	// A v2-shaped tombstone: the header of the backend's own record with
	// the kind and version changed, and its seal cut to a tombstone's.
	v2 := bytes.Clone(before[0][:min(len(before[0]), 16+33)])
	v2[3] = 2
	v2 = withVersion(v2, soon())
	for name, forged := range map[string][]byte{
		"v1 tombstone": v1Envelope(2, soon(), nil),
		"v2 tombstone": v2,
	} {
		if _, _, err := evil.Set(zstortest.Ctx(t), zkey, forged); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, c, cl, "victim.bin", want, name)
		honestUnchanged(t, cl, zkey, before, name)
	}
}

// TestAttackRollback: a backend keeps an old record and, after the file was
// stored again, replays it with a bumped version. The newest version
// stays the one read (the old one's shards are already freed).
func TestAttackRollback(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := attackClient(t, cl, "")
	stored(t, c, cl, "f.bin", zstortest.RandomBytes(2*cl.ChunkSize))
	zkey := []byte(zstortest.TestPrefix + "/" + onlyMetaKey(t, c))
	time.Sleep(200 * time.Millisecond)
	old := rawAll(t, cl, zkey)[0]
	want := stored(t, c, cl, "f.bin", zstortest.RandomBytes(2*cl.ChunkSize+7))
	time.Sleep(200 * time.Millisecond)
	before := rawAll(t, cl, zkey)
	evil := metaDirect(t, cl, 0)

	forgeries := map[string][]byte{"bumped": withVersion(old, soon())}
	if old[2] == 2 {
		// The old seal in a v1 envelope, whose header has no seal.
		forgeries["v1 envelope"] = v1Envelope(1, soon(), old[16:])
	}
	for name, forged := range forgeries {
		if _, _, err := evil.Set(zstortest.Ctx(t), zkey, forged); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, c, cl, "f.bin", want, name)
		honestUnchanged(t, cl, zkey, before, name)
	}
}

// TestAttackClockWrap: a backend serves the record with version 2^64−1.
// Had the clock followed it, the next write would get version 0 and lose;
// the next store must win.
func TestAttackClockWrap(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := attackClient(t, cl, "")
	stored(t, c, cl, "w.bin", zstortest.RandomBytes(cl.ChunkSize))
	zkey := []byte(zstortest.TestPrefix + "/" + onlyMetaKey(t, c))
	time.Sleep(200 * time.Millisecond)
	evil := metaDirect(t, cl, 0)
	cur := rawAll(t, cl, zkey)[0]
	forged := []byte(nil)
	if cur[2] == 1 {
		forged = withVersion(cur, math.MaxUint64)
	} else {
		forged = v1Envelope(1, math.MaxUint64, cur[16:])
	}
	if _, _, err := evil.Set(zstortest.Ctx(t), zkey, forged); err != nil {
		t.Fatal(err)
	}
	// Reads observe the versions they see.
	for range 4 {
		if _, err := c.Stat(zstortest.Ctx(t), "w.bin"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	prev := binary.LittleEndian.Uint64(rawAll(t, cl, zkey)[1][4:12])
	want := stored(t, c, cl, "w.bin", zstortest.RandomBytes(cl.ChunkSize+1))
	time.Sleep(200 * time.Millisecond)
	if v := binary.LittleEndian.Uint64(rawAll(t, cl, zkey)[1][4:12]); v <= prev {
		t.Fatalf("the store after the attack got version %#x, not after %#x (the clock wrapped)", v, prev)
	}
	// The backend keeps serving its forgery.
	if _, _, err := evil.Set(zstortest.Ctx(t), zkey, forged); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, c, cl, "w.bin", want, "after the wrap attempt")
}

// TestAttackJunkBlocksStores: records that the key cannot open, written by
// one backend under keys of its choosing, must not make stores of other
// objects refuse ("wrong encryption key?").
func TestAttackJunkBlocksStores(t *testing.T) {
	cl := zstortest.New(t, 6)
	c := attackClient(t, cl, "")
	evil := metaDirect(t, cl, 0)
	var keys []string
	for i, junk := range [][]byte{
		v1Envelope(1, soon(), append([]byte{1}, zstortest.RandomBytes(80)...)),
		v1Envelope(1, soon(), append([]byte{1}, zstortest.RandomBytes(80)...)),
		v1Envelope(1, soon(), append([]byte{2}, zstortest.RandomBytes(80)...)),
		append([]byte("QM\x02\x01"), zstortest.RandomBytes(100)...),
	} {
		k := "00000000000000000000000000000000000000000000000000000000000000" + string(rune('a'+i))
		keys = append(keys, k)
		if _, _, err := evil.Set(zstortest.Ctx(t), []byte(zstortest.TestPrefix+"/"+k), junk); err != nil {
			t.Fatal(err)
		}
	}
	// Reads of the junk (a list would do them) must not spread it: the
	// backend's answer is among the first three in most of them.
	for range 6 {
		for _, k := range keys {
			c.Meta().Get(zstortest.Ctx(t), k)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for i := 1; i < len(cl.Meta); i++ {
		for _, k := range keys {
			if _, err := metaDirect(t, cl, i).Get(zstortest.Ctx(t), []byte(zstortest.TestPrefix+"/"+k)); err == nil {
				t.Fatalf("junk %s was copied to honest backend %d", k, i)
			}
		}
	}
	want := stored(t, c, cl, "new.bin", zstortest.RandomBytes(cl.ChunkSize))
	mustCheck(t, c, cl, "new.bin", want, "stored beside junk")
	// A fresh client (no key check cached) too.
	c2 := attackClient(t, cl, "")
	want2 := stored(t, c2, cl, "new2.bin", zstortest.RandomBytes(100))
	mustCheck(t, c2, cl, "new2.bin", want2, "second store")
}

// etcdAttack starts etcd and a client using it, stores one file, and
// returns a raw etcd client and the file's etcd key.
func etcdAttack(t *testing.T) (*zstortest.Cluster, string, *clientv3.Client, string) {
	srv := etcdtest.Start(t)
	cl := zstortest.New(t, 6)
	c := attackClient(t, cl, srv.Endpoint)
	stored(t, c, cl, "e.bin", zstortest.RandomBytes(cl.ChunkSize))
	mk := onlyMetaKey(t, c)
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return cl, srv.Endpoint, raw, zstortest.TestPrefix + "/" + mk
}

// TestAttackEtcdJunk: junk records in etcd, under keys that sort before
// the real ones, do not make stores refuse.
func TestAttackEtcdJunk(t *testing.T) {
	cl, ep, raw, _ := etcdAttack(t)
	ctx := context.Background()
	for i := range 7 {
		junk := append([]byte{1}, zstortest.RandomBytes(90)...) // a v1 seal's first byte
		if i >= 5 {
			junk = append([]byte("QM\x02\x01"), zstortest.RandomBytes(90)...)
		}
		if _, err := raw.Put(ctx, zstortest.TestPrefix+"/!junk"+string(rune('a'+i)), string(junk)); err != nil {
			t.Fatal(err)
		}
	}
	c := attackClient(t, cl, ep)
	want := stored(t, c, cl, "e2.bin", zstortest.RandomBytes(100))
	mustCheck(t, c, cl, "e2.bin", want, "etcd: stored beside junk")
}

// TestAttackEtcdRollback: an old record replayed by etcd with a bumped
// version in place of the newest is not returned as the file's record.
// (A plain replay of an old record, version and all, cannot be told from
// the newest by a client that keeps no state: docs/zstor-format.md.)
func TestAttackEtcdRollback(t *testing.T) {
	cl, ep, raw, ekey := etcdAttack(t)
	ctx := context.Background()
	c := attackClient(t, cl, ep)
	sum1, err := c.Check(zstortest.Ctx(t), "e.bin")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := raw.Get(ctx, ekey)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get: %v", err)
	}
	old := resp.Kvs[0].Value
	sum2 := stored(t, c, cl, "e.bin", zstortest.RandomBytes(cl.ChunkSize+3))
	forged := old
	if len(old) > 16 && old[0] == 'Q' {
		forged = withVersion(old, soon())
	}
	if _, err := raw.Put(ctx, ekey, string(forged)); err != nil {
		t.Fatal(err)
	}
	sum, err := c.Check(zstortest.Ctx(t), "e.bin")
	if err == nil && sum == sum1 {
		t.Fatalf("etcd: the replayed old record was returned (%s; the newest is %s)", sum, sum2)
	}
	t.Logf("check after the rollback attempt: %v", err)
}
