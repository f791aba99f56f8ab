package pipeline

import (
	"bytes"
	"context"
	"testing"
)

// A chunk whose samples do not shrink is stored uncompressed without being
// compressed whole; one with a compressible sample is compressed. Either
// way it decodes to the same bytes.
func TestCompressionSampling(t *testing.T) {
	const chunk = 1 << 20
	random := randomData(chunk, 1)
	text := textData(chunk, 2)
	// Random but for a compressible stretch under the third sample.
	mixed := bytes.Clone(random)
	step := (chunk - sampleSize) / (sampleCount - 1)
	copy(mixed[2*step:], text[:sampleSize])
	for _, c := range []Compression{CompressionSnappy, CompressionS2, CompressionLZ4, CompressionZstd} {
		scratch := new([]byte)
		if worthCompressing(c, random, scratch) {
			t.Errorf("%s: random data worth compressing", c)
		}
		if !worthCompressing(c, text, scratch) || !worthCompressing(c, mixed, scratch) {
			t.Errorf("%s: text, or random data with a compressible sample, not worth compressing", c)
		}
		if !worthCompressing(c, random[:4*sampleCount*sampleSize-1], scratch) {
			t.Errorf("%s: a chunk too small to sample is not tried", c)
		}

		enc, err := NewEncoder(testKey(3), Options{K: 3, N: 5, Compression: c, ChunkSize: chunk, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"random": random, "text": text, "mixed": mixed} {
			s := &stored{}
			obj, err := enc.Encode(context.Background(), bytes.NewReader(data), func(_ context.Context, ch *EncodedChunk) error {
				s.shards = append(s.shards, ch.Shards)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s.obj = obj
			got := obj.Chunks[0].Compression
			if name == "random" && got != CompressionNone || name == "text" && got != c {
				t.Errorf("%s %s: chunk stored with %s", c, name, got)
			}
			out, err := decode(testKey(3), obj, s.fetcher(nil), DecoderOptions{})
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("%s %s: decode: %v", c, name, err)
			}
		}
	}
}

// BenchmarkEncodeRandom encodes incompressible data (the bench/zstor.sh
// file), where compression is tried and thrown away.
func BenchmarkEncodeRandom(b *testing.B) {
	data := randomData(benchSize, 1)
	for _, c := range []Compression{CompressionNone, CompressionSnappy} {
		b.Run(c.String(), func(b *testing.B) {
			enc, err := NewEncoder(testKey(1), benchOptions(c))
			if err != nil {
				b.Fatal(err)
			}
			discard := func(_ context.Context, c *EncodedChunk) error { c.Release(); return nil } // as Store does
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := enc.Encode(context.Background(), bytes.NewReader(data), discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
