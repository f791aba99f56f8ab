package pipeline

import (
	"bytes"
	"errors"
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
