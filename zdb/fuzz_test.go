package zdb

// Fuzz targets for the on-disk format and for loading arbitrary files.
// Each runs as a normal test over its seeds (f.Add and testdata/fuzz/).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fzCRCRef is a bit-by-bit CRC-32C (reflected polynomial 0x82F63B78) with
// initial value 0 and no final XOR: 0-db's checksum, written independently
// of the table-driven CRC.
func fzCRCRef(p []byte) uint32 {
	var crc uint32
	for _, b := range p {
		crc ^= uint32(b)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82f63b78
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func fzIndexEntry(key string, dataOff, length uint32, flags uint8) []byte {
	e := IndexEntry{DataOffset: dataOff, Length: length, Previous: 29, Flags: flags, DataID: 0,
		Timestamp: 1700000000, CRC: 0xdf03cd79, ParentID: 1, ParentOffset: 63, Key: []byte(key)}
	return e.Append(nil)
}

// FuzzIndexEntry: ParseIndexEntry never panics, reports a cut entry only
// when the bytes really end inside it, and a whole entry encodes back to
// exactly the bytes it was parsed from.
func FuzzIndexEntry(f *testing.F) {
	f.Add(fzIndexEntry("k1", 28, 2, 0))
	f.Add(fzIndexEntry(string(bytes.Repeat([]byte{0xff}, 255)), 1<<31, MaxPayload, FlagDeleted))
	f.Add(fzIndexEntry("\x00\x00\x00\x00\x00\x00\x00\x00", 0, 0, 0))
	f.Add(fzIndexEntry("k", 0, MaxPayload+1, 0))
	f.Add(fzIndexEntry("k1", 28, 2, 0)[:20])
	f.Add(append(fzIndexEntry("k1", 28, 2, 0), fzIndexEntry("other", 48, 5, 1)...))
	f.Add(make([]byte, IndexEntryFixed))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, n, err := ParseIndexEntry(b)
		whole := len(b) >= IndexEntryFixed && len(b) >= IndexEntryFixed+int(b[0])
		if errors.Is(err, errShort) {
			if whole {
				t.Fatalf("%d bytes, key %d: reported cut short", len(b), b[0])
			}
			if n != 0 {
				t.Fatalf("cut short with n = %d", n)
			}
			return
		}
		if !whole {
			t.Fatalf("%d bytes: parsed (err %v) although the entry is cut", len(b), err)
		}
		if n != IndexEntryFixed+int(b[0]) {
			t.Fatalf("n = %d, want %d", n, IndexEntryFixed+int(b[0]))
		}
		if err != nil {
			if b[0] != 0 && e.Length <= MaxPayload {
				t.Fatalf("valid-looking entry rejected: %v", err)
			}
			return
		}
		if b[0] == 0 || e.Length > MaxPayload {
			t.Fatalf("entry with key %d, length %d accepted", b[0], e.Length)
		}
		if e.Size() != n {
			t.Fatalf("Size %d, parsed %d bytes", e.Size(), n)
		}
		if cap(e.Key) != len(e.Key) {
			t.Fatalf("key has spare capacity %d: appending to it would overwrite the buffer", cap(e.Key)-len(e.Key))
		}
		if re := e.Append(nil); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded entry differs:\n got %x\nwant %x", re, b[:n])
		}
		// Encoding after existing bytes leaves them alone.
		pre := []byte("prefix")
		if re := e.Append(pre); !bytes.Equal(re[:6], []byte("prefix")) || !bytes.Equal(re[6:], b[:n]) {
			t.Fatalf("Append after a prefix: %x", re)
		}
	})
}

func fzDataEntry(key, payload string, flags uint8) []byte {
	h := DataEntryHeader{Previous: 28, CRC: CRC([]byte(payload)), Flags: flags, Timestamp: 1700000000}
	return AppendDataEntry(nil, h, []byte(key), []byte(payload))
}

// FuzzDataEntry: ParseDataEntryHeader never panics, rejects lengths over
// the limit, and a whole entry encodes back to its bytes; CRC agrees with a
// bit-by-bit reference.
func FuzzDataEntry(f *testing.F) {
	f.Add(fzDataEntry("k1", "v1", 0))
	f.Add(fzDataEntry("hello", "hello", 0))
	f.Add(fzDataEntry("k1", "", FlagDeleted))
	f.Add(fzDataEntry("\x01\x00\x00\x00\x00\x00\x00\x00", "seq payload", 0))
	f.Add(fzDataEntry("k", "x", 0)[:10])
	f.Add([]byte{})
	big := make([]byte, DataEntryFixed)
	binary.LittleEndian.PutUint32(big[1:], MaxPayload+1)
	f.Add(big)
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := CRC(b), fzCRCRef(b); got != want {
			t.Fatalf("CRC %08x, reference %08x", got, want)
		}
		h, err := ParseDataEntryHeader(b)
		if len(b) < DataEntryFixed {
			if !errors.Is(err, errShort) {
				t.Fatalf("%d bytes: err %v, want cut short", len(b), err)
			}
			return
		}
		if h.KeyLen != b[0] || h.Length != binary.LittleEndian.Uint32(b[1:]) {
			t.Fatalf("header %+v does not match its bytes", h)
		}
		if h.Length > MaxPayload {
			if err == nil {
				t.Fatalf("length %d accepted", h.Length)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid header rejected: %v", err)
		}
		size := h.Size()
		if size != DataEntryFixed+int64(h.KeyLen)+int64(h.Length) {
			t.Fatalf("Size %d", size)
		}
		if int64(len(b)) < size {
			return
		}
		key := b[DataEntryFixed : DataEntryFixed+int(h.KeyLen)]
		payload := b[DataEntryFixed+int(h.KeyLen) : size]
		if re := AppendDataEntry(nil, h, key, payload); !bytes.Equal(re, b[:size]) {
			t.Fatalf("re-encoded entry differs:\n got %x\nwant %x", re, b[:size])
		}
	})
}

// TestCRCVectors pins the checksum to the values 0-db computes.
func TestCRCVectors(t *testing.T) {
	for s, want := range map[string]uint32{"hello": 0xdf03cd79, "v1": 0x141e4f07, "": 0} {
		if got := CRC([]byte(s)); got != want {
			t.Errorf("CRC(%q) = %08x, want %08x", s, got, want)
		}
		if got := fzCRCRef([]byte(s)); got != want {
			t.Errorf("reference CRC(%q) = %08x, want %08x", s, got, want)
		}
	}
}

// fzFiles builds the entries (without headers) of an index file and its
// data file: user mode sets k1, k2, overwrites k1 (old entry flagged) and
// deletes k2 (tombstone, flag); seq mode writes ids first..first+2 and
// deletes the second.
func fzFiles(mode Mode, fileID uint32, first uint64) (idx, dat []byte) {
	dataOff := uint32(DataHeaderSize)
	idxOff := uint32(IndexHeaderSize)
	var prevIdx uint32
	put := func(key, payload []byte, flags uint8) uint32 {
		h := DataEntryHeader{CRC: CRC(payload), Timestamp: 1700000000}
		at := dataOff
		dat = AppendDataEntry(dat, h, key, payload)
		dataOff += uint32(DataEntryFixed + len(key) + len(payload))
		e := IndexEntry{DataOffset: at, Length: uint32(len(payload)), Previous: prevIdx, Flags: flags,
			DataID: fileID, Timestamp: 1700000000, CRC: h.CRC, Key: key}
		idx = e.Append(idx)
		prevIdx = idxOff
		idxOff += uint32(e.Size())
		return at
	}
	tomb := func(key []byte) {
		dat = AppendDataEntry(dat, DataEntryHeader{Flags: FlagDeleted, Timestamp: 1700000001}, key, nil)
		dataOff += uint32(DataEntryFixed + len(key))
	}
	if mode == ModeSeq {
		put(seqKey(first), []byte("first"), 0)
		put(seqKey(first+1), []byte("second"), FlagDeleted)
		tomb(seqKey(first + 1))
		put(seqKey(first+2), []byte("third value"), 0)
		return idx, dat
	}
	put([]byte(fmt.Sprintf("k1-%d", fileID)), []byte("v1"), FlagDeleted)
	put([]byte(fmt.Sprintf("k2-%d", fileID)), []byte("value two"), FlagDeleted)
	put([]byte(fmt.Sprintf("k1-%d", fileID)), []byte("v1 again, longer"), 0)
	tomb([]byte(fmt.Sprintf("k2-%d", fileID)))
	return idx, dat
}

// fzEntryOffsets are where an entry of the files fzEngineFiles returns
// starts, in the index and in the data bytes (without their headers).
type fzEntryOffsets struct{ idx, dat int }

// fzEngineFiles writes a namespace with the engine — sets, overwrites and
// deletes — and returns its index and data entries without the headers,
// with where each index entry and the data entry it points at start.
func fzEngineFiles(f *testing.F, mode Mode) (idx, dat []byte, offs []fzEntryOffsets) {
	dir := f.TempDir()
	e, err := Open(Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: MinDataSize, Logger: ctLogger(io.Discard)})
	if err != nil {
		f.Fatal(err)
	}
	ns := e.Namespace(DefaultNamespace)
	if mode == ModeSeq {
		if err := ns.SetProperty("mode", "seq"); err != nil {
			f.Fatal(err)
		}
		for i := 0; i < 6; i++ {
			ns.Set(nil, []byte(fmt.Sprintf("seq value %d", i)), 0)
		}
		ns.Set(seqKey(1), []byte("seq value 1 again"), 0)
		ns.Del(seqKey(3), 0)
		ns.Set(nil, []byte("seq value 6"), 0)
	} else {
		for i := 0; i < 6; i++ {
			ns.Set([]byte(fmt.Sprintf("key%d", i)), []byte(fmt.Sprintf("value %d", i)), 0)
		}
		ns.Set([]byte("key1"), []byte("value 1 again"), 0)
		ns.Del([]byte("key3"), 0)
		ns.Set([]byte("key6"), []byte("value 6"), 0)
	}
	if err := e.Close(); err != nil {
		f.Fatal(err)
	}
	ri, err := os.ReadFile(filepath.Join(dir, "index", DefaultNamespace, "i0"))
	if err != nil {
		f.Fatal(err)
	}
	rd, err := os.ReadFile(filepath.Join(dir, "data", DefaultNamespace, "d0"))
	if err != nil {
		f.Fatal(err)
	}
	for off := IndexHeaderSize; off < len(ri); {
		ie, n, err := ParseIndexEntry(ri[off:])
		if err != nil {
			f.Fatal(err)
		}
		offs = append(offs, fzEntryOffsets{idx: off - IndexHeaderSize, dat: int(ie.DataOffset) - DataHeaderSize})
		off += n
	}
	return ri[IndexHeaderSize:], rd[DataHeaderSize:], offs
}

func fzIndexHeader(mode Mode, id uint32) []byte {
	return IndexHeader{Version: IndexVersion, Created: 1700000000, Opened: 1700000000, FileID: id, Mode: mode}.Marshal()
}

func fzDataHeader(id uint32) []byte {
	return DataHeader{Version: DataVersion, Created: 1700000000, Opened: 1700000000, FileID: id}.Marshal()
}

// fzDamaged is the state of a key SCAN lists whose reads fail: recovery
// found its entry damaged, or the read found its data entry disagreeing.
const fzDamaged = "\x00damaged"

// fzState reads every key SCAN serves with its value, and checks that each
// is readable (or fails loudly: ErrInternal, and CHECK does not say 1),
// that CHECK, LENGTH, RSCAN and Len agree.
func fzState(t *testing.T, ns *Namespace) map[string]string {
	t.Helper()
	state := map[string]string{}
	var order []string
	var cur []byte
	for {
		items, next, err := ns.Scan(cur, false, 3)
		if errors.Is(err, ErrNoMoreData) {
			break
		}
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		for _, it := range items {
			k := string(it.Key)
			if _, dup := state[k]; dup {
				t.Fatalf("SCAN returned %x twice", k)
			}
			v, err := ns.Get(it.Key, nil)
			if errors.Is(err, ErrInternal) {
				if c, err := ns.Check(it.Key); c == 1 || err != nil {
					t.Fatalf("GET %x fails, but CHECK = %d, %v", k, c, err)
				}
				state[k] = fzDamaged
				order = append(order, k)
				continue
			}
			if err != nil {
				t.Fatalf("SCAN returned %x but GET fails: %v", k, err)
			}
			if int(it.Length) != len(v) {
				t.Fatalf("SCAN length %d for %x, GET %d bytes", it.Length, k, len(v))
			}
			if c, err := ns.Check(it.Key); c != 1 || err != nil {
				t.Fatalf("CHECK %x = %d, %v", k, c, err)
			}
			state[k] = string(v)
			order = append(order, k)
		}
		if len(order) > 100000 {
			t.Fatal("SCAN does not end")
		}
		cur = next
	}
	if ns.Len() != len(state) {
		t.Fatalf("Len %d, SCAN served %d keys", ns.Len(), len(state))
	}
	var rorder []string
	cur = nil
	for {
		items, next, err := ns.Scan(cur, true, 3)
		if errors.Is(err, ErrNoMoreData) {
			break
		}
		if err != nil {
			t.Fatalf("RSCAN: %v", err)
		}
		for _, it := range items {
			rorder = append(rorder, string(it.Key))
		}
		if len(rorder) > len(order)+10 {
			break
		}
		cur = next
	}
	if len(rorder) != len(order) {
		t.Fatalf("RSCAN served %d keys, SCAN %d", len(rorder), len(order))
	}
	for i := range order {
		if order[i] != rorder[len(order)-1-i] {
			t.Fatalf("RSCAN is not SCAN reversed at %d", i)
		}
	}
	return state
}

// FuzzOpenFiles writes arbitrary bytes as the index and/or data file of the
// default namespace and opens it. Open must not panic; it may refuse, but
// if it opens, every key it lists must be readable or fail loudly (a
// damaged entry), it must accept a write, and a close and reopen must show
// the same keys plus that write.
//
// flags: bit 0 prepends a valid index header, bit 1 makes that header seq
// mode, bit 2 prepends a valid data header, bit 3 puts the fuzzed files at
// id 1 after a valid i0/d0, bit 4 leaves the index file out, bit 5 the data
// file.
func FuzzOpenFiles(f *testing.F) {
	for _, mode := range []Mode{ModeUser, ModeSeq} {
		m := uint8(mode) << 1
		idx, dat := fzFiles(mode, 0, 0)
		f.Add(m|1|4, idx, dat)
		f.Add(m|1|4, idx[:len(idx)-3], dat)
		f.Add(m|1|4, idx, dat[:len(dat)-5])
		f.Add(m|1|4, idx, append(dat, 0x07, 0, 0))
		flipped := bytes.Clone(dat)
		flipped[len(flipped)/2] ^= 0x20
		f.Add(m|1|4, idx, flipped)
		idx1, dat1 := fzFiles(mode, 1, 3)
		f.Add(m|1|4|8, idx1, dat1)
		f.Add(m|1|4|8, idx1[:40], dat1[:30])
		f.Add(m|1|4|32, idx, []byte{})
		f.Add(m, append(fzIndexHeader(mode, 0), idx...), append(fzDataHeader(0), dat...))
	}
	f.Add(uint8(0), []byte("IDX"), []byte("DAT0"))
	f.Add(uint8(1|4|16), []byte{}, []byte{1, 2, 3})
	f.Add(uint8(5), []byte{0}, []byte{})
	// Files written by the engine (user mode: a DEL's tombstone index
	// entry), and damage in their middle: resynchronisation over a data
	// entry, the key length repair, an index length over the limit, an
	// offset moved onto another key's entry.
	for _, mode := range []Mode{ModeUser, ModeSeq} {
		m := uint8(mode) << 1
		idx, dat, offs := fzEngineFiles(f, mode)
		f.Add(m|1|4, idx, dat)
		mid := offs[len(offs)/2]
		for _, at := range []int{0, 1, 4, 9, 13} {
			d := bytes.Clone(dat)
			d[mid.dat+at] ^= 0x41
			f.Add(m|1|4, idx, d)
		}
		d := bytes.Clone(dat)
		d[mid.dat+1] ^= 0x40
		d[offs[len(offs)/2+1].dat+1] ^= 0x40
		f.Add(m|1|4, idx, d)
		for _, at := range []int{0, 1, 8, 9, 13, IndexEntryFixed} {
			i := bytes.Clone(idx)
			i[mid.idx+at] ^= 0x81
			f.Add(m|1|4, i, dat)
		}
		i := bytes.Clone(idx)
		copy(i[mid.idx+1:mid.idx+5], i[offs[0].idx+1:offs[0].idx+5])
		f.Add(m|1|4, i, dat)
		last := offs[len(offs)-1]
		i = bytes.Clone(idx)
		i[last.idx] ^= 0x03
		f.Add(m|1|4, i, dat)
	}
	f.Fuzz(func(t *testing.T, flags uint8, idx, dat []byte) {
		if len(idx)+len(dat) > 1<<20 {
			return
		}
		mode := Mode(flags >> 1 & 1)
		id := uint32(0)
		if flags&8 != 0 {
			id = 1
		}
		if flags&1 != 0 {
			idx = append(fzIndexHeader(mode, id), idx...)
		}
		if flags&4 != 0 {
			dat = append(fzDataHeader(id), dat...)
		}
		dir := t.TempDir()
		idir := filepath.Join(dir, "index", DefaultNamespace)
		ddir := filepath.Join(dir, "data", DefaultNamespace)
		for _, d := range []string{idir, ddir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		write := func(path string, b []byte) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if id == 1 {
			i0, d0 := fzFiles(mode, 0, 0)
			write(filepath.Join(idir, "i0"), append(fzIndexHeader(mode, 0), i0...))
			write(filepath.Join(ddir, "d0"), append(fzDataHeader(0), d0...))
		}
		if flags&16 == 0 {
			write(filepath.Join(idir, fmt.Sprintf("i%d", id)), idx)
		}
		if flags&32 == 0 {
			write(filepath.Join(ddir, fmt.Sprintf("d%d", id)), dat)
		}
		opts := Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
			DataSize: MinDataSize, Logger: ctLogger(io.Discard)}
		e, err := Open(opts)
		if err != nil {
			return // refusing damaged files is allowed
		}
		ns := e.Namespace(DefaultNamespace)
		before := fzState(t, ns)
		var key []byte
		if ns.Mode() == ModeSeq {
			key, err = ns.Set(nil, []byte("written after open"), 0)
		} else {
			key, err = ns.Set([]byte("fuzz-new-key"), []byte("written after open"), 0)
		}
		if err != nil {
			e.Close()
			t.Fatalf("SET after open: %v", err)
		}
		if v, err := ns.Get(key, nil); err != nil || string(v) != "written after open" {
			e.Close()
			t.Fatalf("GET %x right after SET: %q, %v", key, v, err)
		}
		before[string(key)] = "written after open"
		e.Close()

		e, err = Open(opts)
		if err != nil {
			t.Fatalf("second Open fails after a clean close: %v", err)
		}
		defer e.Close()
		after := fzState(t, e.Namespace(DefaultNamespace))
		for k, v := range before {
			if got, ok := after[k]; !ok || got != v {
				t.Errorf("after reopen %x = %q (present %v), want %q", k, got, ok, v)
			}
		}
		for k := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("after reopen %x appeared", k)
			}
		}
	})
}
