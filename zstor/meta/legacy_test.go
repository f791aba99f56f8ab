package meta

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"qss/internal/etcdtest"
)

// Records written by earlier versions, built byte for byte from the
// documented layouts (docs/zstor-format.md, "Metadata record v1" and
// "Envelope v1") with the standard library only, so that these tests do not
// depend on the code they check.

// handSealV1 is a v1 metadata seal of plain with AD = key: version 1,
// salt, AES-256-GCM under HKDF-SHA256(master, salt, "zstor metadata key
// v1"), nonce zero, AD = 0x01 ‖ key.
func handSealV1(t *testing.T, plain []byte, key string) []byte {
	t.Helper()
	master := bytes.Repeat([]byte{0x42}, 32) // testSealer's key
	salt := bytes.Repeat([]byte{0x5a}, 16)
	k, err := hkdf.Key(sha256.New, master, salt, "zstor metadata key v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	out := append([]byte{1}, salt...)
	return gcm.Seal(out, make([]byte, 12), plain, append([]byte{1}, key...))
}

// handEnvelopeV1 is a v1 envelope: magic, format 1, kind, version, writer,
// CRC-32C of bytes 0..15 ‖ 20..end, then (live) length and value.
func handEnvelopeV1(kind byte, version uint64, writer uint32, value []byte) []byte {
	n := 20
	if kind == kindLive {
		n = 24 + len(value)
	}
	b := make([]byte, n)
	b[0], b[1], b[2], b[3] = 'Q', 'M', 1, kind
	binary.LittleEndian.PutUint64(b[4:12], version)
	binary.LittleEndian.PutUint32(b[12:16], writer)
	if kind == kindLive {
		binary.LittleEndian.PutUint32(b[20:24], uint32(len(value)))
		copy(b[24:], value)
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	c := crc32.Update(crc32.Update(0, tab, b[:16]), tab, b[20:])
	binary.LittleEndian.PutUint32(b[16:20], c)
	return b
}

// TestZDBReadsV1: records of the first format are read, rewritten as v2
// on read, and then no longer lose to a forged v1 record; v1 tombstones
// still delete; a v1 envelope whose value is not a v1 seal of its key is
// refused.
func TestZDBReadsV1(t *testing.T) {
	bs, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "p")
	ctx := context.Background()
	old := uint64(time.Now().Add(-time.Hour).UnixMilli()) << 16
	set := func(i int, key string, v []byte) {
		t.Helper()
		if _, _, err := bs[i].direct(t).Set(ctx, []byte("p/"+key), v); err != nil {
			t.Fatal(err)
		}
	}
	live := handEnvelopeV1(kindLive, old, 7, handSealV1(t, []byte("old record"), "k"))
	for i := range bs {
		set(i, "k", live)
		set(i, "gone", handEnvelopeV1(kindTombstone, old+1, 7, nil))
	}
	// One backend missed the last write: an older v1 record.
	set(3, "k", handEnvelopeV1(kindLive, old-5, 7, handSealV1(t, []byte("older record"), "k")))
	// A v1 envelope around a seal of another key.
	for i := range bs {
		set(i, "moved", handEnvelopeV1(kindLive, old, 7, handSealV1(t, []byte("old record"), "k")))
	}

	if got := collectKeys(t, s, ""); len(got) != 2 || got[0] != "k" || got[1] != "moved" {
		t.Fatalf("Keys = %q", got)
	}
	mustGet(t, s, "k", "old record")
	mustNotFound(t, s, "gone")
	if _, err := s.Get(ctx, "moved"); err == nil {
		t.Fatal("a v1 record sealed for another key was returned")
	}
	s.settle()
	for i, b := range bs {
		r := b.raw(t, "p", "k")
		if r.legacy || string(r.value) != "old record" || r.version != old || r.writer != 7 {
			t.Fatalf("backend %d not upgraded to v2 with the same stamp: %+v", i, r)
		}
		if r := b.raw(t, "p", "gone"); !r.tombstone || !r.legacy {
			t.Fatalf("backend %d: the v1 tombstone was changed: %+v", i, r)
		}
	}
	// A forged v1 tombstone, newer or even far in the future, no longer
	// beats it, and is overwritten.
	set(0, "k", handEnvelopeV1(kindTombstone, old+1<<20, 7, nil))
	set(1, "k", handEnvelopeV1(kindTombstone, wallVersion(time.Now().Add(2*MaxClockAhead)), 7, nil))
	mustGet(t, s, "k", "old record")
	s.settle()
	for i := range 2 {
		if r := bs[i].raw(t, "p", "k"); r.legacy || r.tombstone {
			t.Fatalf("backend %d: forged v1 tombstone not repaired: %+v", i, r)
		}
	}
	// A new write follows the upgraded version and wins.
	mustPut(t, s, "k", "new")
	mustGet(t, s, "k", "new")
}

// TestZDBRefusesFarFuture: an authentic record with a version beyond
// MaxClockAhead (its writer's clock is wrong) is neither used, nor
// observed, nor overwritten; the rest of the quorum decides.
func TestZDBRefusesFarFuture(t *testing.T) {
	bs, cfgs := startBackends(t, 3)
	s := newTestZDB(t, cfgs, "p")
	ctx := context.Background()
	mustPut(t, s, "k", "now")
	s.settle()
	far, err := testEnv.encode("k", stamp{version: wallVersion(time.Now().Add(2 * MaxClockAhead))}, false, []byte("far"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bs[0].direct(t).Set(ctx, []byte("p/k"), far); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "k", "now")
	s.settle()
	if got, _ := bs[0].direct(t).Get(ctx, []byte("p/k")); !bytes.Equal(got, far) {
		t.Fatal("the far-future record was overwritten")
	}
	if v := s.clock.next(); v > s.clock.ceiling() {
		t.Fatalf("the clock followed the far-future record: %#x", v)
	}
}

// TestEtcdReadsV1: a value the etcd store wrote before the envelope (a bare
// v1 seal) is read and rewritten in the envelope; a v1 envelope in etcd
// (which the etcd store never wrote) is refused.
func TestEtcdReadsV1(t *testing.T) {
	srv := etcdtest.Start(t)
	s := newTestEtcd(t, []string{srv.Endpoint}, "zstor-meta", "", "")
	ctx := context.Background()
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Put(ctx, "zstor-meta/k", string(handSealV1(t, []byte("old record"), "k"))); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(ctx, "zstor-meta/moved", string(handSealV1(t, []byte("old record"), "k"))); err != nil {
		t.Fatal(err)
	}
	env := handEnvelopeV1(kindLive, 1<<16, 7, handSealV1(t, []byte("old record"), "env"))
	if _, err := raw.Put(ctx, "zstor-meta/env", string(env)); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "k", "old record")
	resp, err := raw.Get(ctx, "zstor-meta/k")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(err)
	}
	if r, err := testEnv.decode("k", resp.Kvs[0].Value, 0); err != nil || r.legacy || string(r.value) != "old record" {
		t.Fatalf("not rewritten in the v2 envelope: %+v, %v", r, err)
	}
	mustGet(t, s, "k", "old record")
	for _, k := range []string{"moved", "env"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, ErrUnauthentic) {
			t.Fatalf("Get(%s): %v, want ErrUnauthentic", k, err)
		}
	}
}

// TestEtcdRefusesFarFuture: a record written by a store whose clock runs
// more than MaxClockAhead ahead is refused by a reader, and does not move
// its clock; within the bound it is read.
func TestEtcdRefusesFarFuture(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	open := func(ahead time.Duration) *Etcd {
		s, err := NewEtcd(ctx, []string{srv.Endpoint}, "p", "", "", WithEtcdLogger(testLogger()), WithEtcdSealer(testSealer),
			withEtcdClock(func() time.Time { return time.Now().Add(ahead) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	reader := open(0)
	mustPut(t, open(MaxClockAhead/2), "near", "v")
	mustGet(t, reader, "near", "v")
	mustPut(t, open(2*MaxClockAhead), "far", "v")
	if _, err := reader.Get(ctx, "far"); !errors.Is(err, errAhead) {
		t.Fatalf("Get(far) = %v, want the version refused", err)
	}
	if v := reader.clock.next(); v > reader.clock.ceiling() {
		t.Fatalf("the clock followed the far record: %#x", v)
	}
}
