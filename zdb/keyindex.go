package zdb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"syscall"
	"unsafe"
)

// location is where the live version of a key is, and what the index entry
// says about it. It is what the in-memory index keeps per key.
type location struct {
	IndexID     uint32 // index file holding the live entry
	IndexOffset uint32 // offset of that entry in the file
	DataID      uint32
	DataOffset  uint32
	Length      uint32
	CRC         uint32
	Timestamp   uint32
}

// keyIndex maps keys to locations. It is built for memory per key, since a
// namespace holds millions of small keys: records live in an append-only
// arena and the hash table holds 8-byte slots, all in memory mapped outside
// the Go heap so that the garbage collector neither scans it nor counts it
// towards its heap goal.
//
// A record is: u8 keylen | 7 × u32 location | key, 29 + keylen bytes.
// A slot is 0 when empty, else hashTag<<40 | (recordRef+1), recordRef being
// the record's byte offset in the arena. The table is linear-probed and
// deletes shift the following cluster back, so there are no tombstones.
//
// Invariant: every record reachable from a slot holds a distinct key, and n
// counts those slots. Not safe for concurrent use; Namespace's lock guards it.
type keyIndex struct {
	seed  maphash.Seed
	slots []uint64 // len is a power of two
	n     int
	arena offHeapArena
	free  [MaxKeyLen + 1][]uint64 // freed record refs, per key length
}

const (
	recordFixed = 29
	refBits     = 40
	refMask     = 1<<refBits - 1
	minSlots    = 1024
)

func newKeyIndex() *keyIndex {
	ki := &keyIndex{seed: maphash.MakeSeed()}
	ki.slots = mapSlots(minSlots)
	return ki
}

// Len is the number of keys.
func (ki *keyIndex) Len() int { return ki.n }

func (ki *keyIndex) hash(key []byte) uint64 { return maphash.Bytes(ki.seed, key) }

func (ki *keyIndex) tag(h uint64) uint64 { return (h >> 40) & 0xffffff }

// find returns the slot index holding key, or -1.
func (ki *keyIndex) find(key []byte, h uint64) int {
	mask := uint64(len(ki.slots) - 1)
	tag := ki.tag(h)
	for i := h & mask; ; i = (i + 1) & mask {
		s := ki.slots[i]
		if s == 0 {
			return -1
		}
		if s>>refBits == tag {
			rec := ki.arena.record(s&refMask - 1)
			if bytes.Equal(rec[recordFixed:], key) {
				return int(i)
			}
		}
	}
}

// Get returns the location of key.
func (ki *keyIndex) Get(key []byte) (location, bool) {
	i := ki.find(key, ki.hash(key))
	if i < 0 {
		return location{}, false
	}
	return decodeLocation(ki.arena.record(ki.slots[i]&refMask - 1)), true
}

// Put inserts or replaces the location of key.
func (ki *keyIndex) Put(key []byte, loc location) {
	h := ki.hash(key)
	if i := ki.find(key, h); i >= 0 {
		encodeLocation(ki.arena.record(ki.slots[i]&refMask-1), loc)
		return
	}
	if (ki.n+1)*4 > len(ki.slots)*3 {
		ki.grow()
	}
	var ref uint64
	if fl := ki.free[len(key)]; len(fl) > 0 {
		ref = fl[len(fl)-1]
		ki.free[len(key)] = fl[:len(fl)-1]
	} else {
		ref = ki.arena.alloc(recordFixed + len(key))
	}
	rec := ki.arena.raw(ref, recordFixed+len(key))
	rec[0] = uint8(len(key))
	encodeLocation(rec, loc)
	copy(rec[recordFixed:], key)
	ki.insertSlot(ki.tag(h)<<refBits|(ref+1), h)
	ki.n++
}

func (ki *keyIndex) insertSlot(slot, h uint64) {
	mask := uint64(len(ki.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		if ki.slots[i] == 0 {
			ki.slots[i] = slot
			return
		}
	}
}

// Delete removes key; it reports whether it was there.
func (ki *keyIndex) Delete(key []byte) bool {
	h := ki.hash(key)
	i := ki.find(key, h)
	if i < 0 {
		return false
	}
	ref := ki.slots[i]&refMask - 1
	ki.free[len(key)] = append(ki.free[len(key)], ref)
	// Backward-shift deletion: move later members of the cluster into the
	// hole when their home slot allows it.
	mask := uint64(len(ki.slots) - 1)
	hole := uint64(i)
	for j := (hole + 1) & mask; ki.slots[j] != 0; j = (j + 1) & mask {
		rec := ki.arena.record(ki.slots[j]&refMask - 1)
		home := ki.hash(rec[recordFixed:recordFixed+int(rec[0])]) & mask
		// j may move to hole if home is not in the cyclic range (hole, j].
		if (j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j) {
			ki.slots[hole] = ki.slots[j]
			hole = j
		}
	}
	ki.slots[hole] = 0
	ki.n--
	return true
}

// Range calls fn for every key until it returns false. The key aliases the
// arena and must not be kept.
func (ki *keyIndex) Range(fn func(key []byte, loc location) bool) {
	for _, s := range ki.slots {
		if s == 0 {
			continue
		}
		rec := ki.arena.record(s&refMask - 1)
		if !fn(rec[recordFixed:recordFixed+int(rec[0])], decodeLocation(rec)) {
			return
		}
	}
}

func (ki *keyIndex) grow() {
	old := ki.slots
	ki.slots = mapSlots(len(old) * 2)
	for _, s := range old {
		if s == 0 {
			continue
		}
		rec := ki.arena.record(s&refMask - 1)
		h := ki.hash(rec[recordFixed : recordFixed+int(rec[0])])
		ki.insertSlot(s, h)
	}
	unmapSlots(old)
}

// Release returns the index's memory to the system. The index is unusable
// afterwards.
func (ki *keyIndex) Release() {
	unmapSlots(ki.slots)
	ki.slots = nil
	ki.arena.release()
	ki.n = 0
}

// Bytes is the memory the index holds.
func (ki *keyIndex) Bytes() int {
	return len(ki.slots)*8 + len(ki.arena.chunks)*arenaChunk
}

func encodeLocation(rec []byte, l location) {
	binary.LittleEndian.PutUint32(rec[1:], l.IndexID)
	binary.LittleEndian.PutUint32(rec[5:], l.IndexOffset)
	binary.LittleEndian.PutUint32(rec[9:], l.DataID)
	binary.LittleEndian.PutUint32(rec[13:], l.DataOffset)
	binary.LittleEndian.PutUint32(rec[17:], l.Length)
	binary.LittleEndian.PutUint32(rec[21:], l.CRC)
	binary.LittleEndian.PutUint32(rec[25:], l.Timestamp)
}

func decodeLocation(rec []byte) location {
	return location{
		IndexID:     binary.LittleEndian.Uint32(rec[1:]),
		IndexOffset: binary.LittleEndian.Uint32(rec[5:]),
		DataID:      binary.LittleEndian.Uint32(rec[9:]),
		DataOffset:  binary.LittleEndian.Uint32(rec[13:]),
		Length:      binary.LittleEndian.Uint32(rec[17:]),
		CRC:         binary.LittleEndian.Uint32(rec[21:]),
		Timestamp:   binary.LittleEndian.Uint32(rec[25:]),
	}
}

// offHeapArena hands out records from 4 MiB chunks of anonymous memory.
// Records never straddle chunks; a ref is chunk*arenaChunk + offset.
type offHeapArena struct {
	chunks [][]byte
	used   int // bytes used in the last chunk
}

const arenaChunk = 4 << 20

func (a *offHeapArena) alloc(n int) uint64 {
	if len(a.chunks) == 0 || a.used+n > arenaChunk {
		a.chunks = append(a.chunks, mapBytes(arenaChunk))
		a.used = 0
	}
	ref := uint64(len(a.chunks)-1)*arenaChunk + uint64(a.used)
	a.used += n
	return ref
}

// record returns the bytes of the record at ref, up to the end of its
// chunk; the caller knows the record's length from its first byte.
func (a *offHeapArena) record(ref uint64) []byte {
	c := a.chunks[ref/arenaChunk]
	off := ref % arenaChunk
	return c[off : off+recordFixed+uint64(c[off])]
}

// raw returns n bytes at ref, whatever they hold.
func (a *offHeapArena) raw(ref uint64, n int) []byte {
	c := a.chunks[ref/arenaChunk]
	off := ref % arenaChunk
	return c[off : off+uint64(n)]
}

func (a *offHeapArena) release() {
	for _, c := range a.chunks {
		syscall.Munmap(c)
	}
	a.chunks = nil
	a.used = 0
}

func mapBytes(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(fmt.Sprintf("zdb: mmap %d bytes for the key index: %v", n, err))
	}
	return b
}

func mapSlots(n int) []uint64 {
	b := mapBytes(n * 8)
	return unsafeSlots(b)
}

func unmapSlots(s []uint64) {
	if s != nil {
		syscall.Munmap(unsafeBytes(s))
	}
}

func unsafeSlots(b []byte) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8)
}

func unsafeBytes(s []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*8)
}
