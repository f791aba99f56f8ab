package zdb

// Damage in the middle of the files (docs/zdb-format.md, "Startup and
// recovery", "Reads", "Damage that cannot be detected"):
//
//   - TestDataDamageMidFile: one corrupt byte in the middle of the active
//     data file of a real server written with --sync. Only the damaged key
//     fails (loudly); every later key stays served, and writes made after
//     the restart survive another restart.
//   - TestIndexBitFlips (index_attack_test.go): bits flipped in index
//     entries of closed and active files.
//   - TestTombstoneEntries: a user-mode DEL appends a flagged index entry
//     for its tombstone; a loader that replays the files as 0-db does
//     reaches the same state; seq mode appends none.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// rtDataEntries lists the entries of a data file: offset and key.
func rtDataEntries(t testing.TB, path string) (offs []int64, keys []string, raw []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(DataHeaderSize); off < int64(len(raw)); {
		h, err := ParseDataEntryHeader(raw[off:])
		if err != nil {
			t.Fatalf("%s at %d: %v", path, off, err)
		}
		offs = append(offs, off)
		keys = append(keys, string(raw[off+DataEntryFixed:off+DataEntryFixed+int64(h.KeyLen)]))
		off += h.Size()
	}
	return offs, keys, raw
}

// TestDataDamageMidFile writes 100 keys with --sync to a real server, stops
// it with SIGKILL, changes one byte of the data entry of key 10 in the
// active data file (in each of its fields in turn), and restarts. Before
// resynchronisation, recovery cut the file at the damaged entry and the 90
// keys after it vanished.
func TestDataDamageMidFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	const n, victim = 100, 10
	key := func(i int) string { return fmt.Sprintf("key-%03d", i) }
	base := t.TempDir()
	{
		s := zdbtest.StartIn(t, base, "--sync")
		c, err := ctDial(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if v := c.must(t, "SET", key(i), ctValue(key(i), 1, 100+7*i)); string(v.Str) != key(i) {
				t.Fatalf("SET %s: %s", key(i), v)
			}
		}
		c.Close()
		s.Kill()
	}
	dataPath := filepath.Join(base, "data", DefaultNamespace, "d0")
	offs, keys, _ := rtDataEntries(t, dataPath)
	if len(offs) != n || keys[victim] != key(victim) {
		t.Fatalf("unexpected data file: %d entries", len(offs))
	}
	at := offs[victim]
	keyLen := int64(len(key(victim)))
	for _, tc := range []struct {
		name   string
		off    int64 // byte to change, relative to the entry
		xor    byte
		served bool // the damage is in a field no reader relies on: the key is served
		next   bool // also damage the header of the entry after it (key 11)
	}{
		{"payload", DataEntryFixed + keyLen + 50, 0x5a, false, false},
		{"keylen", 0, 0x04, false, false},
		{"keylen-zero", 0, byte(keyLen), false, false},
		{"length", 1, 0x40, false, false},
		{"length-high", 4, 0x80, false, false},
		{"previous", 5, 0x01, true, false},
		{"crc", 9, 0x10, false, false},
		{"flags-tombstone", 13, FlagDeleted, false, false},
		{"timestamp", 14, 0x01, true, false},
		{"key", DataEntryFixed + 2, 0x01, false, false},
		// Two damaged entries in a row: the entry after the first does not
		// name it; the active index says where key 12's entry is.
		{"two-entries", 1, 0x40, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ctCopyTree(t, base, dir)
			path := filepath.Join(dir, "data", DefaultNamespace, "d0")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			raw[at+tc.off] ^= tc.xor
			if tc.next {
				raw[offs[victim+1]+1] ^= 0x40
			}
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			s := zdbtest.StartIn(t, dir, "--sync")
			c, err := ctDial(s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			check := func(stage string, want map[string]int) {
				t.Helper()
				lost := 0
				for i := 0; i < n+2; i++ {
					k := key(i)
					ver, live := want[k]
					v := c.must(t, "GET", k)
					switch {
					case ver < 0: // damaged
						if v.Kind != resp.KindError {
							t.Errorf("%s: GET %s (damaged) = %.60s, want an error", stage, k, v.String())
						}
						if e := c.must(t, "EXISTS", k); e.Kind != resp.KindError && e.Int != 1 {
							t.Errorf("%s: EXISTS %s (damaged) = %s", stage, k, e)
						}
					case !live:
						if v.Kind != resp.KindBulk || !v.Nil {
							t.Errorf("%s: GET %s = %.60s, want nil", stage, k, v.String())
						}
					default:
						name, got, ok := ctParseValue(v.Str)
						if v.Kind != resp.KindBulk || v.Nil || !ok || name != k || got != ver {
							lost++
							if lost <= 3 {
								t.Errorf("%s: GET %s = %.60s, want v%d", stage, k, v.String(), ver)
							}
						}
					}
				}
				if lost > 3 {
					t.Errorf("%s: %d keys lost in all", stage, lost)
				}
				items := ctScanAll(t, c, "SCAN")
				if len(items) != len(want) {
					t.Errorf("%s: SCAN lists %d keys, want %d", stage, len(items), len(want))
				}
				if v := c.must(t, "DBSIZE"); v.Int != int64(len(want)) {
					t.Errorf("%s: DBSIZE %d, want %d", stage, v.Int, len(want))
				}
			}
			want := map[string]int{}
			for i := 0; i < n; i++ {
				want[key(i)] = 1
			}
			if !tc.served {
				want[key(victim)] = -1
			}
			if tc.next {
				want[key(victim+1)] = -1
			}
			check("after restart", want)
			if !tc.served && !strings.Contains(s.Log(), "damaged") {
				t.Errorf("nothing logged about the damaged entry:\n%s", s.Log())
			}
			if t.Failed() {
				t.Fatalf("log:\n%s", s.Log())
			}
			// Writes keep working: a new key, an overwrite of the damaged
			// key, a delete; they survive a kill and a restart.
			for _, cmd := range [][]any{
				{"SET", key(n), ctValue(key(n), 2, 300)},
				{"SET", key(victim), ctValue(key(victim), 2, 200)},
				{"SET", key(n - 1), ctValue(key(n-1), 2, 50)},
			} {
				if v := c.must(t, cmd...); v.Kind != resp.KindBulk {
					t.Fatalf("%s %s: %s", cmd[0], cmd[1], v)
				}
			}
			if v := c.must(t, "DEL", key(20)); v.Kind != resp.KindSimple {
				t.Fatalf("DEL: %s", v)
			}
			want[key(n)], want[key(victim)], want[key(n-1)] = 2, 2, 2
			delete(want, key(20))
			check("after writes", want)
			c.Close()
			s.RestartAfterKill()
			c, err = ctDial(s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			check("after a second restart", want)
			if t.Failed() {
				t.Fatalf("log:\n%s", s.Log())
			}
		})
	}
}

// rtFlip changes one byte of a file.
func rtFlip(t testing.TB, path string, off int64, xor byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[off] ^= xor
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rtRefLoad replays the index files of a namespace the way 0-db's loader
// does, written apart from the engine: i0, i1, ... in order, each entry
// sets its key to its location, a flagged one then removes the key. It
// returns the live keys with their payloads, read from the data files.
func rtRefLoad(t *testing.T, dir, ns string) map[string]string {
	t.Helper()
	type loc struct {
		file      int
		off, size uint32
		keyLen    int
	}
	live := map[string]loc{}
	for id := 0; ; id++ {
		raw, err := os.ReadFile(filepath.Join(dir, "index", ns, fmt.Sprintf("i%d", id)))
		if os.IsNotExist(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seq := raw[28] == 1
		for off := 29; off < len(raw); {
			kl := int(raw[off])
			key := string(raw[off+34 : off+34+kl])
			file := id
			if seq {
				file = int(binary.LittleEndian.Uint32(raw[off+14:]))
			}
			live[key] = loc{file, binary.LittleEndian.Uint32(raw[off+1:]), binary.LittleEndian.Uint32(raw[off+5:]), kl}
			if raw[off+13]&1 != 0 && !seq {
				delete(live, key)
			}
			if raw[off+13]&1 != 0 && seq {
				// seq: a flagged slot is not live
				if l := live[key]; l.file == file && l.off == binary.LittleEndian.Uint32(raw[off+1:]) {
					delete(live, key)
				}
			}
			off += 34 + kl
		}
	}
	out := map[string]string{}
	for k, l := range live {
		raw, err := os.ReadFile(filepath.Join(dir, "data", ns, fmt.Sprintf("d%d", l.file)))
		if err != nil {
			t.Fatal(err)
		}
		at := int(l.off) + 18 + l.keyLen
		out[k] = string(raw[at : at+int(l.size)])
	}
	return out
}

// TestTombstoneEntries: in user mode every DEL appends an index entry,
// flagged deleted, pointing at its data tombstone, whose parent is the
// version deleted; the files replayed as 0-db replays them give the state
// the engine serves, and SCAN, DBSIZE, HISTORY are unchanged. In seq mode
// a DEL appends no index entry (it would take an id).
func TestTombstoneEntries(t *testing.T) {
	dir := t.TempDir()
	opts := ctOptions(dir, ctLogger(os.Stderr))
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns := e.Namespace(DefaultNamespace)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	set := func(k, v string) {
		t.Helper()
		_, err := ns.Set([]byte(k), []byte(v), 0)
		must(err)
	}
	set("k1", "one")
	set("k2", "two")
	set("k3", "three")
	cur, _ := ns.KeyCursor([]byte("k1"))
	must(ns.Del([]byte("k1"), 0))
	set("k1", "one again")
	must(ns.Jump())
	must(ns.Del([]byte("k2"), 0)) // its entry is in the closed i0
	set("k4", "four")
	set("k3", "three v2")
	must(ns.Del([]byte("k4"), 0))
	want := map[string]string{"k1": "one again", "k3": "three v2"}

	check := func(stage string) {
		t.Helper()
		if ns.Len() != len(want) {
			t.Errorf("%s: DBSIZE %d, want %d", stage, ns.Len(), len(want))
		}
		items, _, err := ns.Scan(nil, false, 100)
		if err != nil || len(items) != len(want) {
			t.Errorf("%s: SCAN %d items, %v; want %d", stage, len(items), err, len(want))
		}
		for k, v := range want {
			if got, err := ns.Get([]byte(k), nil); err != nil || string(got) != v {
				t.Errorf("%s: GET %s = %q, %v", stage, k, got, err)
			}
		}
		for _, k := range []string{"k2", "k4"} {
			if _, err := ns.Get([]byte(k), nil); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: GET %s: %v, want missing", stage, k, err)
			}
		}
		// HISTORY of a key set again after a DEL starts over, as in 0-db.
		if h, err := ns.History([]byte("k1"), nil); err != nil || h.Parent != nil || string(h.Payload) != "one again" {
			t.Errorf("%s: HISTORY k1 = %+v, %v", stage, h, err)
		}
		if h, err := ns.History([]byte("k3"), nil); err != nil || h.Parent == nil {
			t.Errorf("%s: HISTORY k3 = %+v, %v; want a parent", stage, h, err)
		} else if h2, err := ns.History([]byte("k3"), h.Parent); err != nil || string(h2.Payload) != "three" {
			t.Errorf("%s: HISTORY k3 parent = %+v, %v", stage, h2, err)
		}
	}
	check("before a reopen")
	must(e.Close())

	// The tombstone entry of the first DEL of k1: right after k3's entry
	// in i0, flagged, length 0, CRC 0, parent = k1's first entry, pointing
	// at a data tombstone of k1.
	raw, err := os.ReadFile(iaIndexPath(dir, 0))
	must(err)
	var tomb IndexEntry
	for off := IndexHeaderSize; off < len(raw); {
		ie, n, err := ParseIndexEntry(raw[off:])
		must(err)
		if string(ie.Key) == "k1" && ie.ParentOffset == binary.LittleEndian.Uint32(cur[9:]) {
			tomb = ie
		}
		off += n
	}
	if tomb.Key == nil || tomb.Flags != FlagDeleted || tomb.Length != 0 || tomb.CRC != 0 || tomb.ParentID != 0 {
		t.Fatalf("no tombstone entry for the first DEL of k1 in i0: %+v", tomb)
	}
	d0, err := os.ReadFile(filepath.Join(dir, "data", DefaultNamespace, "d0"))
	must(err)
	h, err := ParseDataEntryHeader(d0[tomb.DataOffset:])
	if err != nil || h.Flags != FlagDeleted || string(d0[tomb.DataOffset+DataEntryFixed:tomb.DataOffset+DataEntryFixed+2]) != "k1" {
		t.Fatalf("the tombstone entry does not point at k1's data tombstone: %+v, %v", h, err)
	}
	// Every DEL made one entry: 6 SETs and 3 DELs in all.
	entries := 0
	for id := uint32(0); id <= 1; id++ {
		raw, err := os.ReadFile(iaIndexPath(dir, id))
		must(err)
		for off := IndexHeaderSize; off < len(raw); entries++ {
			_, n, err := ParseIndexEntry(raw[off:])
			must(err)
			off += n
		}
	}
	if entries != 9 {
		t.Errorf("%d index entries, want 9 (6 SETs, 3 DELs)", entries)
	}
	// 0-db's replay reaches the state the engine serves.
	if ref := rtRefLoad(t, dir, DefaultNamespace); fmt.Sprint(ref) != fmt.Sprint(want) {
		t.Errorf("replayed as 0-db does: %v; want %v", ref, want)
	}
	e, err = Open(opts)
	must(err)
	defer e.Close()
	ns = e.Namespace(DefaultNamespace)
	check("after a reopen")

	// Seq mode: no entry for a DEL; the next id is not consumed.
	must(e.CreateNamespace("s"))
	s := e.Namespace("s")
	must(s.SetProperty("mode", "seq"))
	k0, err := s.Set(nil, []byte("a"), 0)
	must(err)
	must(s.Del(k0, 0))
	k1, err := s.Set(nil, []byte("b"), 0)
	must(err)
	if id := binary.LittleEndian.Uint64(k1); id != 1 {
		t.Errorf("seq: id after a DEL = %d, want 1", id)
	}
	if s.NextID() != 2 {
		t.Errorf("seq: next id %d, want 2", s.NextID())
	}
	must(e.Close())
	if ref := rtRefLoad(t, dir, "s"); len(ref) != 1 || ref[string(k1)] != "b" {
		t.Errorf("seq replayed as 0-db does: %q", ref)
	}
}

// TestIndexTailSaved damages two adjacent entries of the active index file
// so that the walk cannot find where the second one ends (the first one's
// key length and data offset, the second one's key length): the entries
// after them cannot be read, and before the file is cut they are saved
// beside it, so that nothing that agrees with the data file is destroyed.
func TestIndexTailSaved(t *testing.T) {
	dir := t.TempDir()
	var logBuf bytes.Buffer
	opts := ctOptions(dir, ctLogger(&logBuf))
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns := e.Namespace(DefaultNamespace)
	var curs [][]byte
	for i := 0; i < 8; i++ {
		k := fmt.Sprintf("key%d", i)
		if _, err := ns.Set([]byte(k), []byte("value of "+k), 0); err != nil {
			t.Fatal(err)
		}
		c, _ := ns.KeyCursor([]byte(k))
		curs = append(curs, c)
	}
	e.Close()
	path := iaIndexPath(dir, 0)
	at := func(i int) int64 { return int64(binary.LittleEndian.Uint32(curs[i][9:])) }
	rtFlip(t, path, at(3), 0x80)
	rtFlip(t, path, at(3)+1, 0x01)
	rtFlip(t, path, at(4), 0x80)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns = e.Namespace(DefaultNamespace)
	for i := 0; i < 3; i++ {
		k := fmt.Sprintf("key%d", i)
		if v, err := ns.Get([]byte(k), nil); err != nil || string(v) != "value of "+k {
			t.Errorf("GET %s = %q, %v", k, v, err)
		}
	}
	for i := 3; i < 8; i++ {
		k := fmt.Sprintf("key%d", i)
		if v, err := ns.Get([]byte(k), nil); err == nil {
			t.Errorf("GET %s = %q after its entry was lost", k, v)
		}
	}
	saved, _ := filepath.Glob(path + ".dropped-*")
	if len(saved) != 1 {
		t.Fatalf("saved tails: %v\nlog:\n%s", saved, logBuf.String())
	}
	off, err := strconv.ParseInt(strings.TrimPrefix(saved[0], path+".dropped-"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := os.ReadFile(saved[0])
	if err != nil || !bytes.Equal(tail, before[off:]) || off > at(5) {
		t.Errorf("saved %d bytes from %d (%v); the file had %d, entries lost from %d", len(tail), off, err, len(before), at(3))
	}
	if !strings.Contains(logBuf.String(), "saved_in") {
		t.Errorf("nothing logged about the saved tail:\n%s", logBuf.String())
	}
	if _, err := ns.Set([]byte("after"), []byte("written after"), 0); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if v, err := e.Namespace(DefaultNamespace).Get([]byte("after"), nil); err != nil || string(v) != "written after" {
		t.Errorf("GET after = %q, %v after a reopen", v, err)
	}
}
