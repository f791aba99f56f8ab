package zstor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/zeebo/blake3"

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
	// file is consumed.
	Progress func(n int)
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zstor store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("zstor store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("zstor store: %s is not a regular file", path)
	}

	old, mk, err := c.getRecord(ctx, key)
	if err != nil && !errors.Is(err, ErrNotStored) {
		return nil, fmt.Errorf("zstor store %s: %w", path, err)
	}
	if errors.Is(err, ErrNotStored) && c.foreignRecords(ctx) {
		return nil, fmt.Errorf("zstor store %s: the metadata store holds records this config's key cannot decrypt: wrong encryption key? (refusing to store)", path)
	}
	if old != nil && old.Object.Size == fi.Size() {
		sum, err := fileChecksum(f)
		if err != nil {
			return nil, fmt.Errorf("zstor store: %w", err)
		}
		if sum == old.Object.Checksum {
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
	atLeast := c.cfg.MinStoreShards
	if atLeast >= c.cfg.ExpectedShards {
		atLeast = 0 // degraded stores turned off
	}
	p := c.newPlacer(ctx, false, atLeast)
	var locations [][]Location
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	if opts.Progress != nil {
		r = &progressReader{r: r, fn: opts.Progress}
	}
	obj, err := c.enc.Encode(ctx, r, func(ctx context.Context, ch *pipeline.EncodedChunk) error {
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
	rec := &Record{Key: key, Stored: time.Now(), ModTime: fi.ModTime(), Object: obj, Locations: locations}
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
// it once stored.
func LocalChecksum(path string) (pipeline.Checksum, error) {
	f, err := os.Open(path)
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
