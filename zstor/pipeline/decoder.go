package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/klauspost/reedsolomon"
	"github.com/zeebo/blake3"
)

// DecoderOptions configure a Decoder.
type DecoderOptions struct {
	// Concurrency is how many chunks Decode fetches and decodes at once; 0
	// means GOMAXPROCS.
	Concurrency int

	// Logger receives a warning per bad shard; nil means slog.Default().
	Logger *slog.Logger

	// OnBadShard, when set, is called for every shard that was present but
	// failed verification (so the caller can schedule a repair). It may be
	// called from several goroutines at once.
	OnBadShard func(chunk uint64, shard int, err error)

	// Prechecked says the FetchFunc passed to Decode already ran
	// VerifyShard on the shards it returns, so Decode does not hash them a
	// second time: it assembles the chunk and lets AES-GCM authenticate it.
	// Only if that fails (the FetchFunc may return unverified shards when
	// too few verified) are the shards verified one by one, to decode from
	// the good ones or to report precisely what is wrong. Either way no
	// unauthenticated byte reaches the output.
	Prechecked bool

	// Refetch, when set, makes shard verification lazy: Decode decodes
	// the shards its FetchFunc returned without hashing any of them
	// (AES-GCM authenticates the assembled chunk, so a bad shard among
	// them fails the chunk instead of corrupting it), and only when that
	// fails calls Refetch for the chunk, whose shards it then treats as
	// with Prechecked (Refetch must have verified them with VerifyShard).
	// On the happy path, no shard is hashed at all: a retrieve hashes the
	// whole file once (the file checksum) instead of twice.
	Refetch FetchFunc
}

// Decoder rebuilds one object from its metadata and shards. It is safe for
// concurrent use.
type Decoder struct {
	obj  *Object
	keys *objectKeys
	rs   reedsolomon.Encoder
	opts DecoderOptions
}

// NewDecoder returns a Decoder for obj, whose metadata is checked for
// consistency first (ErrBadMetadata).
func NewDecoder(master MasterKey, obj *Object, opts DecoderOptions) (*Decoder, error) {
	if err := obj.validate(); err != nil {
		return nil, fmt.Errorf("pipeline: object %s: %w", obj.ID, err)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = runtime.GOMAXPROCS(0)
	}
	if opts.Concurrency < 1 {
		return nil, fmt.Errorf("pipeline: concurrency %d, must be at least 1", opts.Concurrency)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	keys, err := newObjectKeys(master, obj.ID)
	if err != nil {
		return nil, fmt.Errorf("pipeline: object %s: %w", obj.ID, err)
	}
	rs, err := rsFor(obj.K, obj.N)
	if err != nil {
		return nil, err
	}
	return &Decoder{obj: obj, keys: keys, rs: rs, opts: opts}, nil
}

// Object returns the metadata the decoder was made with.
func (d *Decoder) Object() *Object { return d.obj }

// VerifyShard checks that shard is the intact shard idx of the given chunk:
// its size, that every header field matches the metadata, that its trailing
// checksum verifies under the object's shard key, and that the checksum
// equals the one in the metadata (when recorded). The error wraps
// ErrBadShard. A reader uses it to decide whether to fetch another shard;
// scrub uses it to find damaged shards.
func (d *Decoder) VerifyShard(chunk uint64, idx int, shard []byte) error {
	c, err := d.obj.Chunk(chunk)
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return d.verifyShard(c, idx, shard)
}

func (d *Decoder) verifyShard(c *ChunkMeta, idx int, shard []byte) error {
	if idx < 0 || idx >= d.obj.N {
		return fmt.Errorf("%w: shard index %d, n=%d", ErrBadShard, idx, d.obj.N)
	}
	if len(shard) != c.ShardSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrBadShard, len(shard), c.ShardSize)
	}
	h, err := parseHeader(shard)
	if err != nil {
		return err
	}
	want := ShardHeader{
		Version: FormatVersion, Final: c.Final, Compression: c.Compression,
		K: d.obj.K, N: d.obj.N, ShardIndex: idx, ObjectID: d.obj.ID, ChunkIndex: c.Index,
		ChunkSize: d.obj.ChunkSize, PlainSize: c.PlainSize, CipherSize: c.CipherSize, PayloadSize: c.PayloadSize,
	}
	if h != want {
		return fmt.Errorf("%w: header %+v does not match metadata %+v", ErrBadShard, h, want)
	}
	sum, err := verifyChecksum(d.keys.shardKey, shard)
	if err != nil {
		return err
	}
	if c.Checksums != nil && !c.Checksums[idx].IsZero() && sum != c.Checksums[idx] {
		return fmt.Errorf("%w: checksum %s, metadata says %s", ErrBadShard, sum, c.Checksums[idx])
	}
	return nil
}

// payloads verifies the shards of chunk c and returns their payloads by
// index, nil for missing or bad shards, and the number of good ones.
func (d *Decoder) payloads(c *ChunkMeta, shards [][]byte) ([][]byte, int, error) {
	if len(shards) != d.obj.N {
		return nil, 0, fmt.Errorf("pipeline: object %s chunk %d: %d shard slots, want n=%d", d.obj.ID, c.Index, len(shards), d.obj.N)
	}
	payloads := make([][]byte, d.obj.N)
	good, present, sumFailures := 0, 0, 0
	for i, s := range shards {
		if len(s) == 0 {
			continue
		}
		present++
		if err := d.verifyShard(c, i, s); err != nil {
			if errors.Is(err, errChecksum) {
				sumFailures++
			}
			d.opts.Logger.Warn("zstor bad shard, treated as missing",
				slog.String("object", d.obj.ID.String()), slog.Uint64("chunk", c.Index),
				slog.Int("shard", i), slog.String("err", err.Error()))
			if d.opts.OnBadShard != nil {
				d.opts.OnBadShard(c.Index, i, err)
			}
			continue
		}
		payloads[i] = s[HeaderSize : HeaderSize+c.PayloadSize]
		good++
	}
	if good < d.obj.K {
		err := fmt.Errorf("pipeline: object %s chunk %d: %d valid shards (%d present), need %d: %w",
			d.obj.ID, c.Index, good, present, d.obj.K, ErrNotEnoughShards)
		if good == 0 && sumFailures == present && present > 0 {
			// Every shard has the expected header but none has a checksum
			// that verifies: by far the likeliest cause is a wrong key.
			err = fmt.Errorf("%w (%w)", err, ErrDecrypt)
		}
		return nil, good, err
	}
	return payloads, good, nil
}

// DecodeChunk rebuilds the plaintext of the given chunk from its shards:
// shards[i] is shard i, nil or empty when missing. Any K shards that verify
// suffice; the others are ignored (and reported to OnBadShard). The shard
// slices are not modified.
func (d *Decoder) DecodeChunk(chunk uint64, shards [][]byte) ([]byte, error) {
	c, err := d.obj.Chunk(chunk)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	return d.decodeChunk(c, shards)
}

func (d *Decoder) decodeChunk(c *ChunkMeta, shards [][]byte) ([]byte, error) {
	payloads, _, err := d.payloads(c, shards)
	if err != nil {
		return nil, err
	}
	return d.open(c, payloads)
}

// decodeTrusted decodes chunk c from the first K shards of the right size,
// without verifying their checksums: AES-GCM authenticates the assembled
// ciphertext, so a bad shard among them makes it fail (ErrDecrypt) rather
// than yield wrong bytes. The caller then falls back to decodeChunk. The
// shard slices are not modified.
func (d *Decoder) decodeTrusted(c *ChunkMeta, shards [][]byte) ([]byte, error) {
	if len(shards) != d.obj.N {
		return nil, ErrNotEnoughShards
	}
	payloads := make([][]byte, d.obj.N)
	good := 0
	for i, s := range shards {
		if len(s) != c.ShardSize || good == d.obj.K {
			continue
		}
		payloads[i] = s[HeaderSize : HeaderSize+c.PayloadSize]
		good++
	}
	if good < d.obj.K {
		return nil, ErrNotEnoughShards
	}
	return d.open(c, payloads)
}

// open reassembles, authenticates, decrypts and decompresses chunk c from
// its payloads (nil for missing ones; at least K present).
func (d *Decoder) open(c *ChunkMeta, payloads [][]byte) ([]byte, error) {
	ct, err := d.ciphertext(c, payloads)
	if err != nil {
		return nil, err
	}
	stored, err := d.keys.aead.Open(ct[:0], chunkNonce(c.Index), ct, chunkAD(d.obj.ID, c, d.obj.K, d.obj.N, d.obj.ChunkSize))
	if err != nil {
		return nil, fmt.Errorf("pipeline: object %s chunk %d: %w", d.obj.ID, c.Index, ErrDecrypt)
	}
	if c.Compression == CompressionNone {
		if len(stored) != c.PlainSize {
			return nil, fmt.Errorf("pipeline: object %s chunk %d: %d bytes, want %d: %w", d.obj.ID, c.Index, len(stored), c.PlainSize, ErrBadMetadata)
		}
		return stored, nil
	}
	plain, err := decompress(c.Compression, make([]byte, 0, c.PlainSize), stored, c.PlainSize)
	if err != nil {
		// The data was authenticated, so this is a bug or bad metadata,
		// never tampering.
		return nil, fmt.Errorf("pipeline: object %s chunk %d: %w", d.obj.ID, c.Index, err)
	}
	return plain, nil
}

// ciphertext reassembles the chunk's ciphertext from verified payloads,
// reconstructing missing data shards only when there are any.
func (d *Decoder) ciphertext(c *ChunkMeta, payloads [][]byte) ([]byte, error) {
	k := d.obj.K
	for i := range k {
		if payloads[i] == nil {
			if err := d.rs.ReconstructData(payloads); err != nil {
				return nil, fmt.Errorf("pipeline: object %s chunk %d: reed-solomon: %w", d.obj.ID, c.Index, err)
			}
			break
		}
	}
	ct := make([]byte, k*c.PayloadSize)
	for i := range k {
		copy(ct[i*c.PayloadSize:], payloads[i])
	}
	return ct[:c.CipherSize], nil
}

// RebuildShards recreates the missing and bad shards of the given chunk from
// any K good ones, for repair. It returns all N shards (the good ones as given,
// the rebuilt ones new) and the indexes it rebuilt. Rebuilt shards are byte
// for byte the shards the Encoder wrote, so their checksums in c still hold;
// the chunk is authenticated (GCM) before any shard is returned, and it is
// never encrypted again.
func (d *Decoder) RebuildShards(chunk uint64, shards [][]byte) ([][]byte, []int, error) {
	c, err := d.obj.Chunk(chunk)
	if err != nil {
		return nil, nil, fmt.Errorf("pipeline: %w", err)
	}
	payloads, good, err := d.payloads(c, shards)
	if err != nil {
		return nil, nil, err
	}
	if good == d.obj.N {
		return shards, nil, nil
	}
	var rebuilt []int
	for i, p := range payloads {
		if p == nil {
			rebuilt = append(rebuilt, i)
		}
	}
	if err := d.rs.Reconstruct(payloads); err != nil {
		return nil, nil, fmt.Errorf("pipeline: object %s chunk %d: reed-solomon: %w", d.obj.ID, c.Index, err)
	}
	ct, err := d.ciphertext(c, payloads)
	if err != nil {
		return nil, nil, err
	}
	if _, err := d.keys.aead.Open(nil, chunkNonce(c.Index), ct, chunkAD(d.obj.ID, c, d.obj.K, d.obj.N, d.obj.ChunkSize)); err != nil {
		return nil, nil, fmt.Errorf("pipeline: object %s chunk %d: %w", d.obj.ID, c.Index, ErrDecrypt)
	}
	out := make([][]byte, d.obj.N)
	copy(out, shards)
	for _, i := range rebuilt {
		s := make([]byte, c.ShardSize)
		copy(s[HeaderSize:], payloads[i])
		sum := sealShard(s, d.keys.shardKey, d.obj.ID, c, d.obj.K, d.obj.N, d.obj.ChunkSize, i)
		if c.Checksums != nil && !c.Checksums[i].IsZero() && sum != c.Checksums[i] {
			return nil, nil, fmt.Errorf("pipeline: object %s chunk %d: rebuilt shard %d does not match its recorded checksum: %w", d.obj.ID, c.Index, i, ErrBadMetadata)
		}
		out[i] = s
	}
	return out, rebuilt, nil
}

// FetchFunc returns the shards of chunk c: a slice of N entries, entry i
// being shard i, nil when missing. It need not return all of them; any K
// good ones suffice. Decode calls it from several goroutines at once.
type FetchFunc func(ctx context.Context, c *ChunkMeta) ([][]byte, error)

// FetchChunk fetches and rebuilds one chunk's plaintext exactly as Decode
// does for each chunk: with the same verification policy (Prechecked,
// Refetch), so no unauthenticated byte is ever returned. It serves reads of
// a byte range, which need only the chunks covering it; the whole-file
// checksum cannot be checked then, but each chunk is authenticated by
// AES-GCM under associated data that binds the object, its index and
// whether it is the last one.
func (d *Decoder) FetchChunk(ctx context.Context, chunk uint64, fetch FetchFunc) ([]byte, error) {
	c, err := d.obj.Chunk(chunk)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	return d.fetchChunk(ctx, c, fetch)
}

func (d *Decoder) fetchChunk(ctx context.Context, c *ChunkMeta, fetch FetchFunc) ([]byte, error) {
	shards, err := fetch(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("pipeline: object %s chunk %d: fetch: %w", d.obj.ID, c.Index, err)
	}
	if d.opts.Prechecked || d.opts.Refetch != nil {
		if plain, err := d.decodeTrusted(c, shards); err == nil {
			return plain, nil
		}
	}
	if d.opts.Refetch != nil {
		// A shard was bad or missing: fetch again, verifying.
		if shards, err = d.opts.Refetch(ctx, c); err != nil {
			return nil, fmt.Errorf("pipeline: object %s chunk %d: fetch: %w", d.obj.ID, c.Index, err)
		}
		if plain, err := d.decodeTrusted(c, shards); err == nil {
			return plain, nil
		}
	}
	return d.decodeChunk(c, shards)
}

// Decode rebuilds the whole object into w: chunks are fetched and decoded
// concurrently and written in order. After the last chunk it checks the
// size and BLAKE3 checksum against the metadata (ErrChecksum). On error, w
// has received a prefix of the plaintext; write to a temporary file and
// rename it only on success.
func (d *Decoder) Decode(ctx context.Context, w io.Writer, fetch FetchFunc) error {
	sum := blake3.New()
	var (
		size int64
		next uint64
	)
	produce := func() (*ChunkMeta, bool, error) {
		if next >= uint64(len(d.obj.Chunks)) {
			return nil, false, nil
		}
		c := &d.obj.Chunks[next]
		next++
		return c, true, nil
	}
	work := func(ctx context.Context, c *ChunkMeta) ([]byte, error) {
		return d.fetchChunk(ctx, c, fetch)
	}
	consume := func(plain []byte) error {
		if _, err := w.Write(plain); err != nil {
			return fmt.Errorf("pipeline: object %s: write output at byte %d: %w", d.obj.ID, size, err)
		}
		sum.Write(plain)
		size += int64(len(plain))
		return nil
	}
	if err := runOrdered(ctx, d.opts.Concurrency, produce, work, consume); err != nil {
		return err
	}
	var got Checksum
	sum.Sum(got[:0])
	if size != d.obj.Size || got != d.obj.Checksum {
		return fmt.Errorf("pipeline: object %s: rebuilt %d bytes with checksum %s, metadata says %d bytes with %s: %w",
			d.obj.ID, size, got, d.obj.Size, d.obj.Checksum, ErrChecksum)
	}
	return nil
}
