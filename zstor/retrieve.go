package zstor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"qss/zstor/backend"
	"qss/zstor/pipeline"
)

// hedgeAfter is how long a chunk read waits for its k first fetches before
// asking one more backend (a hedge against a slow one).
const hedgeAfter = 750 * time.Millisecond

// RetrieveOptions tune one Retrieve call.
type RetrieveOptions struct {
	// Key overrides the object key (default: KeyFor(path)). With Key set,
	// path is only where the file is written (retrieve -o).
	Key string
	// Progress, when set, is called with the number of bytes written.
	Progress func(n int)
	// Started, when set, is called once with the object's size, after its
	// record was read and before any byte is written (a progress bar's
	// total).
	Started func(size int64)
	// Protect refuses to replace a local file whose content differs from
	// the stored object (it changed since it was stored): the error wraps
	// ErrLocalChanged. Without it, such a file is replaced (the library's
	// default; the command line sets Protect unless --force is given).
	Protect bool
}

// RetrieveResult describes a retrieved file.
type RetrieveResult struct {
	Key       string
	Size      int64
	Checksum  pipeline.Checksum
	BadShards int // shards that were missing or failed verification
	// Unchanged is true when the local file already held the stored
	// content: nothing was fetched, only its mode and time were set.
	Unchanged bool
	// Link is the target when the object is a symbolic link.
	Link string
}

// ErrLocalChanged is wrapped by Retrieve's error when Protect is set and
// the local file differs from the stored object.
var ErrLocalChanged = errors.New("the local file differs from the stored version")

// maxTempBase bounds how much of the file name goes into the temporary
// file's name, so that a name near the 255-byte limit still fits with the
// prefix and suffix around it.
const maxTempBase = 128

// tempPattern is the os.CreateTemp pattern for a temporary file beside path.
func tempPattern(path string) string {
	base := filepath.Base(path)
	if len(base) > maxTempBase {
		base = base[:maxTempBase]
	}
	return "." + base + ".zstor-tmp-*"
}

// localState is what Retrieve found at the target path before writing, so
// that it can tell, just before the rename, whether someone changed it
// meanwhile.
type localState struct {
	fi os.FileInfo // nil: nothing there
}

// same reports whether path still holds what was seen.
func (s localState) same(path string) bool {
	fi, err := os.Lstat(path)
	if s.fi == nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	return err == nil && os.SameFile(s.fi, fi) && fi.Size() == s.fi.Size() &&
		fi.ModTime().Equal(s.fi.ModTime()) && fi.Mode() == s.fi.Mode()
}

// inspectLocal looks at what is at path now: whether it already holds rec
// (equal bytes, or the same link target), and its state for the check
// before the rename. A directory is always an error; a differing file is
// one only with protect.
func inspectLocal(path string, rec *Record, protect bool) (localState, bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return localState{}, false, nil
	}
	if err != nil {
		return localState{}, false, err
	}
	st := localState{fi: fi}
	equal := false
	switch {
	case fi.IsDir():
		return st, false, fmt.Errorf("%s is a directory", path)
	case fi.Mode()&fs.ModeSymlink != 0:
		if rec.Link != "" {
			target, err := os.Readlink(path)
			equal = err == nil && target == rec.Link
		}
	case fi.Mode().IsRegular():
		if rec.Link == "" && fi.Size() == rec.Object.Size {
			f, _, err := openRegular(path)
			if err != nil {
				return st, false, err
			}
			sum, err := fileChecksum(f)
			f.Close()
			if err != nil {
				return st, false, err
			}
			equal = sum == rec.Object.Checksum
		}
	}
	if !equal && protect {
		return st, false, fmt.Errorf("%w: %s (retrieve with --force to replace it)", ErrLocalChanged, path)
	}
	return st, equal, nil
}

// Retrieve rebuilds the object of path (or opts.Key) into the file at path.
// Each chunk is read from the k backends that answered fastest so far,
// falling back to the others when a shard is missing or corrupt. The bytes
// go to a temporary file in the same directory, which replaces path only
// once the whole-file checksum verified: on failure no partial file is left.
// The file gets the stored permission bits and modification time; an object
// stored as a symbolic link comes back as a link. A local file that already
// holds the stored content is left in place (only its mode and time are
// set); one that differs is replaced, or refused with opts.Protect.
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
	res := &RetrieveResult{Key: key, Size: rec.Object.Size, Checksum: rec.Object.Checksum, Link: rec.Link}
	if opts.Started != nil {
		opts.Started(rec.Object.Size)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("zstor retrieve: %w", err)
	}
	local, equal, err := inspectLocal(path, rec, opts.Protect)
	if err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", key, err)
	}
	if equal {
		res.Unchanged = true
		if err := setAttrs(path, rec); err != nil {
			return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
		}
		if opts.Progress != nil {
			opts.Progress(int(rec.Object.Size))
		}
		return res, nil
	}
	if rec.Link != "" {
		if err := c.retrieveLink(path, rec, local, opts.Protect); err != nil {
			return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
		}
		return res, nil
	}
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

	tmp, err := os.CreateTemp(dir, tempPattern(path))
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
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	if err := setAttrs(tmp.Name(), rec); err != nil {
		return nil, fmt.Errorf("zstor retrieve %s: %w", path, err)
	}
	if opts.Protect && !local.same(path) {
		return nil, fmt.Errorf("zstor retrieve %s: %w: %s changed during the retrieve (retrieve with --force to replace it)", key, ErrLocalChanged, path)
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

// fileMode is the mode a retrieved file gets: the stored permission bits,
// or 0644 for records that predate them.
func fileMode(rec *Record) fs.FileMode {
	if rec.Mode == 0 {
		return 0o644
	}
	return rec.Mode.Perm()
}

// setAttrs gives the file (or link) at path the record's mode and
// modification time (the access time too, which is not stored). A link's
// own mode means nothing on Linux and is left alone.
func setAttrs(path string, rec *Record) error {
	if rec.Link == "" {
		if err := os.Chmod(path, fileMode(rec)); err != nil {
			return err
		}
	}
	if rec.ModTime.IsZero() {
		return nil
	}
	ts := unix.NsecToTimespec(rec.ModTime.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// retrieveLink creates the symbolic link rec describes at path: under a
// temporary name first, then renamed over path (a link is created whole,
// so there is nothing to verify).
func (c *Client) retrieveLink(path string, rec *Record, local localState, protect bool) error {
	dir := filepath.Dir(path)
	var tmp string
	for i := 0; ; i++ {
		tmp = filepath.Join(dir, strings.Replace(tempPattern(path), "*", strconv.FormatUint(rand.Uint64(), 36), 1))
		err := os.Symlink(rec.Link, tmp)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i >= 10 {
			return err
		}
	}
	if err := setAttrs(tmp, rec); err != nil {
		os.Remove(tmp)
		return err
	}
	if protect && !local.same(path) {
		os.Remove(tmp)
		return fmt.Errorf("%w: %s changed during the retrieve (retrieve with --force to replace it)", ErrLocalChanged, path)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
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
			if h := c.onShardGet.Load(); h != nil {
				(*h)(locs[cd.i])
			}
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
