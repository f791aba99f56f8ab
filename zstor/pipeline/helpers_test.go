package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/zeebo/blake3"
)

// quietLogger drops the warnings bad-shard tests provoke on purpose.
var quietLogger = slog.New(slog.DiscardHandler)

func testKey(b byte) MasterKey {
	var k MasterKey
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// textData returns n bytes of compressible, text-like data (words from a
// small vocabulary, numbers), deterministic for a seed.
func textData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	words := make([]string, 512)
	for i := range words {
		w := make([]byte, 3+r.IntN(8))
		for j := range w {
			w[j] = 'a' + byte(r.IntN(26))
		}
		words[i] = string(w)
	}
	var b bytes.Buffer
	b.Grow(n + 32)
	for b.Len() < n {
		if r.IntN(8) == 0 {
			fmt.Fprintf(&b, "%d ", r.IntN(100000))
		} else {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// randomData returns n incompressible bytes.
func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// stored is an encoded object kept in memory: the metadata and, per chunk,
// its N shards.
type stored struct {
	obj    *Object
	shards [][][]byte
}

func encode(t testing.TB, key MasterKey, opts Options, data []byte) *stored {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	enc, err := NewEncoder(key, opts)
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	s := &stored{}
	obj, err := enc.Encode(context.Background(), bytes.NewReader(data), func(_ context.Context, c *EncodedChunk) error {
		if c.Meta.Index != uint64(len(s.shards)) {
			return fmt.Errorf("chunk %d emitted out of order (want %d)", c.Meta.Index, len(s.shards))
		}
		s.shards = append(s.shards, c.Shards)
		return nil
	})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	s.obj = obj
	return s
}

// fetcher serves the stored shards, after letting edit change a copy of
// the shard list of each chunk (drop or corrupt shards).
func (s *stored) fetcher(edit func(chunk uint64, shards [][]byte)) FetchFunc {
	return func(_ context.Context, c *ChunkMeta) ([][]byte, error) {
		out := make([][]byte, len(s.shards[c.Index]))
		copy(out, s.shards[c.Index])
		if edit != nil {
			edit(c.Index, out)
		}
		return out, nil
	}
}

func decode(key MasterKey, obj *Object, fetch FetchFunc, opts DecoderOptions) ([]byte, error) {
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	dec, err := NewDecoder(key, obj, opts)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := dec.Decode(context.Background(), &out, fetch); err != nil {
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}

// roundTrip encodes data, decodes it with all shards and checks the result
// and the metadata's shape.
func roundTrip(t *testing.T, opts Options, data []byte) *stored {
	t.Helper()
	key := testKey(1)
	s := encode(t, key, opts, data)
	checkObject(t, s, opts, data)
	got, err := decode(key, s.obj, s.fetcher(nil), DecoderOptions{})
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("round trip of %d bytes returned %d different bytes", len(data), len(got))
	}
	return s
}

func checkObject(t *testing.T, s *stored, opts Options, data []byte) {
	t.Helper()
	o := s.obj
	if o.Size != int64(len(data)) {
		t.Errorf("Size = %d, want %d", o.Size, len(data))
	}
	if o.Checksum != Checksum(blake3.Sum256(data)) {
		t.Errorf("Checksum = %s, want BLAKE3 of the data", o.Checksum)
	}
	cs := opts.ChunkSize
	if cs == 0 {
		cs = DefaultChunkSize
	}
	want := max(1, ceilDiv(len(data), cs))
	if len(o.Chunks) != want || len(s.shards) != want {
		t.Fatalf("%d chunks (%d emitted), want %d", len(o.Chunks), len(s.shards), want)
	}
	for i, c := range o.Chunks {
		if c.Final != (i == want-1) {
			t.Errorf("chunk %d Final = %v", i, c.Final)
		}
		if len(s.shards[i]) != opts.N || len(c.Checksums) != opts.N {
			t.Fatalf("chunk %d: %d shards, %d checksums, want %d", i, len(s.shards[i]), len(c.Checksums), opts.N)
		}
		for j, sh := range s.shards[i] {
			if len(sh) != c.ShardSize || len(sh) > MaxShardSize {
				t.Errorf("chunk %d shard %d: %d bytes, ShardSize %d", i, j, len(sh), c.ShardSize)
			}
			if Checksum(sh[len(sh)-ChecksumSize:]) != c.Checksums[j] {
				t.Errorf("chunk %d shard %d: trailer is not the recorded checksum", i, j)
			}
		}
	}
	if err := o.validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

// errReader returns data, then err.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}
