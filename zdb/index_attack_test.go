package zdb

// Damaged index entries (docs/zdb-format.md, "Startup and recovery",
// "Reads"): a damaged index entry must never make a key serve another
// key's bytes.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func iaIndexPath(dir string, id uint32) string {
	return filepath.Join(dir, "index", DefaultNamespace, fmt.Sprintf("i%d", id))
}

// TestIndexOffsetOntoAnotherKey moves the data offset of one key's index
// entry onto the data entry of another key holding the same bytes, so that
// length and CRC match: the key must fail, never serve the other key's
// entry, in a closed and in the active index file.
func TestIndexOffsetOntoAnotherKey(t *testing.T) {
	for _, active := range []bool{false, true} {
		t.Run(fmt.Sprintf("active=%v", active), func(t *testing.T) {
			dir := t.TempDir()
			opts := ctOptions(dir, ctLogger(io.Discard))
			e, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			ns := e.Namespace(DefaultNamespace)
			if !active {
				ns.Set([]byte("before"), []byte("x"), 0)
				ns.Jump()
			}
			for _, k := range []string{"twin1", "twin2", "after1", "after2"} {
				v := "same bytes"
				if strings.HasPrefix(k, "after") {
					v = "value of " + k
				}
				if _, err := ns.Set([]byte(k), []byte(v), 0); err != nil {
					t.Fatal(err)
				}
			}
			c1, _ := ns.KeyCursor([]byte("twin1"))
			c2, _ := ns.KeyCursor([]byte("twin2"))
			if !active {
				if err := ns.Jump(); err != nil {
					t.Fatal(err)
				}
				ns.Set([]byte("later"), []byte("y"), 0)
			}
			e.Close()
			file := binary.LittleEndian.Uint32(c2[1:])
			path := iaIndexPath(dir, file)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			off1 := binary.LittleEndian.Uint32(c1[9:])
			off2 := binary.LittleEndian.Uint32(c2[9:])
			dataOff1 := binary.LittleEndian.Uint32(raw[off1+1:])
			binary.LittleEndian.PutUint32(raw[off2+1:], dataOff1)
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			e, err = Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			ns = e.Namespace(DefaultNamespace)
			if v, err := ns.Get([]byte("twin2"), nil); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("GET twin2 = %q, %v; want an error (its entry points at twin1's)", v, err)
			}
			if c, err := ns.Check([]byte("twin2")); err != nil || c != 0 {
				t.Errorf("CHECK twin2 = %d, %v; want 0", c, err)
			}
			for _, k := range []string{"twin1", "after1", "after2"} {
				v, err := ns.Get([]byte(k), nil)
				if err != nil || (k == "twin1") != (string(v) == "same bytes") {
					t.Errorf("GET %s = %q, %v", k, v, err)
				}
			}
		})
	}
}
