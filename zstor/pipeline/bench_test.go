package pipeline

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// Benchmarks of the whole pipeline and of each stage, on 4 MiB chunks
// (DefaultChunkSize) of text-like data that compresses about 2:1, with k=4,
// n=6. Compare the MB/s columns to see which stage bounds throughput.

const benchSize = 16 << 20

var benchAlgs = []Compression{CompressionNone, CompressionSnappy, CompressionS2, CompressionLZ4, CompressionZstd}

func benchOptions(c Compression) Options {
	return Options{K: 4, N: 6, Compression: c, ChunkSize: DefaultChunkSize, Logger: quietLogger}
}

func BenchmarkEncode(b *testing.B) {
	data := textData(benchSize, 1)
	for _, c := range benchAlgs {
		b.Run(c.String(), func(b *testing.B) {
			enc, err := NewEncoder(testKey(1), benchOptions(c))
			if err != nil {
				b.Fatal(err)
			}
			discard := func(_ context.Context, c *EncodedChunk) error { c.Release(); return nil } // as Store does
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc.Encode(context.Background(), bytes.NewReader(data), discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	data := textData(benchSize, 1)
	for _, tc := range []struct {
		name    string
		c       Compression
		missing []int
	}{
		{"none", CompressionNone, nil},
		{"s2", CompressionS2, nil},
		{"zstd", CompressionZstd, nil},
		{"zstd/2-data-shards-missing", CompressionZstd, []int{0, 2}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := encode(b, testKey(1), benchOptions(tc.c), data)
			fetch := s.fetcher(func(_ uint64, sh [][]byte) {
				for _, i := range tc.missing {
					sh[i] = nil
				}
			})
			dec, err := NewDecoder(testKey(1), s.obj, DecoderOptions{Logger: quietLogger})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := dec.Decode(context.Background(), io.Discard, fetch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The stages, one 4 MiB chunk at a time, single goroutine.

func BenchmarkStageCompress(b *testing.B) {
	chunk := textData(DefaultChunkSize, 2)
	for _, c := range benchAlgs[1:] {
		b.Run(c.String(), func(b *testing.B) {
			dst := make([]byte, compressBound(c, len(chunk)))
			var out []byte
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				out, _ = compress(c, dst, chunk)
			}
			b.ReportMetric(float64(len(chunk))/float64(len(out)), "ratio")
		})
	}
}

func BenchmarkStageDecompress(b *testing.B) {
	chunk := textData(DefaultChunkSize, 2)
	for _, c := range benchAlgs[1:] {
		b.Run(c.String(), func(b *testing.B) {
			comp, _ := compress(c, make([]byte, compressBound(c, len(chunk))), chunk)
			comp = bytes.Clone(comp)
			dst := make([]byte, len(chunk))
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				if _, err := decompress(c, dst, comp, len(chunk)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStageEncrypt(b *testing.B) {
	keys, _ := newObjectKeys(testKey(1), ObjectID{1})
	chunk := textData(DefaultChunkSize, 2)
	buf := make([]byte, 0, len(chunk)+tagSize)
	ad := make([]byte, adSize)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		keys.aead.Seal(buf, chunkNonce(1), chunk, ad)
	}
}

func BenchmarkStageDecrypt(b *testing.B) {
	keys, _ := newObjectKeys(testKey(1), ObjectID{1})
	chunk := textData(DefaultChunkSize, 2)
	ad := make([]byte, adSize)
	ct := keys.aead.Seal(nil, chunkNonce(1), chunk, ad)
	buf := make([]byte, 0, len(chunk))
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if _, err := keys.aead.Open(buf, chunkNonce(1), ct, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// erasureShards returns the k+m payloads of one 4 MiB chunk.
func erasureShards(b *testing.B) ([][]byte, int) {
	const k, n = 4, 6
	p := ceilDiv(DefaultChunkSize+tagSize, k)
	shards := make([][]byte, n)
	data := randomData(k*p, 3)
	for i := range shards {
		if i < k {
			shards[i] = data[i*p : (i+1)*p]
		} else {
			shards[i] = make([]byte, p)
		}
	}
	return shards, k
}

func BenchmarkStageErasureEncode(b *testing.B) {
	rs, _ := rsFor(4, 6)
	shards, _ := erasureShards(b)
	b.SetBytes(DefaultChunkSize)
	for b.Loop() {
		if err := rs.Encode(shards); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStageErasureReconstruct(b *testing.B) {
	rs, _ := rsFor(4, 6)
	shards, _ := erasureShards(b)
	rs.Encode(shards)
	work := make([][]byte, len(shards))
	b.SetBytes(DefaultChunkSize)
	for b.Loop() {
		copy(work, shards)
		work[0], work[2] = work[0][:0], work[2][:0] // missing; reuse their memory
		if err := rs.ReconstructData(work); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStageHash is one BLAKE3 pass over 4 MiB. Per byte of plaintext
// the encoder makes 1 + N/K such passes (the whole-file checksum, then every
// shard's keyed checksum), the decoder K'/K + 1 (the shards it reads, then
// the whole-file checksum).
func BenchmarkStageHash(b *testing.B) {
	chunk := randomData(DefaultChunkSize, 4)
	key := make([]byte, KeySize)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		shardChecksum(key, chunk)
	}
}
