package zstor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"qss/zstor/meta"
	"qss/zstor/pipeline"
)

// StoreOptions tune one Store call.
type StoreOptions struct {
	// Key overrides the object key (default: KeyFor(path)).
	Key string
	// DeleteLocal removes the local file once the upload is committed and
	// the file still hashes to the stored checksum.
	DeleteLocal bool
	// Progress, when set, is called with the number of bytes read as the
	// file is consumed. A store that starts again (the file changed while
	// it was read) reports the bytes of every attempt.
	Progress func(n int)
	// Links stores a symbolic link at path as a link (its target, no
	// bytes), as store -r does; without it a link is followed and must
	// lead to a regular file (0-stor_v2's behaviour).
	Links bool
}

// ErrChanged is wrapped by Store's error when the file kept changing while
// it was read (tornAttempts times): what was read may be a mix of versions
// that never existed, so nothing was committed.
var ErrChanged = errors.New("the file changed while it was being stored")

// racyWindow is longer than the kernel's timestamp tick (at most 10 ms
// with HZ=100): a file whose ctime is younger than this when its read
// starts is read only after the window passed (see encodeFile).
const racyWindow = 15 * time.Millisecond

// tornAttempts is how many times Store reads a file that changes under it
// before it gives up with ErrChanged.
const tornAttempts = 3

// fileStamp is what tells that a file changed: a write changes the size or
// the ctime (and usually the mtime), even one that restores the mtime.
type fileStamp struct {
	size         int64
	mtime, ctime unix.Timespec
	ino          uint64
}

func stampOf(f *os.File) (fileStamp, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: st.Size, mtime: st.Mtim, ctime: st.Ctim, ino: st.Ino}, nil
}

// openRegular opens path for reading without ever blocking: O_NONBLOCK
// makes opening a FIFO return at once (a plain open waits for a writer,
// forever), and the file is refused unless it is a regular file. It
// follows symbolic links.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file (%s)", path, FileKind(fi.Mode()))
	}
	return f, fi, nil
}

// FileKind names the type of a file of mode m for messages ("a FIFO",
// "a directory", ...).
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsRegular():
		return "a regular file"
	}
	return "a special file"
}

// StoreResult describes a stored (or skipped) file.
type StoreResult struct {
	Key      string
	Size     int64
	Checksum pipeline.Checksum
	Chunks   int
	// Skipped is true when the stored checksum already equalled the
	// local file's, so nothing was uploaded.
	Skipped bool
	// Replaced is true when an older version was replaced.
	Replaced bool
	// MinShards is the fewest shards written for any chunk: below N the
	// object was stored degraded (too few usable backends) and repair
	// adds the missing shards when backends return.
	MinShards int
}

// Store uploads the regular file at path. Every chunk's n shards are written
// concurrently to n distinct backends chosen by the placement rules; a shard
// whose backend fails is placed again on another backend that keeps the
// rules. The metadata record is committed only after every shard of every
// chunk was acknowledged; on any failure the shards written so far are
// deleted (best effort) and nothing claims the object is stored. Storing a
// changed file replaces the record and then frees the old version's shards.
func (c *Client) Store(ctx context.Context, path string, opts StoreOptions) (*StoreResult, error) {
	key := opts.Key
	if key == "" {
		var err error
		if key, err = c.KeyFor(path); err != nil {
			return nil, err
		}
	}
	if opts.Links {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return c.storeLink(ctx, path, key, fi)
		}
	}
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, fmt.Errorf("zstor store: %w", err)
	}
	defer f.Close()

	old, mk, err := c.getRecord(ctx, key)
	if err != nil && !errors.Is(err, ErrNotStored) {
		return nil, fmt.Errorf("zstor store %s: %w", path, err)
	}
	if errors.Is(err, ErrNotStored) && c.foreignRecords(ctx) {
		return nil, fmt.Errorf("zstor store %s: the metadata store holds records this config's key cannot decrypt: wrong encryption key? (refusing to store)", path)
	}
	if old != nil && old.Link == "" && old.Object.Size == fi.Size() {
		sum, err := fileChecksum(f)
		if err != nil {
			return nil, fmt.Errorf("zstor store: %w", err)
		}
		// Equal bytes are not uploaded again, unless the permission bits
		// changed (records written before modes were kept have none, and
		// are not uploaded again for that alone). A changed mtime alone
		// does not count: `touch` would cost a full upload.
		if sum == old.Object.Checksum && (old.Mode == 0 || old.Mode == fi.Mode().Perm()) {
			c.log.Info("zstor: already stored, unchanged", slog.String("key", key))
			res := &StoreResult{Key: key, Size: fi.Size(), Checksum: sum, Chunks: len(old.Object.Chunks), Skipped: true, MinShards: old.MinShards()}
			if opts.DeleteLocal {
				if err := removeSame(path, f); err != nil {
					return res, err
				}
			}
			if opts.Progress != nil {
				opts.Progress(int(fi.Size()))
			}
			return res, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("zstor store: %w", err)
		}
	}

	start := time.Now()
	obj, locations, p, fi, err := c.encodeFile(ctx, path, f, opts.Progress)
	if err != nil {
		return nil, err
	}
	rec := &Record{Key: key, Stored: time.Now(), ModTime: fi.ModTime(), Mode: fi.Mode().Perm(), Object: obj, Locations: locations}
	if err := c.putRecord(ctx, mk, rec); err != nil {
		if c.undoCommit(ctx, key, mk, old, obj) {
			p.cleanup(ctx)
		}
		return nil, fmt.Errorf("zstor store %s: commit metadata: %w", path, err)
	}
	minShards := rec.MinShards()
	c.log.Info("zstor: stored", slog.String("key", key), slog.Int64("size", obj.Size),
		slog.Int("chunks", len(obj.Chunks)), slog.Duration("took", time.Since(start)))
	if minShards < obj.N {
		c.log.Warn("zstor: stored degraded", slog.String("key", key), slog.Int("shards", minShards), slog.Int("n", obj.N))
	}
	res := &StoreResult{Key: key, Size: obj.Size, Checksum: obj.Checksum, Chunks: len(obj.Chunks), Replaced: old != nil, MinShards: minShards}
	if old != nil {
		if n := c.freeShards(ctx, shardsOf(old)); n > 0 {
			c.log.Warn("zstor: some shards of the replaced version could not be freed", slog.String("key", key), slog.Int("shards", n))
		}
	}
	if opts.DeleteLocal {
		// Verified: every shard was acknowledged, the record committed, and
		// the file still holds what was uploaded.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return res, fmt.Errorf("zstor store: %w", err)
		}
		sum, err := fileChecksum(f)
		if err != nil {
			return res, fmt.Errorf("zstor store: verify before deleting: %w", err)
		}
		if sum != obj.Checksum {
			return res, fmt.Errorf("zstor store: %s changed during the upload; not deleted (store it again)", path)
		}
		if err := removeSame(path, f); err != nil {
			return res, err
		}
	}
	return res, nil
}

// encodeFile reads f (opened on path) from the start and writes its
// shards; it returns the object, its shard locations, the placer that wrote
// them (for cleanup) and the file's state at the start of the read that
// succeeded. A file that changed while it was read (its size, mtime, ctime
// or inode differ after the read, or it did not hold as many bytes as its
// size said) may have given a mix of versions: its shards are freed and the
// read starts again, up to tornAttempts times, then ErrChanged.
func (c *Client) encodeFile(ctx context.Context, path string, f *os.File, progress func(int)) (*pipeline.Object, [][]Location, *placer, os.FileInfo, error) {
	for attempt := 1; ; attempt++ {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("zstor store: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("zstor store: %w", err)
		}
		before, err := stampOf(f)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("zstor store: %w", err)
		}
		// The kernel stamps ctime from a coarse clock: a write in the same
		// tick as the last change before the read would leave it as it
		// is. So a file changed a moment ago is read only once that tick
		// is surely over (as git does with its "racy" entries).
		if age := time.Since(time.Unix(before.ctime.Unix())); age < racyWindow {
			select {
			case <-time.After(racyWindow - age):
			case <-ctx.Done():
				return nil, nil, nil, nil, fmt.Errorf("zstor store %s: %w", path, ctx.Err())
			}
			if before, err = stampOf(f); err != nil {
				return nil, nil, nil, nil, fmt.Errorf("zstor store: %w", err)
			}
			if fi, err = f.Stat(); err != nil {
				return nil, nil, nil, nil, fmt.Errorf("zstor store: %w", err)
			}
		}
		p := c.newPlacer(ctx, false, c.degradedFloor())
		// Read straight into the encoder's chunk buffers (no bufio: the
		// encoder reads whole chunks, which lets fr bypass the page cache).
		fr := newFileReader(f, before.size)
		var r io.Reader = fr
		if progress != nil {
			r = &progressReader{r: r, fn: progress}
		}
		w := newChunkWriter(p, c.cfg.MinimalShards, c.cfg.ExpectedShards)
		obj, err := c.enc.Encode(ctx, r, w.emit)
		if werr := w.wait(); werr != nil && err == nil {
			err = werr
		}
		if ferr := fr.finish(); ferr != nil && err == nil {
			err = ferr
		}
		locations := w.locations()
		if err != nil {
			p.cleanup(ctx)
			return nil, nil, nil, nil, fmt.Errorf("zstor store %s: %w", path, err)
		}
		after, err := stampOf(f)
		if err != nil {
			p.cleanup(ctx)
			return nil, nil, nil, nil, fmt.Errorf("zstor store: %w", err)
		}
		if after == before && obj.Size == before.size {
			return obj, locations, p, fi, nil
		}
		p.cleanup(ctx)
		if attempt >= tornAttempts {
			return nil, nil, nil, nil, fmt.Errorf("zstor store %s: %w (tried %d times; nothing was committed)", path, ErrChanged, attempt)
		}
		c.log.Warn("zstor: the file changed while it was read; reading it again", slog.String("path", path), slog.Int("attempt", attempt))
	}
}

// writeDepth is how many chunks a store writes at once. With one, every
// backend waited for the slowest of the chunk's n writes before it got its
// next shard, and the encoder for the whole round; two keep each backend
// busy while the other chunk's stragglers finish.
const writeDepth = 2

// chunkWriter writes an object's chunks as the encoder hands them out, up
// to writeDepth chunks at once, and keeps each chunk's shard locations in
// chunk order. The first failed write stops the encoding: emit returns it
// for every later chunk.
type chunkWriter struct {
	p    *placer
	k, n int
	sem  chan struct{} // a token per chunk being written
	wg   sync.WaitGroup

	mu   sync.Mutex
	err  error        // the first failed write
	locs [][]Location // by chunk index; filled in as writes finish
}

func newChunkWriter(p *placer, k, n int) *chunkWriter {
	return &chunkWriter{p: p, k: k, n: n, sem: make(chan struct{}, writeDepth)}
}

// emit is the encoder's EmitFunc: it starts writing ch once fewer than
// writeDepth chunks are in flight (back-pressure on the encoder) and
// returns without waiting for the write.
func (w *chunkWriter) emit(ctx context.Context, ch *pipeline.EncodedChunk) error {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	err := w.err
	idx := len(w.locs)
	w.locs = append(w.locs, nil)
	w.mu.Unlock()
	if err != nil {
		<-w.sem
		return err
	}
	w.wg.Go(func() {
		defer func() { <-w.sem }()
		locs, err := w.p.write(ctx, w.k, w.n, ch.Shards, nil)
		ch.Release() // every write returned: the encoder may reuse the memory
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = err
			}
			return
		}
		w.locs[idx] = locs
	})
	return nil
}

// wait waits for every write started and returns the first error.
func (w *chunkWriter) wait() error {
	w.wg.Wait()
	return w.err
}

// locations returns the chunks' shard locations in chunk order; valid
// after wait returned nil.
func (w *chunkWriter) locations() [][]Location { return w.locs }

// degradedFloor is the fewest shards a store may write when too few
// backends are usable for n (min_store_shards), or 0 when degraded stores
// are turned off (min_store_shards = n).
func (c *Client) degradedFloor() int {
	if c.cfg.MinStoreShards >= c.cfg.ExpectedShards {
		return 0
	}
	return c.cfg.MinStoreShards
}

// storeLink stores the symbolic link at path as a link: a record with its
// target and an empty object. An unchanged link is skipped.
func (c *Client) storeLink(ctx context.Context, path, key string, fi os.FileInfo) (*StoreResult, error) {
	target, err := os.Readlink(path)
	if err != nil {
		return nil, fmt.Errorf("zstor store: %w", err)
	}
	old, mk, err := c.getRecord(ctx, key)
	if err != nil && !errors.Is(err, ErrNotStored) {
		return nil, fmt.Errorf("zstor store %s: %w", path, err)
	}
	if errors.Is(err, ErrNotStored) && c.foreignRecords(ctx) {
		return nil, fmt.Errorf("zstor store %s: the metadata store holds records this config's key cannot decrypt: wrong encryption key? (refusing to store)", path)
	}
	if old != nil && old.Link == target {
		return &StoreResult{Key: key, Checksum: old.Object.Checksum, Chunks: len(old.Object.Chunks), Skipped: true}, nil
	}
	p := c.newPlacer(ctx, false, c.degradedFloor())
	var locations [][]Location
	obj, err := c.enc.Encode(ctx, strings.NewReader(""), func(ctx context.Context, ch *pipeline.EncodedChunk) error {
		locs, err := p.write(ctx, c.cfg.MinimalShards, c.cfg.ExpectedShards, ch.Shards, nil)
		if err != nil {
			return err
		}
		locations = append(locations, locs)
		return nil
	})
	if err != nil {
		p.cleanup(ctx)
		return nil, fmt.Errorf("zstor store %s: %w", path, err)
	}
	rec := &Record{Key: key, Stored: time.Now(), ModTime: fi.ModTime(), Link: target, Object: obj, Locations: locations}
	if err := c.putRecord(ctx, mk, rec); err != nil {
		if c.undoCommit(ctx, key, mk, old, obj) {
			p.cleanup(ctx)
		}
		return nil, fmt.Errorf("zstor store %s: commit metadata: %w", path, err)
	}
	if old != nil {
		if n := c.freeShards(ctx, shardsOf(old)); n > 0 {
			c.log.Warn("zstor: some shards of the replaced version could not be freed", slog.String("key", key), slog.Int("shards", n))
		}
	}
	return &StoreResult{Key: key, Checksum: obj.Checksum, Chunks: len(obj.Chunks), Replaced: old != nil}, nil
}

// removeSame deletes path only while it still names the open file f (whose
// content the caller verified): a file renamed over path meanwhile holds
// content that was never stored, and is kept.
func removeSame(path string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("zstor store: verify before deleting: %w", err)
	}
	now, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("zstor store: verify before deleting: %w", err)
	}
	if !os.SameFile(fi, now) {
		return fmt.Errorf("zstor store: %s was replaced during the upload; not deleted (store it again)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("zstor store: delete local file: %w", err)
	}
	return nil
}

// undoCommit handles a failed commit of obj's record under mk: the write
// may have reached some metadata backends, and may so still surface. It
// reads the record again and, only while it still shows the previous state
// (old, or no record), writes that state again with a newer version, and
// reports that the new shards may be freed. Any other record is left alone
// and the new shards are kept (garbage at worst): our own record means the
// write landed after all; another one means a store, delete or rebuild
// committed meanwhile and may have freed old's shards, so putting old back
// would bring back a record naming freed shards over a newer version. So is
// everything kept when the record cannot be read.
func (c *Client) undoCommit(ctx context.Context, key, mk string, old *Record, obj *pipeline.Object) bool {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	keep := func(why string) bool {
		c.log.Warn("zstor: metadata commit failed and was not undone; the new shards are kept in case the record survives",
			slog.String("key", key), slog.String("why", why))
		return false
	}
	sealed, err := c.meta.Get(uctx, mk)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		if old != nil {
			return keep("the object was deleted meanwhile")
		}
		err = c.meta.Delete(uctx, mk)
	case err != nil:
		return keep(err.Error())
	default:
		// Not :=, which would shadow err and so hide a failed
		// write-back of old below (its shards would then be freed).
		var cur *Record
		cur, err = c.openRecord(mk, sealed)
		switch {
		case err != nil:
			return keep(err.Error())
		case cur.Object.ID == obj.ID:
			return keep("the record was written after all")
		case old == nil || !sameVersion(cur, old):
			return keep("the object was changed meanwhile")
		}
		err = c.putRecord(uctx, mk, old)
	}
	if err != nil {
		return keep(err.Error())
	}
	return true
}

// fileChecksum is the whole-file checksum the pipeline records (BLAKE3-256).
func fileChecksum(r io.Reader) (pipeline.Checksum, error) {
	h := blake3.New()
	var sum pipeline.Checksum
	if _, err := io.Copy(h, r); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}

// LocalChecksum returns the checksum of a local file as Check would print
// it once stored. Like Store, it refuses anything but a regular file, and
// never blocks opening one (a FIFO put in place of a file).
func LocalChecksum(path string) (pipeline.Checksum, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return pipeline.Checksum{}, err
	}
	defer f.Close()
	return fileChecksum(f)
}

type progressReader struct {
	r  io.Reader
	fn func(int)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(n)
	}
	return n, err
}
