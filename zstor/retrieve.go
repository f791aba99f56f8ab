package zstor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"qss/zstor/backend"
	"qss/zstor/pipeline"
)

// hedgeAfter is how long a chunk read waits for its k first fetches before
// asking one more backend (a hedge against a slow one).
const hedgeAfter = 750 * time.Millisecond

// RetrieveOptions tune one Retrieve call.
type RetrieveOptions struct {
	// Key overrides the object key (default: KeyFor(path)).
	Key string
	// Progress, when set, is called with the number of bytes written.
	Progress func(n int)
}

// RetrieveResult describes a retrieved file.
type RetrieveResult struct {
	Key       string
	Size      int64
	Checksum  pipeline.Checksum
	BadShards int // shards that were missing or failed verification
}

// Retrieve rebuilds the object of path (or opts.Key) into the file at path.
// Each chunk is read from the k backends that answered fastest so far,
// falling back to the others when a shard is missing or corrupt. The bytes
// go to a temporary file in the same directory, which replaces path only
// once the whole-file checksum verified: on failure no partial file is left.
func (c *Client) Retrieve(ctx context.Context, path string, opts RetrieveOptions) (*RetrieveResult, error) {
	key := opts.Key
	if key == "" {
		var err error
		if key, err = c.KeyFor(path); err != nil {
			return nil, err
		}
	}
	rec, _, err := c.getRecord(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	res := &RetrieveResult{Key: key, Size: rec.Object.Size, Checksum: rec.Object.Checksum}
	// Shards found bad or missing, per chunk: a chunk's verified refetch
	// replaces the count of its first fetch.
	bad := make([]int, len(rec.Object.Chunks))
	// Twice the configured concurrency: a chunk spends most of its time
	// waiting for its shards, so more chunks in flight keep the CPUs busy
	// (memory stays bounded: about two chunks' worth per chunk in flight).
	var dec *pipeline.Decoder
	dec, err = pipeline.NewDecoder(c.cfg.Encryption.Key, rec.Object, pipeline.DecoderOptions{
		Concurrency: 2 * c.cfg.Concurrency, Logger: c.log,
		// Shards are fetched without hashing them: GCM authenticates each
		// assembled chunk, and only a chunk that fails is fetched again
		// with every shard verified (fetchChunk with verify set).
		Refetch: func(ctx context.Context, ch *pipeline.ChunkMeta) ([][]byte, error) {
			shards, nbad := c.fetchChunk(ctx, dec, ch, rec.Locations[ch.Index], rec.Object.K, true)
			bad[ch.Index] = nbad
			return shards, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("zstor retrieve: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".zstor-tmp-*")
	if err != nil {
		return nil, fmt.Errorf("zstor retrieve: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// The file is written by its own goroutine, so that writing overlaps
	// with the in-order whole-file hashing that Decode does; aligned
	// chunks bypass the page cache (fileWriter).
	aw := newAsyncWriter(newFileWriter(tmp), 4)
	defer aw.Close()
	var w io.Writer = aw
	if opts.Progress != nil {
		w = &progressWriter{w: aw, fn: opts.Progress}
	}
	fetch := func(ctx context.Context, ch *pipeline.ChunkMeta) ([][]byte, error) {
		shards, nbad := c.fetchChunk(ctx, dec, ch, rec.Locations[ch.Index], rec.Object.K, false)
		bad[ch.Index] = nbad
		return shards, nil
	}
	if err := dec.Decode(ctx, w, fetch); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	if !rec.ModTime.IsZero() {
		os.Chtimes(tmp.Name(), rec.ModTime, rec.ModTime)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	ok = true
	for _, n := range bad {
		res.BadShards += n
	}
	return res, nil
}

type fetched struct {
	i    int
	data []byte
	err  error
}

// fetchChunk reads shards of one chunk until k of them verify (or, unless
// verify is set, merely have the right size: the caller lets GCM
// authenticate them and asks again with verify set when that fails): first from
// the k backends with the lowest latency, then from the others, one more for
// each failure or after hedgeAfter without enough answers. When fewer than k
// verify, the bad ones are returned too, so the decoder can tell a wrong key
// from missing shards. It returns the shards and how many were bad or
// missing among those it tried.
func (c *Client) fetchChunk(ctx context.Context, dec *pipeline.Decoder, ch *pipeline.ChunkMeta, locs []Location, k int, verify bool) ([][]byte, int) {
	type cand struct {
		i int
		b *backend.Backend
	}
	var order []cand
	nbad := 0
	for i, l := range locs {
		if l.Backend == "" {
			nbad++
			continue
		}
		b := c.backends.Lookup(l.Backend)
		if b == nil {
			nbad++
			continue
		}
		order = append(order, cand{i, b})
	}
	sort.SliceStable(order, func(x, y int) bool {
		bx, by := order[x].b, order[y].b
		if bx.Down() != by.Down() {
			return by.Down()
		}
		return bx.Latency() < by.Latency()
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shards := make([][]byte, len(locs))
	badShards := make([][]byte, len(locs))
	results := make(chan fetched, len(order))
	next, inflight, good := 0, 0, 0
	launch := func() {
		cd := order[next]
		next++
		inflight++
		go func() {
			data, err := cd.b.Get(ctx, locs[cd.i].Seq)
			switch {
			case err != nil:
			case verify:
				err = dec.VerifyShard(ch.Index, cd.i, data)
			case len(data) != ch.ShardSize:
				err = fmt.Errorf("%w: %d bytes, want %d", pipeline.ErrBadShard, len(data), ch.ShardSize)
			}
			results <- fetched{cd.i, data, err}
		}()
	}
	for inflight < k && next < len(order) {
		launch()
	}
	timer := time.NewTimer(hedgeAfter)
	defer timer.Stop()
	for inflight > 0 && good < k {
		select {
		case r := <-results:
			inflight--
			if r.err == nil {
				shards[r.i] = r.data
				good++
				continue
			}
			nbad++
			if ctx.Err() == nil {
				c.log.Warn("zstor: shard unavailable, trying another", slog.Uint64("chunk", ch.Index),
					slog.Int("shard", r.i), slog.String("err", r.err.Error()))
			}
			if r.data != nil {
				badShards[r.i] = r.data
			}
			if next < len(order) {
				launch()
			}
		case <-timer.C:
			if next < len(order) {
				launch()
			}
			timer.Reset(hedgeAfter)
		}
	}
	if good < k {
		for i, b := range badShards {
			if shards[i] == nil && b != nil {
				shards[i] = b
			}
		}
	}
	return shards, nbad
}

type progressWriter struct {
	w  io.Writer
	fn func(int)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if n > 0 {
		p.fn(n)
	}
	return n, err
}

// asyncWriter hands each Write to a goroutine that writes it to w, at most
// depth writes ahead. Unlike an io.Writer, it keeps p after Write returns:
// callers must not modify it (Decode hands over a fresh buffer per chunk).
// A write error is returned by the next Write or by Close.
type asyncWriter struct {
	ch     chan []byte
	done   chan struct{}
	err    error // set before done is closed
	closed bool
}

func newAsyncWriter(w io.Writer, depth int) *asyncWriter {
	a := &asyncWriter{ch: make(chan []byte, depth), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for p := range a.ch {
			if _, err := w.Write(p); err != nil {
				a.err = err
				return
			}
		}
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	select {
	case <-a.done:
		return 0, a.err
	case a.ch <- p:
		return len(p), nil
	}
}

// Close waits until everything written so far reached w (or failed). It
// may be called more than once.
func (a *asyncWriter) Close() error {
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	<-a.done
	return a.err
}
