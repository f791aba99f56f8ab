package zdb

// Damage in the middle of the files (docs/zdb-format.md, "Damage"):
//
//   - TestDataDamageMidFile: one corrupt byte in the middle of the active
//     data file of a real server written with --sync. Only the damaged key
//     fails (loudly); every later key stays served, and writes made after
//     the restart survive another restart.
//   - TestIndexOffsetOntoAnotherKey (index_attack_test.go): an index entry
//     whose offset moved onto another key's entry.

import (
	"fmt"
	"os"
	"path/filepath"
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
