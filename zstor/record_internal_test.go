package zstor

import (
	"strings"
	"testing"
	"time"

	"qss/zstor/pipeline"
)

// TestRecordSizeHidesKeyLength: the encoded record of an object has the
// same size whatever the length of its key up to keyPadBand bytes (JSON
// escapes counted), and grows by whole bands beyond; the key round-trips.
func TestRecordSizeHidesKeyLength(t *testing.T) {
	rec := func(key string) *Record {
		o := &pipeline.Object{Version: 1, K: 1, N: 2, ChunkSize: 4096, Size: 10,
			Chunks: []pipeline.ChunkMeta{{Final: true, PlainSize: 10, CipherSize: 26, PayloadSize: 26, ShardSize: 110,
				Checksums: make([]pipeline.Checksum, 2)}}}
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		return &Record{Key: key, Stored: at, ModTime: at, Object: o,
			Locations: [][]Location{{{Backend: "b/ns", Seq: 1}, {Backend: "c/ns", Seq: 2}}}}
	}
	size := func(key string) int {
		b, err := encodeRecord(rec(key))
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeRecord(b)
		if err != nil || r.Key != key {
			t.Fatalf("round trip of %q: %q, %v", key, r.Key, err)
		}
		return len(b)
	}
	base := size("a")
	for _, k := range []string{"dir/file.txt", strings.Repeat("x", 256), `quote" and <tag> & é`, strings.Repeat("\x01", 42)} {
		if got := size(k); got != base {
			t.Fatalf("key of %d bytes: record of %d bytes, a 1-byte key's is %d", len(k), got, base)
		}
	}
	if got := size(strings.Repeat("x", 257)); got != base+keyPadBand {
		t.Fatalf("key of 257 bytes: record of %d bytes, want %d", got, base+keyPadBand)
	}
}
