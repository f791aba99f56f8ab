package zstor

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// fileReader returns every byte of the file whatever the alignment of
// offsets, lengths and buffers; it reads aligned ranges the page cache
// does not hold with O_DIRECT, and ranges it holds through the cache; and
// it leaves the descriptor without O_DIRECT for whoever reads next.
func TestFileReader(t *testing.T) {
	want := make([]byte, 12<<20+1000) // chunks and an unaligned tail
	rand.Read(want)
	path := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	evict := func(t *testing.T, f *os.File) {
		// Written back and dropped from the page cache, as a file
		// stored long after it was written.
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		bufs   []int // read sizes, in turn, until EOF
		skew   int   // read into buffers starting this far past an aligned address
		cached bool  // read the whole file first, so the page cache holds it
		direct bool  // some bytes must be read direct (when the filesystem allows)
	}{
		{"chunks, cold", []int{4 << 20}, 0, false, true},
		{"chunks, cached", []int{4 << 20}, 0, true, false},
		{"unaligned buffers", []int{4 << 20}, 1, false, false},
		{"unaligned lengths", []int{1<<20 + 3}, 0, false, true}, // the first read's aligned prefix
		{"small reads", []int{1000}, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			evict(t, f)
			if tc.cached {
				if _, err := io.Copy(io.Discard, f); err != nil {
					t.Fatal(err)
				}
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
			r := newFileReader(f, int64(len(want)))
			var got []byte
			for i := 0; ; i++ {
				n := tc.bufs[i%len(tc.bufs)]
				// Page-aligned, as Go's allocator gives large
				// buffers, then skewed.
				p := make([]byte, n+8192)[tc.skew : tc.skew+n]
				m, err := io.ReadFull(r, p)
				got = append(got, p[:m]...)
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					break
				}
				if err != nil {
					t.Fatalf("read at %d: %v", len(got), err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes that differ from the file's %d", len(got), len(want))
			}
			switch {
			case tc.direct && r.directLen == 0 && r.noDirect == nil:
				t.Errorf("nothing read direct, and no reason recorded")
			case !tc.direct && r.directLen != 0:
				t.Errorf("%d bytes read direct, want none", r.directLen)
			}
			if err := r.finish(); err != nil {
				t.Fatal(err)
			}
			fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
			if err != nil {
				t.Fatal(err)
			}
			if fl&unix.O_DIRECT != 0 {
				t.Error("O_DIRECT still set after finish")
			}
			t.Logf("direct bytes %d of %d (direct I/O off: %v)", r.directLen, len(got), r.noDirect)
		})
	}

	// A store that stops after a chunk read direct (an error, a cancel)
	// leaves the descriptor as it found it too.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evict(t, f)
	r := newFileReader(f, int64(len(want)))
	if _, err := io.ReadFull(r, make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	if err := r.finish(); err != nil {
		t.Fatal(err)
	}
	if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_DIRECT != 0 {
		t.Errorf("after finish mid-file: flags %#x, %v; want O_DIRECT clear", fl, err)
	}
}
