package zstor

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// fileWriter writes every byte where it belongs whatever the alignment of
// offsets, lengths and buffers, and takes the O_DIRECT path for the aligned
// ones (on a filesystem that refuses it, the buffered path for all, with
// the reason recorded).
func TestFileWriter(t *testing.T) {
	buf := make([]byte, 12<<20) // large: page-aligned by Go's allocator
	rand.Read(buf)
	for _, tc := range []struct {
		name   string
		pieces []int // lengths written one after another, from buf
		skew   int   // start each piece this far into its buffer (unaligned addresses)
		direct bool  // some bytes must go direct (when the filesystem allows)
	}{
		{"aligned chunks and a tail", []int{4 << 20, 4 << 20, 1000}, 0, true},
		{"unaligned chunk size", []int{1<<20 + 3, 1<<20 + 3, 5}, 0, true}, // the first piece's aligned prefix
		{"unaligned buffers", []int{1 << 20, 1 << 20}, 1, false},
		{"small pieces", []int{10, 4096, 4096, 7}, 0, false},
		{"empty", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := newFileWriter(f)
			var want []byte
			pos := 0
			for _, n := range tc.pieces {
				// A fresh buffer per piece, as Decode hands over.
				p := make([]byte, n+tc.skew)[tc.skew:]
				copy(p, buf[pos:pos+n])
				pos += n
				if m, err := w.Write(p); err != nil || m != n {
					t.Fatalf("Write(%d bytes) = %d, %v", n, m, err)
				}
				want = append(want, p...)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("file differs: %d bytes, want %d", len(got), len(want))
			}
			switch {
			case tc.direct && w.directLen == 0 && w.noDirect == nil:
				t.Errorf("nothing went direct, and no reason recorded")
			case !tc.direct && w.directLen != 0:
				t.Errorf("%d bytes went direct, want none", w.directLen)
			}
			t.Logf("direct bytes %d of %d (direct I/O off: %v)", w.directLen, len(want), w.noDirect)
		})
	}
}
