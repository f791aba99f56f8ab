package pipeline

import (
	"bytes"
	"context"
	"testing"
)

// TestReleasedShardsReused checks that shard memory handed back with
// EncodedChunk.Release is reused, and that a chunk encoded into recycled
// memory — scribbled over by its previous user — is byte for byte the
// chunk encoded into fresh memory: every header, payload, padding and
// checksum byte is written, none is left from before. The chunks differ in
// size (compressed, stored as is, a short last one) so that padding and
// shard sizes change from one chunk to the next.
func TestReleasedShardsReused(t *testing.T) {
	const chunkSize = 64 << 10
	var data []byte
	for i := range 12 {
		if i%3 == 0 {
			data = append(data, textData(chunkSize, uint64(i))...)
		} else {
			data = append(data, randomData(chunkSize, uint64(i))...)
		}
	}
	data = append(data, randomData(1001, 99)...) // short last chunk: padding
	id := ObjectID{1, 2, 3}
	encodeWith := func(release bool) ([][][]byte, int) {
		enc, err := NewEncoder(testKey(7), Options{K: 4, N: 6, Compression: CompressionSnappy, ChunkSize: chunkSize, Concurrency: 1, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		enc.newID = func() ObjectID { return id }
		seen := map[*byte]bool{}
		reused := 0
		var out [][][]byte
		_, err = enc.Encode(context.Background(), bytes.NewReader(data), func(_ context.Context, c *EncodedChunk) error {
			if p := &c.set.buf[0]; seen[p] {
				reused++
			} else {
				seen[p] = true
			}
			var cp [][]byte
			for _, s := range c.Shards {
				cp = append(cp, bytes.Clone(s))
			}
			out = append(out, cp)
			if release {
				for i := range c.set.buf {
					c.set.buf[i] = 0xa5 // what a previous chunk might leave
				}
				c.Release()
				c.Release() // a second call does nothing
				if c.Shards != nil {
					t.Error("Shards still set after Release")
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, reused
	}
	fresh, reused := encodeWith(false)
	if reused != 0 {
		t.Fatalf("memory reused %d times without Release", reused)
	}
	recycled, reused := encodeWith(true)
	if reused == 0 {
		t.Fatal("released shard memory was never reused")
	}
	if len(fresh) != len(recycled) {
		t.Fatalf("%d chunks, then %d", len(fresh), len(recycled))
	}
	for ci := range fresh {
		for si := range fresh[ci] {
			if !bytes.Equal(fresh[ci][si], recycled[ci][si]) {
				t.Fatalf("chunk %d shard %d differs when encoded into recycled memory", ci, si)
			}
		}
	}
}
