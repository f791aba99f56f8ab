package zdbfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// TestPagePushConsistency: small reads of a cold file push the rest of
// the fetched block into the kernel's page cache (FS.push); writes through
// another descriptor and truncations by path must never let a pushed page
// show stale bytes. A small cache keeps fetches (and pushes) happening.
func TestPagePushConsistency(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			mt := mountOn(t, newBackend(t, kind), Config{CacheBytes: 1 << 20})
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 7))
			const size = 2 << 20
			model := make([]byte, size)
			for i := range model {
				model[i] = byte(rng.IntN(256))
			}
			p := mt.path("pushed")
			must(t, os.WriteFile(p, model, 0o644))
			r, err := os.Open(p)
			must(t, err)
			buf := make([]byte, 4096)
			for i := range 3000 {
				switch op := rng.IntN(20); {
				case op == 0: // write through another descriptor
					off := rng.IntN(size - 4096)
					data := make([]byte, 1+rng.IntN(4096))
					for j := range data {
						data[j] = byte(rng.IntN(256))
					}
					w, err := os.OpenFile(p, os.O_WRONLY, 0)
					must(t, err)
					_, err = w.WriteAt(data, int64(off))
					must(t, err)
					must(t, w.Close())
					copy(model[off:], data)
				case op == 1: // truncate by path, grow back: zeros
					cut := rng.IntN(size)
					must(t, os.Truncate(p, int64(cut)))
					must(t, os.Truncate(p, size))
					clear(model[cut:])
				default:
					off := rng.IntN(size - 4096)
					n, err := r.ReadAt(buf, int64(off))
					if err != nil || n != len(buf) {
						t.Fatalf("op %d: read at %d: %d, %v", i, off, n, err)
					}
					if !bytes.Equal(buf, model[off:off+4096]) {
						t.Fatalf("op %d: read at %d differs from what was written", i, off)
					}
				}
			}
			must(t, r.Close())
			mt.unmount()
		})
	}
}
