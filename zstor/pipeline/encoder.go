package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"
	"github.com/zeebo/blake3"
)

// Options configure an Encoder.
type Options struct {
	K int // data shards per chunk (0-stor_v2 minimal_shards), 1..N
	N int // total shards per chunk (0-stor_v2 expected_shards), K..MaxShards

	// Compression is tried on every chunk; a chunk it does not shrink is
	// stored uncompressed.
	Compression Compression

	// ChunkSize is the plaintext bytes per chunk; 0 means DefaultChunkSize.
	// At most MaxChunkSize(K), so that every shard fits in a zdb value.
	ChunkSize int

	// Concurrency is how many chunks are encoded at once; 0 means
	// GOMAXPROCS. Memory in flight is about (Concurrency+3) chunks (the
	// extra one read ahead to see whether the input ends), plus the
	// shards the emit callback holds on to.
	Concurrency int

	// Logger receives a debug line per object; nil means slog.Default().
	Logger *slog.Logger
}

// withDefaults fills zero fields and validates the result.
func (o Options) withDefaults() (Options, error) {
	if err := checkShape(o.K, o.N); err != nil {
		return o, err
	}
	if !o.Compression.Valid() {
		return o, fmt.Errorf("unknown compression %d", uint8(o.Compression))
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if maxc := MaxChunkSize(o.K); o.ChunkSize < 1 || o.ChunkSize > maxc {
		return o, fmt.Errorf("chunk size %d out of range 1..%d for k=%d (each shard must fit in %d bytes)", o.ChunkSize, maxc, o.K, MaxShardSize)
	}
	if o.Concurrency == 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.Concurrency < 1 {
		return o, fmt.Errorf("concurrency %d, must be at least 1", o.Concurrency)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Encoder turns plaintext streams into shards. It is safe for concurrent use;
// each Encode call stores one object.
type Encoder struct {
	master MasterKey
	opts   Options
	rs     reedsolomon.Encoder

	newID func() ObjectID // NewObjectID; tests pin it to check the format byte for byte

	plainBufs sync.Pool // *[]byte, cap ChunkSize+tagSize: plaintext, only read once filled
	workBufs  sync.Pool // *[]byte, cap compressBound+tagSize: compressed and sealed in place, or the plaintext sealed into it
	shardSets sync.Pool // *shardSet: the n shards of a chunk, handed back by EncodedChunk.Release
}

// shardSet is the memory of one chunk's n shards, in one allocation of n
// times the largest shard the options allow. Recycled, it saves the
// allocation, the zeroing and the page faults of 1.5 bytes of fresh memory
// per byte stored (k=4, n=6), which cost a store about a tenth of its CPU.
type shardSet struct {
	buf    []byte
	shards [][]byte // n slices of buf, resliced to each chunk's shard size
}

// maxShardSize is the largest shard a chunk of o can make: a full chunk
// stored uncompressed (compression is used only when it shrinks the chunk).
func (o Options) maxShardSize() int {
	return HeaderSize + ceilDiv(o.ChunkSize+tagSize, o.K) + ChecksumSize
}

// NewEncoder returns an Encoder for the given master key and options.
func NewEncoder(master MasterKey, opts Options) (*Encoder, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	rs, err := rsFor(opts.K, opts.N)
	if err != nil {
		return nil, err
	}
	e := &Encoder{master: master, opts: opts, rs: rs, newID: NewObjectID}
	e.plainBufs.New = func() any { b := make([]byte, opts.ChunkSize+tagSize); return &b }
	e.workBufs.New = func() any {
		b := make([]byte, compressBound(opts.Compression, opts.ChunkSize)+tagSize)
		return &b
	}
	e.shardSets.New = func() any {
		size := opts.maxShardSize()
		set := &shardSet{buf: make([]byte, opts.N*size), shards: make([][]byte, opts.N)}
		for i := range set.shards {
			set.shards[i] = set.buf[i*size : (i+1)*size : (i+1)*size]
		}
		return set
	}
	return e, nil
}

// Options returns the encoder's options, defaults filled in.
func (e *Encoder) Options() Options { return e.opts }

// EncodedChunk is one chunk's output: its metadata and its N shards.
type EncodedChunk struct {
	Meta ChunkMeta // also appended to the Object that Encode returns

	// Shards[i] is the complete shard with index i (0..K-1 data,
	// K..N-1 parity), ready to store as one zdb value. The callee owns
	// the slices until it calls Release.
	Shards [][]byte

	enc *Encoder
	set *shardSet // where Shards live; nil once released
}

// Release hands the shards' memory back to the Encoder, which reuses it for
// a later chunk: call it once nothing reads Shards any more (every write of
// them returned). Shards is nil afterwards. Calling it is optional (without
// it the garbage collector takes the memory) and a second call does
// nothing.
func (c *EncodedChunk) Release() {
	if c.set == nil {
		return
	}
	c.enc.shardSets.Put(c.set)
	c.set, c.Shards = nil, nil
}

// EmitFunc receives the encoded chunks of an object, one call at a time and
// in chunk order. Returning an error stops the encoding; Encode returns that
// error. A slow EmitFunc slows the reader down (back-pressure) rather than
// letting chunks pile up.
type EmitFunc func(ctx context.Context, c *EncodedChunk) error

// encJob is one chunk read from the input, waiting to be encoded.
type encJob struct {
	index uint64
	final bool
	buf   *[]byte // from plainBufs
	n     int     // plaintext bytes in *buf

	// users counts who still reads *buf: the worker encoding it and the
	// goroutine computing the file checksum; the last one hands it back.
	users atomic.Int32
}

// done is called by each of j's two users when it no longer reads j.buf.
func (j *encJob) done(e *Encoder) {
	if j.users.Add(-1) == 0 {
		e.plainBufs.Put(j.buf)
	}
}

// Encode reads r to its end and stores it as a new object with a random id:
// every chunk is passed to emit, then the object's metadata is returned with
// the whole-file size and checksum. An empty input makes one empty chunk.
func (e *Encoder) Encode(ctx context.Context, r io.Reader, emit EmitFunc) (*Object, error) {
	start := time.Now()
	obj := &Object{
		Version:     FormatVersion,
		ID:          e.newID(),
		K:           e.opts.K,
		N:           e.opts.N,
		ChunkSize:   e.opts.ChunkSize,
		Compression: e.opts.Compression,
	}
	keys, err := newObjectKeys(e.master, obj.ID)
	if err != nil {
		return nil, fmt.Errorf("pipeline: object %s: %w", obj.ID, err)
	}

	// The whole-file checksum is one sequential BLAKE3 over the
	// plaintext, about a fifth of the encoder's CPU. It runs on its own
	// goroutine, chunk after chunk in order, so that neither the reader
	// (which would wait for it before reading ahead) nor the workers wait
	// for it: they only read the plaintext, and whichever of the two
	// finishes with a chunk last returns its buffer.
	sum := blake3.New()
	hashq := make(chan *encJob, e.opts.Concurrency+2) // at most that many jobs exist
	hashDone := make(chan struct{})
	go func() {
		defer close(hashDone)
		for j := range hashq {
			sum.Write((*j.buf)[:j.n])
			j.done(e)
		}
	}()
	var (
		index uint64
		done  bool
		read  int64   // bytes read from r
		ahead *encJob // the chunk after the one next hands out, read to learn whether that one is the last
	)
	// readChunk reads the next chunk into a pooled buffer straight from r,
	// as large reads at offsets that are multiples of ChunkSize (what lets
	// a reader of a file bypass the page cache, see zstor's fileReader).
	// eof says r ended within the chunk.
	readChunk := func() (j *encJob, eof bool, err error) {
		bp := e.plainBufs.Get().(*[]byte)
		n, err := io.ReadFull(r, (*bp)[:e.opts.ChunkSize])
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			eof = true
		default:
			e.plainBufs.Put(bp)
			return nil, false, fmt.Errorf("pipeline: read input at byte %d: %w", read+int64(n), err)
		}
		read += int64(n)
		j = &encJob{buf: bp, n: n}
		j.users.Store(2)
		return j, eof, nil
	}
	var aheadEOF bool
	next := func() (*encJob, bool, error) {
		if done {
			return nil, false, nil
		}
		j, eof := ahead, aheadEOF
		ahead = nil
		if j == nil { // the first chunk
			var err error
			if j, eof, err = readChunk(); err != nil {
				return nil, false, err
			}
		}
		// A full chunk is the last one when nothing follows it; an empty
		// input is one empty chunk.
		if !eof {
			nx, nxEOF, err := readChunk()
			if err != nil {
				e.plainBufs.Put(j.buf)
				return nil, false, err
			}
			if nx.n == 0 {
				e.plainBufs.Put(nx.buf)
				eof = true
			} else {
				ahead, aheadEOF = nx, nxEOF
			}
		}
		j.index, j.final = index, eof
		hashq <- j
		obj.Size += int64(j.n)
		index++
		done = eof
		return j, true, nil
	}
	defer func() {
		// Encoding stopped early (an error): the chunk read ahead was
		// never handed out.
		if ahead != nil {
			e.plainBufs.Put(ahead.buf)
		}
	}()
	work := func(_ context.Context, j *encJob) (*EncodedChunk, error) {
		return e.encodeChunk(keys, obj.ID, j), nil
	}
	consume := func(c *EncodedChunk) error {
		if err := emit(ctx, c); err != nil {
			return fmt.Errorf("pipeline: object %s chunk %d: emit: %w", obj.ID, c.Meta.Index, err)
		}
		obj.Chunks = append(obj.Chunks, c.Meta)
		return nil
	}
	err = runOrdered(ctx, e.opts.Concurrency, next, work, consume)
	close(hashq) // next is not called any more
	<-hashDone
	if err != nil {
		return nil, err
	}
	sum.Sum(obj.Checksum[:0])
	e.opts.Logger.LogAttrs(ctx, slog.LevelDebug, "zstor object encoded",
		slog.String("object", obj.ID.String()),
		slog.Int64("size", obj.Size),
		slog.Int("chunks", len(obj.Chunks)),
		slog.Int("k", obj.K), slog.Int("n", obj.N),
		slog.String("compression", obj.Compression.String()),
		slog.Duration("took", time.Since(start)))
	return obj, nil
}

// encodeChunk compresses, seals, erasure-codes and wraps one chunk. It
// only reads j's plaintext, and is done with it when it returns.
func (e *Encoder) encodeChunk(keys *objectKeys, id ObjectID, j *encJob) *EncodedChunk {
	k, n := e.opts.K, e.opts.N
	plain := (*j.buf)[:j.n]
	c := ChunkMeta{Index: j.index, Final: j.final, Compression: CompressionNone, PlainSize: j.n}

	stored := plain
	wb := e.workBufs.Get().(*[]byte)
	if e.opts.Compression != CompressionNone && j.n > 0 {
		if worthCompressing(e.opts.Compression, plain, wb) {
			if out, ok := compress(e.opts.Compression, (*wb)[:0], plain); ok {
				stored = out
				c.Compression = e.opts.Compression
			}
		}
	}
	c.CipherSize = len(stored) + tagSize
	c.PayloadSize = ceilDiv(c.CipherSize, k)
	c.Padding = k*c.PayloadSize - c.CipherSize
	c.ShardSize = HeaderSize + c.PayloadSize + ChecksumSize

	// Sealed into the work buffer (in place when compressed there): the
	// plaintext may still be read for the file checksum. Both have room
	// for the tag.
	dst := (*wb)[:0]
	if c.Compression != CompressionNone {
		dst = stored[:0]
	}
	ct := keys.aead.Seal(dst, chunkNonce(c.Index), stored, chunkAD(id, &c, k, n, e.opts.ChunkSize))
	j.done(e)

	// Recycled memory holds an earlier chunk's bytes: everything below is
	// written, the zero padding after the ciphertext explicitly.
	set := e.shardSets.Get().(*shardSet)
	shards := make([][]byte, n)
	payloads := make([][]byte, n)
	for i := range shards {
		shards[i] = set.shards[i][:c.ShardSize]
		payloads[i] = shards[i][HeaderSize : HeaderSize+c.PayloadSize]
		if i < k {
			m := 0
			if i*c.PayloadSize < len(ct) {
				m = copy(payloads[i], ct[i*c.PayloadSize:])
			}
			clear(payloads[i][m:])
		}
	}
	e.workBufs.Put(wb)
	if err := e.rs.Encode(payloads); err != nil {
		// Only on shard count or size mismatch, which cannot happen here.
		panic("pipeline: reed-solomon encode: " + err.Error())
	}
	c.Checksums = make([]Checksum, n)
	for i, s := range shards {
		c.Checksums[i] = sealShard(s, keys.shardKey, id, &c, k, n, e.opts.ChunkSize, i)
	}
	return &EncodedChunk{Meta: c, Shards: shards, enc: e, set: set}
}

// Reed-Solomon encoders are costly to build and safe for concurrent use, so
// one per (k, n) is shared.
var rsCache sync.Map // [2]int → reedsolomon.Encoder

func rsFor(k, n int) (reedsolomon.Encoder, error) {
	key := [2]int{k, n}
	if v, ok := rsCache.Load(key); ok {
		return v.(reedsolomon.Encoder), nil
	}
	rs, err := reedsolomon.New(k, n-k)
	if err != nil {
		return nil, fmt.Errorf("pipeline: reed-solomon k=%d n=%d: %w", k, n, err)
	}
	v, _ := rsCache.LoadOrStore(key, rs)
	return v.(reedsolomon.Encoder), nil
}
