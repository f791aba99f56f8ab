package pipeline

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// With Prechecked, shards are not hashed again, so a bad shard handed to
// Decode (a FetchFunc that could not find enough verified ones) must still
// never reach the output: GCM rejects the chunk and Decode falls back to
// verifying every shard.
func TestPrecheckedFallsBack(t *testing.T) {
	key := testKey(7)
	opts := Options{K: 3, N: 5, Compression: CompressionSnappy, ChunkSize: testChunk}
	data := textData(3*testChunk+5, 3)
	s := encode(t, key, opts, data)
	pre := DecoderOptions{Prechecked: true}

	if got, err := decode(key, s.obj, s.fetcher(nil), pre); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("all shards good: err %v", err)
	}
	shardSize := s.obj.Chunks[0].ShardSize
	for name, pos := range map[string]int{"payload": HeaderSize + 17, "header": 9, "checksum": shardSize - 1} {
		for _, shard := range []int{0, 1, 2, 4} {
			got, err := decode(key, s.obj, s.fetcher(func(c uint64, sh [][]byte) {
				if c == 1 {
					sh[shard] = bytes.Clone(sh[shard])
					sh[shard][pos] ^= 0x20
				}
			}), pre)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s byte of shard %d flipped: err %v, output equal %v", name, shard, err, bytes.Equal(got, data))
			}
		}
	}
	// A data shard missing: the fast path reconstructs from parity.
	if got, err := decode(key, s.obj, s.fetcher(func(_ uint64, sh [][]byte) { sh[0] = nil }), pre); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data shard missing: err %v", err)
	}
	// n−k+1 bad payloads: an error, and no byte of the bad chunk output.
	got, err := decode(key, s.obj, s.fetcher(func(c uint64, sh [][]byte) {
		if c == 2 {
			for _, i := range []int{0, 2, 4} {
				sh[i] = bytes.Clone(sh[i])
				sh[i][HeaderSize+1] ^= 1
			}
		}
	}), pre)
	if !errors.Is(err, ErrNotEnoughShards) || len(got) > 2*testChunk || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("3 bad of 5 with k=3: err %v, %d bytes out", err, len(got))
	}
	// A wrong key is still reported as such.
	if _, err := decode(testKey(8), s.obj, s.fetcher(nil), pre); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong key: err %v, want ErrDecrypt", err)
	}
}

// With Refetch, the shards the FetchFunc returns are not verified at all on
// the happy path; a bad one fails GCM, and Decode asks Refetch (which
// verifies) for that chunk only. No unauthenticated byte reaches the
// output, and a chunk Refetch cannot serve either is an error.
func TestRefetch(t *testing.T) {
	key := testKey(9)
	opts := Options{K: 3, N: 5, Compression: CompressionNone, ChunkSize: testChunk}
	data := textData(4*testChunk+9, 4)
	s := encode(t, key, opts, data)
	var refetched []uint64
	var mu sync.Mutex
	refetch := func(bad map[uint64]bool) FetchFunc {
		good := s.fetcher(nil)
		return func(ctx context.Context, c *ChunkMeta) ([][]byte, error) {
			mu.Lock()
			refetched = append(refetched, c.Index)
			mu.Unlock()
			if bad[c.Index] {
				return s.fetcher(func(_ uint64, sh [][]byte) {
					for _, i := range []int{0, 1, 3} {
						sh[i] = nil
					}
				})(ctx, c)
			}
			return good(ctx, c)
		}
	}
	flip := s.fetcher(func(c uint64, sh [][]byte) {
		if c == 2 {
			sh[1] = bytes.Clone(sh[1])
			sh[1][HeaderSize+5] ^= 0x01
		}
	})
	got, err := decode(key, s.obj, flip, DecoderOptions{Refetch: refetch(nil)})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a flipped payload byte: err %v, output equal %v", err, bytes.Equal(got, data))
	}
	if !slices.Equal(refetched, []uint64{2}) {
		t.Fatalf("refetched chunks %v, want only chunk 2", refetched)
	}
	refetched = nil
	got, err = decode(key, s.obj, flip, DecoderOptions{Refetch: refetch(map[uint64]bool{2: true})})
	if !errors.Is(err, ErrNotEnoughShards) || !bytes.Equal(got, data[:len(got)]) || len(got) > 2*testChunk {
		t.Fatalf("chunk 2 bad and too few on refetch: err %v, %d bytes out", err, len(got))
	}
	refetched = nil
	if got, err := decode(key, s.obj, s.fetcher(nil), DecoderOptions{Refetch: refetch(nil)}); err != nil || !bytes.Equal(got, data) || len(refetched) != 0 {
		t.Fatalf("all good: err %v, refetched %v", err, refetched)
	}
}
