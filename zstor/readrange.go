package zstor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"

	"qss/zstor/pipeline"
)

// Range reads: an object is cut into chunks that are each compressed,
// encrypted and erasure-coded on their own (docs/zstor-format.md), so a byte
// range is read by fetching and decoding only the chunks that cover it.

// ErrNotFile is wrapped by the error of opening, for reading, an object
// stored as a symbolic link: it holds no bytes.
var ErrNotFile = errors.New("the stored object is a symbolic link, not a file")

// ErrObjectChanged is wrapped by a read's error when the chunk could not be
// read because the object was replaced or deleted since the reader was
// opened (its shards were freed): open it again.
var ErrObjectChanged = errors.New("the object was replaced or deleted since it was opened")

// defaultCacheChunks is how many decoded chunks an ObjectReader keeps by
// default: the chunk being read, the one read ahead, and two more for
// readers that alternate between neighbouring chunks.
const defaultCacheChunks = 4

// ReaderOptions tune an ObjectReader; the zero value is the default.
type ReaderOptions struct {
	// CacheChunks bounds the decoded chunks the reader keeps, so that
	// small reads of one chunk decode it once: at most CacheChunks ×
	// chunk size bytes. 0 means 4; a negative value keeps none (every
	// read fetches; concurrent reads of one chunk still share a fetch).
	CacheChunks int
	// NoReadAhead disables the read-ahead: by default, when a read starts
	// where the previous one ended, the chunk after the one it ended in is
	// fetched in the background (one such fetch in flight at a time).
	NoReadAhead bool
	// ReadAheadChunks is how many chunks the read-ahead keeps in flight
	// (default 1); the cache must hold them (CacheChunks above it).
	ReadAheadChunks int
}

// ReaderStats count what an ObjectReader did, for tests and metrics.
type ReaderStats struct {
	Fetches   int64 // chunk fetches started (each reads about k shards)
	Shared    int64 // chunk reads that joined a fetch already in flight
	CacheHits int64 // chunk reads served from the decoded-chunk cache
	ReadAhead int64 // fetches started by the read-ahead
	BadShards int   // shards found bad or missing at the last fetch of each chunk
}

// ObjectReader reads byte ranges of one version of a stored object: the
// version whose record OpenObject read. It fetches only the chunks that
// cover a range, each from k backends with the same hedging, fallback and
// verification as Retrieve, and every byte it returns was authenticated
// (AES-GCM, per chunk); a chunk that cannot be authenticated even after a
// refetch with every shard verified is an error, never wrong bytes. It is
// safe for concurrent use; concurrent reads of one chunk share one fetch.
// Close it to stop its read-ahead and drop its cache.
type ObjectReader struct {
	c    *Client
	key  string
	rec  *Record
	dec  *pipeline.Decoder
	opts ReaderOptions
	bad  []atomic.Int32 // per chunk: shards bad or missing at its last fetch
	sem  chan struct{}  // bounds the chunk fetches of one read

	bg   context.Context // parent of every fetch; cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup // fetch goroutines

	fetches, shared, hits, ahead atomic.Int64

	mu       sync.Mutex
	closed   bool
	cache    []cachedChunk         // least recently used first
	calls    map[uint64]*chunkCall // fetches in flight
	next     int64                 // where the last read ended; -1 before the first
	inFlight int                   // read-ahead fetches running
}

type cachedChunk struct {
	index uint64
	data  []byte
}

// chunkCall is one fetch of a chunk, shared by the reads that wait for it.
// data and err are set before done is closed.
type chunkCall struct {
	done    chan struct{}
	data    []byte
	err     error
	waiters int  // reads waiting; the fetch is cancelled when the last leaves
	ahead   bool // started by the read-ahead: runs to its end without waiters
	cancel  context.CancelFunc
}

// OpenObject reads the record of key and returns a reader of its bytes. A
// key with no record (never stored, or deleted) is an error wrapping
// ErrNotStored; an object stored as a symbolic link one wrapping ErrNotFile.
func (c *Client) OpenObject(ctx context.Context, key string, opts ReaderOptions) (*ObjectReader, error) {
	rec, _, err := c.getRecord(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("zstor open %s: %w", key, err)
	}
	if rec.Link != "" {
		return nil, fmt.Errorf("zstor open %s: %w (target %q)", key, ErrNotFile, rec.Link)
	}
	if opts.CacheChunks == 0 {
		opts.CacheChunks = defaultCacheChunks
	}
	r := &ObjectReader{
		c: c, key: key, rec: rec, opts: opts,
		bad:   make([]atomic.Int32, len(rec.Object.Chunks)),
		sem:   make(chan struct{}, max(1, 2*c.cfg.Concurrency)),
		calls: map[uint64]*chunkCall{},
		next:  -1,
	}
	r.dec, err = pipeline.NewDecoder(c.cfg.Encryption.Key, rec.Object, pipeline.DecoderOptions{
		Logger: c.log,
		// As in Retrieve: shards are fetched without hashing them, and GCM
		// authenticates the chunk; only when that fails are the shards
		// verified one by one (refetch).
		Refetch: r.refetch,
	})
	if err != nil {
		return nil, fmt.Errorf("zstor open %s: %w", key, err)
	}
	r.bg, r.stop = context.WithCancel(context.Background())
	return r, nil
}

// ReadAt reads len(p) bytes of the object key at off, as io.ReaderAt does
// (fewer only with an error; io.EOF at the end). It reads the object's
// record on every call; hold an ObjectReader (OpenObject) for repeated
// reads of one object.
func (c *Client) ReadAt(ctx context.Context, key string, p []byte, off int64) (int, error) {
	r, err := c.OpenObject(ctx, key, ReaderOptions{CacheChunks: -1, NoReadAhead: true})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return r.ReadAtContext(ctx, p, off)
}

// Key returns the object key.
func (r *ObjectReader) Key() string { return r.key }

// Size returns the object's size in bytes.
func (r *ObjectReader) Size() int64 { return r.rec.Object.Size }

// Checksum returns the BLAKE3-256 checksum of the whole object (the one
// `check` prints). A range read cannot verify it; each chunk is
// authenticated instead.
func (r *ObjectReader) Checksum() pipeline.Checksum { return r.rec.Object.Checksum }

// Stats returns the reader's counters.
func (r *ObjectReader) Stats() ReaderStats {
	s := ReaderStats{Fetches: r.fetches.Load(), Shared: r.shared.Load(), CacheHits: r.hits.Load(), ReadAhead: r.ahead.Load()}
	for i := range r.bad {
		s.BadShards += int(r.bad[i].Load())
	}
	return s
}

// ReaderAt returns an io.ReaderAt whose reads run under ctx.
func (r *ObjectReader) ReaderAt(ctx context.Context) io.ReaderAt { return readerAt{r, ctx} }

type readerAt struct {
	r   *ObjectReader
	ctx context.Context
}

func (a readerAt) ReadAt(p []byte, off int64) (int, error) { return a.r.ReadAtContext(a.ctx, p, off) }

// Close stops the read-ahead, waits for the fetches in flight and drops
// the cache. Reads after Close fail (fs.ErrClosed). It may be called more
// than once.
func (r *ObjectReader) Close() error {
	r.mu.Lock()
	r.closed = true
	r.cache = nil
	r.mu.Unlock()
	r.stop()
	r.wg.Wait()
	return nil
}

// ReadAtContext reads len(p) bytes at off into p, fetching the chunks that
// cover them concurrently. It has io.ReaderAt's semantics: n < len(p) only
// with an error, io.EOF when the range reaches past the end (0, io.EOF at
// or after it). On an error other than io.EOF, p[:n] holds the bytes before
// the first chunk that failed.
func (r *ObjectReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	size := r.rec.Object.Size
	if off < 0 {
		return 0, fmt.Errorf("zstor read %s: negative offset %d", r.key, off)
	}
	if off >= size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), size)
	cs := int64(r.rec.Object.ChunkSize)
	first, last := uint64(off/cs), uint64((end-1)/cs)

	errs := make([]error, last-first+1)
	if first == last {
		errs[0] = r.copyChunk(ctx, first, p, off, end)
	} else {
		var wg sync.WaitGroup
		for i := first; i <= last; i++ {
			select {
			case r.sem <- struct{}{}:
			case <-ctx.Done():
				errs[i-first] = ctx.Err()
				continue
			}
			wg.Go(func() {
				defer func() { <-r.sem }()
				errs[i-first] = r.copyChunk(ctx, i, p, off, end)
			})
		}
		wg.Wait()
	}
	for j, err := range errs {
		if err != nil {
			n := max(0, int64(first+uint64(j))*cs-off)
			return int(n), fmt.Errorf("zstor read %s [%d, %d): %w", r.key, off, end, err)
		}
	}
	n := int(end - off)
	r.readDone(off, end)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// copyChunk copies the part of chunk i that lies in [off, end) to p, which
// holds the bytes from off on.
func (r *ObjectReader) copyChunk(ctx context.Context, i uint64, p []byte, off, end int64) error {
	data, err := r.chunk(ctx, i)
	if err != nil {
		return err
	}
	start := int64(i) * int64(r.rec.Object.ChunkSize)
	lo, hi := max(off, start), min(end, start+int64(len(data)))
	if hi < lo || hi-start > int64(len(data)) {
		// Cannot happen with validated metadata; never copy garbage.
		return fmt.Errorf("chunk %d: %d bytes do not cover [%d, %d): %w", i, len(data), lo, hi, pipeline.ErrBadMetadata)
	}
	copy(p[lo-off:hi-off], data[lo-start:hi-start])
	return nil
}

// readDone notes where a read ended and, when it continued the previous
// one, starts the read-ahead of the next chunk.
func (r *ObjectReader) readDone(off, end int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sequential := r.next == off
	r.next = end
	depth := max(r.opts.ReadAheadChunks, 1)
	if !sequential || r.opts.NoReadAhead || r.opts.CacheChunks < 0 || r.inFlight >= depth || r.closed {
		return
	}
	// The chunks after the one the read ended in, up to depth of them in
	// flight (and no more than the cache keeps beside the current one).
	depth = min(depth, max(r.opts.CacheChunks-1, 1))
	first := uint64((end-1)/int64(r.rec.Object.ChunkSize)) + 1
	for j := first; j < first+uint64(depth) && j < uint64(len(r.rec.Object.Chunks)) && r.inFlight < depth; j++ {
		if r.calls[j] != nil || r.cachedLocked(j) != nil {
			continue
		}
		r.inFlight++
		r.ahead.Add(1)
		r.startLocked(j, true)
	}
}

// chunk returns the plaintext of chunk i: from the cache, by joining a
// fetch in flight, or by starting one. The fetch runs on its own, under
// the reader's context: a read that gives up (ctx) leaves it to the others
// waiting, and the last one to leave cancels it.
func (r *ObjectReader) chunk(ctx context.Context, i uint64) ([]byte, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("reader %w", fs.ErrClosed)
	}
	if data := r.cachedLocked(i); data != nil {
		r.mu.Unlock()
		r.hits.Add(1)
		return data, nil
	}
	call := r.calls[i]
	if call == nil {
		call = r.startLocked(i, false)
	} else {
		r.shared.Add(1)
	}
	call.waiters++
	r.mu.Unlock()

	select {
	case <-call.done:
		r.mu.Lock()
		call.waiters--
		r.mu.Unlock()
		return call.data, call.err
	case <-ctx.Done():
		r.mu.Lock()
		call.waiters--
		if call.waiters == 0 && !call.ahead {
			call.cancel()
			if r.calls[i] == call {
				delete(r.calls, i) // a later read starts afresh
			}
		}
		r.mu.Unlock()
		return nil, ctx.Err()
	}
}

// startLocked starts the fetch of chunk i. r.mu is held.
func (r *ObjectReader) startLocked(i uint64, ahead bool) *chunkCall {
	ctx, cancel := context.WithCancel(r.bg)
	call := &chunkCall{done: make(chan struct{}), ahead: ahead, cancel: cancel}
	r.calls[i] = call
	r.fetches.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer cancel()
		data, err := r.fetch(ctx, i)
		r.mu.Lock()
		if err != nil && r.closed {
			err = fmt.Errorf("reader %w", fs.ErrClosed)
		}
		if r.calls[i] == call {
			delete(r.calls, i)
		}
		if err == nil && !r.closed {
			r.putLocked(i, data)
		}
		if ahead {
			r.inFlight--
		}
		r.mu.Unlock()
		call.data, call.err = data, err
		close(call.done)
	}()
	return call
}

// fetchState carries the shards of a chunk's first fetch to its refetch
// (through the context FetchChunk passes to both).
type fetchState struct {
	first [][]byte
}

type fetchStateKey struct{}

// fetch reads and decodes chunk i.
func (r *ObjectReader) fetch(ctx context.Context, i uint64) ([]byte, error) {
	st := &fetchState{}
	ctx = context.WithValue(ctx, fetchStateKey{}, st)
	data, err := r.dec.FetchChunk(ctx, i, func(ctx context.Context, ch *pipeline.ChunkMeta) ([][]byte, error) {
		shards, nbad := r.c.fetchChunk(ctx, r.dec, ch, r.rec.Locations[ch.Index], r.rec.Object.K, false)
		if err := ctx.Err(); err != nil {
			return nil, err // cancelled: no refetch, nothing counted
		}
		r.bad[ch.Index].Store(int32(nbad))
		st.first = shards
		return shards, nil
	})
	if err == nil {
		return data, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if errors.Is(err, pipeline.ErrNotEnoughShards) {
		// The shards may be gone because the object was replaced or
		// deleted meanwhile (its old shards freed): say so.
		rec, _, rerr := r.c.getRecord(ctx, r.key)
		switch {
		case errors.Is(rerr, ErrNotStored):
			return nil, fmt.Errorf("%w: %w", ErrObjectChanged, rerr)
		case rerr == nil && rec.Object.ID != r.rec.Object.ID:
			return nil, fmt.Errorf("%w (%w)", ErrObjectChanged, err)
		}
	}
	return nil, err
}

// refetch is called when the chunk assembled from the first fetch's shards
// failed authentication (or too few came): it verifies those shards, keeps
// the good ones, and fetches, verifying, only as many more as are missing
// from the backends not asked yet. Unlike Retrieve's refetch, which asks
// k backends afresh, it so always finds the bad shard among those it
// fetched, counts it, and costs one more GET per bad shard, not k.
func (r *ObjectReader) refetch(ctx context.Context, ch *pipeline.ChunkMeta) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := r.rec.Object.K
	locs := r.rec.Locations[ch.Index]
	st, _ := ctx.Value(fetchStateKey{}).(*fetchState)
	if st == nil || st.first == nil {
		shards, nbad := r.c.fetchChunk(ctx, r.dec, ch, locs, k, true)
		r.bad[ch.Index].Store(int32(nbad))
		return shards, nil
	}
	keep := make([][]byte, len(locs))
	rest := append([]Location(nil), locs...)
	good, bad, skipped := 0, 0, 0
	for i, s := range st.first {
		if s == nil {
			continue
		}
		if err := r.dec.VerifyShard(ch.Index, i, s); err != nil {
			bad++
			r.c.log.Warn("zstor: bad shard, trying another", "key", r.key, "chunk", ch.Index, "shard", i, "err", err)
		} else {
			keep[i] = s
			good++
		}
		if rest[i].Backend != "" {
			skipped++
		}
		rest[i] = Location{} // asked already: fetchChunk skips it
	}
	if good >= k {
		r.bad[ch.Index].Store(int32(bad))
		return keep, nil
	}
	more, nbad := r.c.fetchChunk(ctx, r.dec, ch, rest, k-good, true)
	for i, s := range keep {
		if s != nil {
			more[i] = s
		}
	}
	r.bad[ch.Index].Store(int32(bad + nbad - skipped))
	return more, nil
}

// cachedLocked returns chunk i from the cache (marking it recently used),
// or nil. r.mu is held.
func (r *ObjectReader) cachedLocked(i uint64) []byte {
	for j, e := range r.cache {
		if e.index == i {
			copy(r.cache[j:], r.cache[j+1:])
			r.cache[len(r.cache)-1] = e
			return e.data
		}
	}
	return nil
}

// putLocked adds chunk i to the cache, dropping the least recently used
// beyond CacheChunks. r.mu is held.
func (r *ObjectReader) putLocked(i uint64, data []byte) {
	if r.opts.CacheChunks < 0 || r.cachedLocked(i) != nil {
		return
	}
	r.cache = append(r.cache, cachedChunk{i, data})
	if over := len(r.cache) - r.opts.CacheChunks; over > 0 {
		n := copy(r.cache, r.cache[over:])
		clear(r.cache[n:]) // let the dropped chunks be collected
		r.cache = r.cache[:n]
	}
}
