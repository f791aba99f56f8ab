package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testChunk = 64 << 10

func TestRoundTripSizes(t *testing.T) {
	opts := Options{K: 4, N: 6, Compression: CompressionZstd, ChunkSize: testChunk, Concurrency: 3}
	for _, n := range []int{0, 1, testChunk - 1, testChunk, testChunk + 1, 2 * testChunk, 5*testChunk + 123, 3 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			roundTrip(t, opts, textData(n, uint64(n)))
		})
	}
}

func TestRoundTripCompression(t *testing.T) {
	for _, c := range []Compression{CompressionNone, CompressionSnappy, CompressionZstd, CompressionS2, CompressionLZ4} {
		t.Run(c.String(), func(t *testing.T) {
			opts := Options{K: 4, N: 6, Compression: c, ChunkSize: testChunk}
			// Text, then random bytes: the first chunks compress, the last
			// ones do not and must be stored as is.
			data := append(textData(3*testChunk, 7), randomData(2*testChunk, 8)...)
			s := roundTrip(t, opts, data)
			for i, ch := range s.obj.Chunks {
				want := c
				if i >= 3 {
					want = CompressionNone
				}
				if ch.Compression != want {
					t.Errorf("chunk %d compression %s, want %s", i, ch.Compression, want)
				}
				if ch.Compression != CompressionNone && ch.CipherSize-tagSize >= ch.PlainSize {
					t.Errorf("chunk %d: compressed %d ≥ plain %d", i, ch.CipherSize-tagSize, ch.PlainSize)
				}
			}
		})
	}
}

func TestRoundTripShapes(t *testing.T) {
	for _, kn := range [][2]int{{1, 1}, {1, 3}, {2, 2}, {2, 4}, {3, 5}, {4, 6}, {10, 14}, {16, 20}, {17, 255}} {
		t.Run(fmt.Sprintf("k%d_n%d", kn[0], kn[1]), func(t *testing.T) {
			opts := Options{K: kn[0], N: kn[1], Compression: CompressionS2, ChunkSize: testChunk}
			roundTrip(t, opts, textData(2*testChunk+777, 3))
		})
	}
}

// combinations calls f with every k-subset of 0..n-1.
func combinations(n, k int, f func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			f(cur)
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
}

func TestDecodeEveryKSubset(t *testing.T) {
	key := testKey(2)
	opts := Options{K: 4, N: 7, Compression: CompressionLZ4, ChunkSize: 4096}
	data := textData(2*4096+100, 5)
	s := encode(t, key, opts, data)
	count := 0
	combinations(opts.N, opts.K, func(keep []int) {
		count++
		got, err := decode(key, s.obj, s.fetcher(func(_ uint64, sh [][]byte) {
			for i := range sh {
				if !slices.Contains(keep, i) {
					sh[i] = nil
				}
			}
		}), DecoderOptions{})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("shards %v: err %v, equal %v", keep, err, bytes.Equal(got, data))
		}
	})
	if count != 35 {
		t.Fatalf("%d subsets, want C(7,4) = 35", count)
	}
}

func TestMissingShards(t *testing.T) {
	key := testKey(3)
	opts := Options{K: 4, N: 6, Compression: CompressionZstd, ChunkSize: testChunk}
	data := textData(3*testChunk+5, 9)
	s := encode(t, key, opts, data)
	drop := func(idx ...int) FetchFunc {
		return s.fetcher(func(_ uint64, sh [][]byte) {
			for _, i := range idx {
				sh[i] = nil
			}
		})
	}
	for _, missing := range [][]int{{0, 1}, {4, 5}, {0, 5}, {2, 3}} {
		got, err := decode(key, s.obj, drop(missing...), DecoderOptions{})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("missing %v (n−k): err %v", missing, err)
		}
	}
	_, err := decode(key, s.obj, drop(0, 3, 5), DecoderOptions{})
	if !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("n−k+1 missing: err %v, want ErrNotEnoughShards", err)
	}
	if !strings.Contains(err.Error(), "3 valid shards (3 present), need 4") {
		t.Errorf("error does not say what is missing: %v", err)
	}
	// Missing only in one chunk fails the decode too.
	_, err = decode(key, s.obj, s.fetcher(func(c uint64, sh [][]byte) {
		if c == 2 {
			sh[0], sh[1], sh[2] = nil, nil, nil
		}
	}), DecoderOptions{})
	if !errors.Is(err, ErrNotEnoughShards) || !strings.Contains(err.Error(), "chunk 2") {
		t.Fatalf("chunk 2 unreadable: err %v", err)
	}
}

func TestCorruptShard(t *testing.T) {
	key := testKey(4)
	opts := Options{K: 3, N: 5, Compression: CompressionSnappy, ChunkSize: testChunk}
	data := textData(2*testChunk+1, 11)
	s := encode(t, key, opts, data)
	shardSize := s.obj.Chunks[0].ShardSize
	positions := map[string]int{"magic": 0, "shard index": 9, "object id": 20, "chunk index": 30, "payload": HeaderSize + 17, "checksum": shardSize - 1}

	for _, withChecksums := range []bool{true, false} {
		obj := *s.obj
		if !withChecksums {
			// Metadata rebuilt from a scan may lack checksums: the shards' own decide.
			obj.Chunks = slices.Clone(obj.Chunks)
			for i := range obj.Chunks {
				obj.Chunks[i].Checksums = nil
			}
		}
		for name, pos := range positions {
			t.Run(fmt.Sprintf("checksums=%v/%s", withChecksums, name), func(t *testing.T) {
				var mu sync.Mutex
				var bad []string
				got, err := decode(key, &obj, s.fetcher(func(c uint64, sh [][]byte) {
					if c == 0 {
						sh[1] = bytes.Clone(sh[1])
						sh[1][pos] ^= 0x40
					}
				}), DecoderOptions{OnBadShard: func(chunk uint64, shard int, err error) {
					mu.Lock()
					defer mu.Unlock()
					if !errors.Is(err, ErrBadShard) {
						t.Errorf("bad shard error %v does not wrap ErrBadShard", err)
					}
					bad = append(bad, fmt.Sprintf("%d/%d", chunk, shard))
				}})
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("err %v", err)
				}
				if !slices.Equal(bad, []string{"0/1"}) {
					t.Fatalf("bad shards reported %v, want [0/1]", bad)
				}
			})
		}
	}

	// A shard whose recorded checksum differs (say, metadata of another
	// write) is bad even though it verifies on its own.
	obj := *s.obj
	obj.Chunks = slices.Clone(obj.Chunks)
	obj.Chunks[1].Checksums = slices.Clone(obj.Chunks[1].Checksums)
	obj.Chunks[1].Checksums[4][0] ^= 1
	var nbad atomic.Int32
	if got, err := decode(key, &obj, s.fetcher(nil), DecoderOptions{OnBadShard: func(uint64, int, error) { nbad.Add(1) }}); err != nil || !bytes.Equal(got, data) || nbad.Load() != 1 {
		t.Fatalf("recorded checksum differs: err %v, %d bad shards", err, nbad.Load())
	}

	// n−k+1 corrupt shards: not enough left.
	_, err := decode(key, s.obj, s.fetcher(func(_ uint64, sh [][]byte) {
		for _, i := range []int{0, 2, 4} {
			sh[i] = bytes.Clone(sh[i])
			sh[i][HeaderSize] ^= 1
		}
	}), DecoderOptions{})
	if !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("3 corrupt of 5 with k=3: err %v", err)
	}
	// A truncated shard is a bad shard, not a panic.
	got, err := decode(key, s.obj, s.fetcher(func(_ uint64, sh [][]byte) { sh[0] = sh[0][:10] }), DecoderOptions{})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("truncated shard: %v", err)
	}
}

func TestShardFromOtherChunkOrObject(t *testing.T) {
	key := testKey(5)
	opts := Options{K: 2, N: 3, ChunkSize: 4096}
	data := randomData(2*4096, 1)
	a := encode(t, key, opts, data)
	b := encode(t, key, opts, data)
	if a.obj.ID == b.obj.ID || bytes.Equal(a.shards[0][0], b.shards[0][0]) {
		t.Fatal("two stores of the same data share an object id or shards")
	}
	for name, edit := range map[string]func(uint64, [][]byte){
		"other chunk":  func(c uint64, sh [][]byte) { sh[0] = a.shards[1-c][0] },
		"other index":  func(_ uint64, sh [][]byte) { sh[0] = sh[1] },
		"other object": func(c uint64, sh [][]byte) { sh[0] = b.shards[c][0] },
	} {
		for _, withChecksums := range []bool{true, false} {
			obj := *a.obj
			if !withChecksums {
				obj.Chunks = slices.Clone(obj.Chunks)
				for i := range obj.Chunks {
					obj.Chunks[i].Checksums = nil
				}
			}
			var nbad atomic.Int32
			got, err := decode(key, &obj, a.fetcher(edit), DecoderOptions{OnBadShard: func(uint64, int, error) { nbad.Add(1) }})
			if err != nil || !bytes.Equal(got, data) || nbad.Load() != 2 {
				t.Errorf("%s (checksums %v): err %v, %d bad shards reported, want 2", name, withChecksums, err, nbad.Load())
			}
		}
	}
}

func TestWrongKey(t *testing.T) {
	opts := Options{K: 2, N: 4, Compression: CompressionZstd, ChunkSize: testChunk}
	s := encode(t, testKey(6), opts, textData(100000, 1))
	_, err := decode(testKey(7), s.obj, s.fetcher(nil), DecoderOptions{})
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong key: err %v, want ErrDecrypt", err)
	}
	// Without checksums in the metadata: still ErrDecrypt.
	obj := *s.obj
	obj.Chunks = slices.Clone(obj.Chunks)
	for i := range obj.Chunks {
		obj.Chunks[i].Checksums = nil
	}
	_, err = decode(testKey(7), &obj, s.fetcher(nil), DecoderOptions{})
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong key, no checksums: err %v, want ErrDecrypt", err)
	}
}

func TestNoPlaintextInShards(t *testing.T) {
	marker := []byte("ZSTOR-PLAINTEXT-MARKER-0123456789")
	data := bytes.Repeat(append(slices.Clone(marker), textData(200, 2)...), 2000)
	for _, c := range []Compression{CompressionNone, CompressionSnappy, CompressionLZ4} {
		s := roundTrip(t, Options{K: 1, N: 2, Compression: c, ChunkSize: testChunk}, data)
		for i, ch := range s.shards {
			for j, sh := range ch {
				for _, probe := range [][]byte{marker, marker[:12], marker[10:22]} {
					if bytes.Contains(sh, probe) {
						t.Fatalf("%s: chunk %d shard %d contains plaintext %q", c, i, j, probe)
					}
				}
			}
		}
	}
}

func TestRebuildShards(t *testing.T) {
	key := testKey(8)
	opts := Options{K: 3, N: 6, Compression: CompressionS2, ChunkSize: testChunk}
	s := encode(t, key, opts, textData(testChunk+10, 4))
	dec, err := NewDecoder(key, s.obj, DecoderOptions{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range s.shards {
		orig := s.shards[chunk]
		damaged := slices.Clone(orig)
		damaged[0] = nil
		damaged[4] = nil
		damaged[2] = bytes.Clone(orig[2])
		damaged[2][HeaderSize+3] ^= 0xff
		all, rebuilt, err := dec.RebuildShards(uint64(chunk), damaged)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rebuilt, []int{0, 2, 4}) {
			t.Errorf("rebuilt %v, want [0 2 4]", rebuilt)
		}
		for i := range orig {
			if !bytes.Equal(all[i], orig[i]) {
				t.Errorf("chunk %d shard %d differs from the original after rebuild", chunk, i)
			}
		}
		if damaged[0] != nil || damaged[2][HeaderSize+3] == orig[2][HeaderSize+3] {
			t.Error("RebuildShards modified its input")
		}
	}
	_, _, err = dec.RebuildShards(0, [][]byte{s.shards[0][0], nil, nil, nil, nil, s.shards[0][5]})
	if !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("rebuild from 2 of k=3: %v", err)
	}
}

func TestDecodeChunkAndVerifyShard(t *testing.T) {
	key := testKey(9)
	data := textData(3*4096, 6)
	s := encode(t, key, Options{K: 2, N: 3, Compression: CompressionZstd, ChunkSize: 4096}, data)
	dec, err := NewDecoder(key, s.obj, DecoderOptions{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.shards {
		if err := dec.VerifyShard(uint64(i), 2, s.shards[i][2]); err != nil {
			t.Errorf("chunk %d shard 2: %v", i, err)
		}
		if err := dec.VerifyShard(uint64(i), 1, s.shards[i][2]); !errors.Is(err, ErrBadShard) {
			t.Errorf("shard 2 as shard 1: %v", err)
		}
		plain, err := dec.DecodeChunk(uint64(i), [][]byte{nil, s.shards[i][1], s.shards[i][2]})
		if err != nil || !bytes.Equal(plain, data[i*4096:(i+1)*4096]) {
			t.Errorf("DecodeChunk(%d): %v", i, err)
		}
	}
	if _, err := dec.DecodeChunk(3, make([][]byte, 3)); !errors.Is(err, ErrBadMetadata) {
		t.Errorf("DecodeChunk past the end: %v", err)
	}
	if _, err := dec.DecodeChunk(0, make([][]byte, 2)); err == nil {
		t.Error("DecodeChunk with 2 slots for n=3: no error")
	}
}

func TestInspectShard(t *testing.T) {
	key := testKey(10)
	s := encode(t, key, Options{K: 2, N: 5, Compression: CompressionLZ4, ChunkSize: 4096}, textData(5000, 1))
	c := s.obj.Chunks[1]
	h, sum, err := InspectShard(key, s.shards[1][3])
	if err != nil {
		t.Fatal(err)
	}
	if sum != c.Checksums[3] {
		t.Errorf("InspectShard checksum %s, metadata %s", sum, c.Checksums[3])
	}
	want := ShardHeader{Version: 1, Final: true, Compression: c.Compression, K: 2, N: 5, ShardIndex: 3,
		ObjectID: s.obj.ID, ChunkIndex: 1, ChunkSize: 4096, PlainSize: 5000 - 4096, CipherSize: c.CipherSize, PayloadSize: c.PayloadSize}
	if h != want {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	if _, _, err := InspectShard(testKey(11), s.shards[1][3]); !errors.Is(err, ErrDecrypt) || !errors.Is(err, ErrBadShard) {
		t.Fatalf("wrong key: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("short"), bytes.Repeat([]byte{0}, 200)} {
		if _, _, err := InspectShard(key, bad); !errors.Is(err, ErrBadShard) {
			t.Errorf("InspectShard(%d bytes): %v", len(bad), err)
		}
	}
}

func TestChecksumMismatch(t *testing.T) {
	key := testKey(12)
	s := encode(t, key, Options{K: 2, N: 3, ChunkSize: 4096}, textData(10000, 1))
	obj := *s.obj
	obj.Checksum[0] ^= 1
	if _, err := decode(key, &obj, s.fetcher(nil), DecoderOptions{}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("altered checksum: %v", err)
	}
}

func TestBadMetadata(t *testing.T) {
	key := testKey(13)
	s := encode(t, key, Options{K: 2, N: 3, ChunkSize: 4096}, textData(10000, 1))
	for name, edit := range map[string]func(o *Object){
		"version":        func(o *Object) { o.Version = 2 },
		"k>n":            func(o *Object) { o.K = 4 },
		"no chunks":      func(o *Object) { o.Chunks = nil },
		"size":           func(o *Object) { o.Size++ },
		"order":          func(o *Object) { o.Chunks[0], o.Chunks[1] = o.Chunks[1], o.Chunks[0] },
		"final":          func(o *Object) { o.Chunks[0].Final = true },
		"short middle":   func(o *Object) { o.Chunks[0].PlainSize--; o.Size-- },
		"payload size":   func(o *Object) { o.Chunks[1].PayloadSize++ },
		"checksum count": func(o *Object) { o.Chunks[1].Checksums = o.Chunks[1].Checksums[:2] },
		"compression":    func(o *Object) { o.Chunks[1].Compression = 99 },
		"chunk size":     func(o *Object) { o.ChunkSize = MaxChunkSize(2) + 1 },
	} {
		obj := *s.obj
		obj.Chunks = slices.Clone(obj.Chunks)
		edit(&obj)
		if _, err := NewDecoder(key, &obj, DecoderOptions{}); !errors.Is(err, ErrBadMetadata) {
			t.Errorf("%s: %v, want ErrBadMetadata", name, err)
		}
	}
}

func TestOptions(t *testing.T) {
	key := testKey(14)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{K: 0, N: 2}, "at least 1"},
		{Options{K: 3, N: 2}, "greater than n"},
		{Options{K: 2, N: 256}, "at most 255"},
		{Options{K: 2, N: 3, Compression: 9}, "unknown compression"},
		{Options{K: 1, N: 2, ChunkSize: MaxChunkSize(1) + 1}, "out of range"},
		{Options{K: 2, N: 3, ChunkSize: -1}, "out of range"},
		{Options{K: 2, N: 3, Concurrency: -1}, "concurrency"},
	} {
		_, err := NewEncoder(key, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.opts, err, tc.want)
		}
	}
	e, err := NewEncoder(key, Options{K: 2, N: 3})
	if err != nil {
		t.Fatal(err)
	}
	if o := e.Options(); o.ChunkSize != DefaultChunkSize || o.Concurrency < 1 || o.Logger == nil {
		t.Errorf("defaults not filled: %+v", o)
	}
	if MaxChunkSize(0) != 0 || MaxChunkSize(255) != 1<<30 {
		t.Errorf("MaxChunkSize(0)=%d MaxChunkSize(255)=%d", MaxChunkSize(0), MaxChunkSize(255))
	}
}

// TestLargestChunkFitsZdb stores one incompressible chunk of the largest size
// k=1 allows: its shards must be exactly zdb's value limit.
func TestLargestChunkFitsZdb(t *testing.T) {
	if testing.Short() {
		t.Skip("8 MiB chunk")
	}
	opts := Options{K: 1, N: 2, Compression: CompressionSnappy, ChunkSize: MaxChunkSize(1), Concurrency: 1}
	s := roundTrip(t, opts, randomData(MaxChunkSize(1), 3))
	if got := len(s.shards[0][0]); got != MaxShardSize {
		t.Fatalf("largest shard %d bytes, want exactly %d", got, MaxShardSize)
	}
}

func TestEmitErrorAndCancel(t *testing.T) {
	key := testKey(15)
	enc, err := NewEncoder(key, Options{K: 2, N: 3, ChunkSize: 4096, Concurrency: 2, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	data := textData(100*4096, 1)
	boom := errors.New("backend down")
	calls := 0
	_, err = enc.Encode(context.Background(), bytes.NewReader(data), func(_ context.Context, c *EncodedChunk) error {
		calls++
		if c.Meta.Index == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 4 {
		t.Fatalf("emit error: err %v after %d calls", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	_, err = enc.Encode(ctx, bytes.NewReader(data), func(context.Context, *EncodedChunk) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}

	readErr := errors.New("disk on fire")
	_, err = enc.Encode(context.Background(), &errReader{r: bytes.NewReader(data[:3*4096+5]), err: readErr},
		func(context.Context, *EncodedChunk) error { return nil })
	if !errors.Is(err, readErr) || !strings.Contains(err.Error(), "read input") {
		t.Fatalf("read error: %v", err)
	}
}

// countingReader counts the bytes handed out.
type countingReader struct {
	data []byte
	n    atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	off := int(c.n.Load())
	if off >= len(c.data) {
		return 0, io.EOF
	}
	n := copy(p, c.data[off:])
	c.n.Add(int64(n))
	return n, nil
}

// TestBoundedMemory checks the read-ahead: with a slow consumer, the encoder
// never holds more than Concurrency+2 chunks beyond what it has emitted.
func TestBoundedMemory(t *testing.T) {
	const conc = 2
	enc, err := NewEncoder(testKey(16), Options{K: 2, N: 3, ChunkSize: 4096, Concurrency: conc, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	r := &countingReader{data: textData(64*4096, 2)}
	limit := int64((conc+3)*4096 + 4096) // conc+2 chunks, the one being emitted, the one read ahead to see whether the input ends
	var worst int64
	_, err = enc.Encode(context.Background(), r, func(_ context.Context, c *EncodedChunk) error {
		time.Sleep(200 * time.Microsecond) // let the reader run ahead as far as it can
		ahead := r.n.Load() - int64(c.Meta.Index)*4096
		worst = max(worst, ahead)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if worst > limit {
		t.Fatalf("read %d bytes ahead of the consumer, limit %d", worst, limit)
	}
	t.Logf("worst read-ahead %d bytes (limit %d)", worst, limit)
}
