package zdb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// kiLoc derives a location from a key and a version, so that a wrong record
// behind a slot shows up as a wrong location.
func kiLoc(key []byte, ver uint32) location {
	h := CRC(key)
	return location{
		IndexID: h, IndexOffset: ver, DataID: h ^ 0xdeadbeef, DataOffset: ver * 7,
		Length: uint32(len(key)), CRC: h + ver, Timestamp: ver ^ 0x5555,
	}
}

// kiCheck compares the index with the model: Len, Get of every model key,
// Range (each key once, right location) and the linear-probing invariant
// that no empty slot lies between a key's home slot and its slot.
func kiCheck(t *testing.T, ki *keyIndex, model map[string]location) {
	t.Helper()
	if ki.Len() != len(model) {
		t.Fatalf("Len = %d, model has %d", ki.Len(), len(model))
	}
	for k, want := range model {
		got, ok := ki.Get([]byte(k))
		if !ok {
			t.Fatalf("Get(%x): missing", k)
		}
		if got != want {
			t.Fatalf("Get(%x) = %+v, want %+v", k, got, want)
		}
	}
	seen := map[string]bool{}
	ki.Range(func(key []byte, loc location) bool {
		k := string(key)
		if seen[k] {
			t.Fatalf("Range: %x twice", k)
		}
		seen[k] = true
		want, ok := model[k]
		if !ok {
			t.Fatalf("Range: %x not in the model", k)
		}
		if loc != want {
			t.Fatalf("Range: %x = %+v, want %+v", k, loc, want)
		}
		return true
	})
	if len(seen) != len(model) {
		t.Fatalf("Range saw %d keys, model has %d", len(seen), len(model))
	}
	kiProbeInvariant(t, ki)
}

func kiProbeInvariant(t *testing.T, ki *keyIndex) {
	t.Helper()
	mask := uint64(len(ki.slots) - 1)
	n := 0
	for j, s := range ki.slots {
		if s == 0 {
			continue
		}
		n++
		rec := ki.arena.record(s&refMask - 1)
		key := rec[recordFixed : recordFixed+int(rec[0])]
		h := ki.hash(key)
		if s>>refBits != ki.tag(h) {
			t.Fatalf("slot %d: tag %x, want %x", j, s>>refBits, ki.tag(h))
		}
		for i := h & mask; i != uint64(j); i = (i + 1) & mask {
			if ki.slots[i] == 0 {
				t.Fatalf("slot %d (key %x, home %d): empty slot %d in between", j, key, h&mask, i)
			}
		}
	}
	if n != ki.n {
		t.Fatalf("%d occupied slots, n = %d", n, ki.n)
	}
}

func kiRandKey(r *rand.Rand, space int) []byte {
	// Keys from a bounded space so that deletes and overwrites hit; lengths
	// vary from 1 to 255.
	id := r.IntN(space)
	l := 1 + (id*7919)%MaxKeyLen
	k := make([]byte, l)
	for i := range k {
		k[i] = byte(id >> (8 * (i % 4)))
	}
	if l >= 4 {
		binary.LittleEndian.PutUint32(k, uint32(id))
	} else {
		k[0] ^= byte(id >> 16)
	}
	return k
}

// TestKeyIndexRandom runs random Put/Get/Delete against a Go map, through
// several growths and many backward-shift deletions.
func TestKeyIndexRandom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		space int
		ops   int
	}{
		{"small", 300, 20000},    // stays in the first table, dense clusters
		{"growing", 6000, 60000}, // grows 1024 → 8192 slots and beyond
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.space)))
			ki := newKeyIndex()
			defer ki.Release()
			model := map[string]location{}
			for i := 0; i < tc.ops; i++ {
				key := kiRandKey(r, tc.space)
				switch op := r.IntN(10); {
				case op < 5:
					loc := kiLoc(key, uint32(i))
					ki.Put(key, loc)
					model[string(key)] = loc
				case op < 8:
					_, want := model[string(key)]
					if got := ki.Delete(key); got != want {
						t.Fatalf("op %d: Delete(%x) = %v, want %v", i, key, got, want)
					}
					delete(model, string(key))
				default:
					want, wok := model[string(key)]
					got, gok := ki.Get(key)
					if gok != wok || got != want {
						t.Fatalf("op %d: Get(%x) = %+v,%v want %+v,%v", i, key, got, gok, want, wok)
					}
				}
				if i%2000 == 0 {
					kiCheck(t, ki, model)
				} else if i%50 == 0 {
					kiProbeInvariant(t, ki)
				}
			}
			kiCheck(t, ki, model)
			// Empty it completely, checking as it shrinks.
			i := 0
			for k := range model {
				if !ki.Delete([]byte(k)) {
					t.Fatalf("Delete(%x) = false", k)
				}
				if ki.Delete([]byte(k)) {
					t.Fatalf("second Delete(%x) = true", k)
				}
				delete(model, k)
				if i++; i%500 == 0 {
					kiCheck(t, ki, model)
				}
			}
			kiCheck(t, ki, model)
			if ki.Len() != 0 {
				t.Fatalf("Len = %d after deleting everything", ki.Len())
			}
			for _, s := range ki.slots {
				if s != 0 {
					t.Fatalf("slot %x left after deleting everything", s)
				}
			}
		})
	}
}

// TestKeyIndexGrowth inserts enough keys to grow the table several times
// and fill more than one arena chunk, then checks everything survived.
func TestKeyIndexGrowth(t *testing.T) {
	ki := newKeyIndex()
	defer ki.Release()
	const n = 150000 // 150k records of ~60 bytes: 9 MB of arena, 3 chunks
	model := make(map[string]location, n)
	slots := len(ki.slots)
	grew := 0
	for i := 0; i < n; i++ {
		key := []byte(fmt.Sprintf("growth-key-%08d-%s", i, bytes.Repeat([]byte{'x'}, i%20)))
		loc := kiLoc(key, uint32(i))
		ki.Put(key, loc)
		model[string(key)] = loc
		if len(ki.slots) != slots {
			if len(ki.slots) != 2*slots {
				t.Fatalf("table went from %d to %d slots", slots, len(ki.slots))
			}
			slots = len(ki.slots)
			grew++
		}
		if ki.n*4 > len(ki.slots)*3 {
			t.Fatalf("load factor over 3/4: %d keys in %d slots", ki.n, len(ki.slots))
		}
	}
	if grew < 5 {
		t.Fatalf("table grew %d times, want at least 5", grew)
	}
	if len(ki.arena.chunks) < 2 {
		t.Fatalf("arena has %d chunks, want records across chunks", len(ki.arena.chunks))
	}
	kiCheck(t, ki, model)
	if ki.Bytes() < len(ki.slots)*8 {
		t.Fatalf("Bytes = %d", ki.Bytes())
	}
	// Overwrites keep the count and change the location in place.
	for k := range model {
		loc := kiLoc([]byte(k), 1<<30)
		ki.Put([]byte(k), loc)
		model[k] = loc
	}
	kiCheck(t, ki, model)
}

// TestKeyIndexBackwardShift builds long clusters that wrap around the end
// of the table and deletes from their middle, the cases where backward-shift
// deletion must move later members into the hole, or must not.
func TestKeyIndexBackwardShift(t *testing.T) {
	ki := newKeyIndex()
	defer ki.Release()
	mask := uint64(len(ki.slots) - 1)
	// Find keys whose home slots are at the end of the table, at its start,
	// and in a crowded spot in the middle.
	homes := map[uint64][][]byte{}
	want := func(h uint64) bool {
		return h >= mask-3 || h <= 2 || (h >= 500 && h <= 503)
	}
	for i := 0; len(homes) < 11 || kiCount(homes) < 60; i++ {
		key := []byte(fmt.Sprintf("shift-%d", i))
		if h := ki.hash(key) & mask; want(h) && len(homes[h]) < 6 {
			homes[h] = append(homes[h], key)
		}
		if i > 50_000_000 {
			t.Fatal("could not find colliding keys")
		}
	}
	var keys [][]byte
	for _, ks := range homes {
		keys = append(keys, ks...)
	}
	r := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 40; round++ {
		model := map[string]location{}
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		for i, k := range keys {
			loc := kiLoc(k, uint32(round*1000+i))
			ki.Put(k, loc)
			model[string(k)] = loc
		}
		kiCheck(t, ki, model)
		// The wrapping cluster really wraps.
		if ki.slots[mask] == 0 || ki.slots[0] == 0 {
			t.Fatalf("no cluster across the end of the table")
		}
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		for _, k := range keys {
			if !ki.Delete(k) {
				t.Fatalf("round %d: Delete(%s) = false", round, k)
			}
			delete(model, string(k))
			kiCheck(t, ki, model)
		}
	}
}

func kiCount(m map[uint64][][]byte) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// TestKeyIndexFreeList reuses freed records of the same key length and
// checks that a reused record never leaks into another key.
func TestKeyIndexFreeList(t *testing.T) {
	ki := newKeyIndex()
	defer ki.Release()
	model := map[string]location{}
	for i := 0; i < 2000; i++ {
		k := []byte(fmt.Sprintf("k%05d", i)) // all 6 bytes long
		ki.Put(k, kiLoc(k, 1))
		model[string(k)] = kiLoc(k, 1)
	}
	chunks := len(ki.arena.chunks)
	used := ki.arena.used
	for cycle := 0; cycle < 50; cycle++ {
		for i := cycle % 3; i < 2000; i += 3 {
			k := []byte(fmt.Sprintf("k%05d", i))
			ki.Delete(k)
			delete(model, string(k))
		}
		for i := cycle % 3; i < 2000; i += 3 {
			// Different keys of the same length take the freed records.
			k := []byte(fmt.Sprintf("z%05d", (i+cycle*7)%100000))
			ki.Put(k, kiLoc(k, uint32(cycle)))
			model[string(k)] = kiLoc(k, uint32(cycle))
		}
		for i := cycle % 3; i < 2000; i += 3 {
			k := []byte(fmt.Sprintf("k%05d", i))
			ki.Put(k, kiLoc(k, uint32(cycle+2)))
			model[string(k)] = kiLoc(k, uint32(cycle+2))
		}
		kiCheck(t, ki, model)
	}
	if len(ki.arena.chunks) != chunks {
		t.Fatalf("arena grew from %d to %d chunks despite the free list", chunks, len(ki.arena.chunks))
	}
	_ = used
}

// TestKeyIndexEdgeKeys covers keys of every length, binary bytes, and keys
// that are prefixes of one another.
func TestKeyIndexEdgeKeys(t *testing.T) {
	ki := newKeyIndex()
	defer ki.Release()
	model := map[string]location{}
	for l := 1; l <= MaxKeyLen; l++ {
		for _, b := range []byte{0x00, 0xff, 'a'} {
			k := bytes.Repeat([]byte{b}, l)
			ki.Put(k, kiLoc(k, uint32(l)))
			model[string(k)] = kiLoc(k, uint32(l))
		}
	}
	kiCheck(t, ki, model)
	if _, ok := ki.Get([]byte("aa\x00")); ok {
		t.Fatal("Get of an absent key found something")
	}
	if ki.Delete([]byte("nope")) {
		t.Fatal("Delete of an absent key reported true")
	}
	// Range stops when told to.
	calls := 0
	ki.Range(func([]byte, location) bool { calls++; return calls < 5 })
	if calls != 5 {
		t.Fatalf("Range went on after false: %d calls", calls)
	}
	for l := 1; l <= MaxKeyLen; l += 2 {
		k := bytes.Repeat([]byte{0x00}, l)
		ki.Delete(k)
		delete(model, string(k))
	}
	kiCheck(t, ki, model)
}
