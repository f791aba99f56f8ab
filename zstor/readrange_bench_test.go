package zstor_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/zstortest"
)

// BenchmarkReadAt reads a 64 MiB object of random bytes, stored in 4 MiB
// chunks (k=4, n=6) on six local zdb backends, through an ObjectReader:
// 64 KiB reads at random offsets (with the default cache of 4 chunks, and
// with none: every read fetches and decodes its chunk) and 1 MiB sequential
// reads (with and without read-ahead). The reference, measured in the same
// run, is Retrieve of the whole object, which is what reading any part of
// it costs without range reads. MB/s counts the bytes returned.
//
//	go test -run '^$' -bench BenchmarkReadAt -benchtime 2s ./zstor/
func BenchmarkReadAt(b *testing.B) {
	const size = 64 << 20
	cl := zstortest.New(b, 6)
	cl.ChunkSize = 4 << 20
	cfg, err := config.Parse([]byte(cl.ConfigTOML(zstortest.TestKey, "")))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	c, err := zstor.Open(ctx, cfg, zstor.Options{Backend: backend.Options{IOTimeout: 30 * time.Second}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	p := cl.WriteFile("seg/big", zstortest.RandomBytes(size))
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		b.Fatal(err)
	}
	os.Remove(p)

	random := func(opts zstor.ReaderOptions) func(*testing.B) {
		return func(b *testing.B) {
			r, err := c.OpenObject(ctx, "seg/big", opts)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			buf := make([]byte, 64<<10)
			rng := rand.New(rand.NewPCG(7, 8))
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := r.ReadAtContext(ctx, buf, rng.Int64N(size-int64(len(buf)))); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	sequential := func(opts zstor.ReaderOptions) func(*testing.B) {
		return func(b *testing.B) {
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			var r *zstor.ObjectReader
			var off int64
			for b.Loop() {
				if r == nil || off >= size {
					if r != nil {
						r.Close()
					}
					if r, err = c.OpenObject(ctx, "seg/big", opts); err != nil {
						b.Fatal(err)
					}
					off = 0
				}
				n, err := r.ReadAtContext(ctx, buf, off)
				if err != nil {
					b.Fatal(err)
				}
				off += int64(n)
			}
			r.Close()
		}
	}
	b.Run("random-64KiB", random(zstor.ReaderOptions{}))
	b.Run("random-64KiB-nocache", random(zstor.ReaderOptions{CacheChunks: -1}))
	b.Run("sequential-1MiB", sequential(zstor.ReaderOptions{}))
	b.Run("sequential-1MiB-noreadahead", sequential(zstor.ReaderOptions{NoReadAhead: true}))
	b.Run("retrieve-whole", func(b *testing.B) {
		out := filepath.Join(b.TempDir(), "big")
		b.SetBytes(size)
		for b.Loop() {
			os.Remove(out)
			if _, err := c.Retrieve(ctx, out, zstor.RetrieveOptions{Key: "seg/big"}); err != nil {
				b.Fatal(err)
			}
		}
		os.Remove(out)
	})
}
