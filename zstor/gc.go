package zstor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"qss/zstor/backend"
	"qss/zstor/meta"
	"qss/zstor/pipeline"
)

// DefaultGCGrace is the grace period of GC when none is given: shards
// younger than this are never collected. It must exceed the longest store
// or repair, which write shards before committing the record naming them.
const DefaultGCGrace = 24 * time.Hour

// ErrGCRefused is wrapped by the errors of a GC that refused to delete
// anything because it could not tell garbage from live shards.
var ErrGCRefused = errors.New("garbage collection refused")

// GCOptions tune a garbage collection.
type GCOptions struct {
	// Grace keeps every shard written less than Grace ago, by its
	// backend's clock (0: DefaultGCGrace).
	Grace time.Duration
	// DryRun finds the garbage but deletes nothing.
	DryRun bool
	// Pause is slept before each shard inspected, to keep a background
	// collection slow (0: none).
	Pause time.Duration
}

// GCReport is the result of GC.
type GCReport struct {
	Backends   int      // backends scanned (spellings of one backend count once)
	Skipped    []string // backends not scanned, and why
	Records    int      // metadata records read
	Shards     int      // values listed on the scanned backends
	Young      int      // kept: written within the grace period
	Referenced int      // kept: named by a record
	Foreign    int      // kept: not a shard of this key (it does not verify), or rewritten since the scan
	Garbage    int      // unreferenced shards of this key older than the grace period
	Deleted    int      // garbage deleted (0 with DryRun)
	Bytes      int64    // bytes of the garbage
	Errors     []string // shards that could not be inspected or deleted
}

// scanned is what GC listed on one backend.
type scanned struct {
	b     *backend.Backend
	id    string                // canonID
	old   []backend.StoredShard // values older than the grace period
	total int
}

// GC deletes shards that no metadata record names: left by crashes between
// writing shards and committing, by failed frees, by stores that failed
// and could not clean up. It is safe against stores, repairs and deletes
// running at the same time:
//
//  1. every backend is scanned first, and only values written more than
//     Grace before the scan (by the backend's own clock) are candidates;
//  2. then every record is read: a store or repair that wrote a candidate
//     and commits after this read took longer than Grace;
//  3. a candidate no record names is read and kept unless its checksum
//     verifies under this config's master key (so shards of other keys or
//     deployments sharing a backend, and unknown values, are never
//     touched), and unless its write time is still the one the scan saw —
//     a backend wiped and restarted at the same address restarts its ids,
//     and the same id may now hold a newer shard.
//
// It refuses (ErrGCRefused) when a record cannot be read or opened with
// this config's key (its shards would look unreferenced), and when the
// metadata store holds no record at all while backends hold shards of this
// key (lost metadata, which the shards could rebuild).
func (c *Client) GC(ctx context.Context, o GCOptions) (*GCReport, error) {
	grace := o.Grace
	if grace <= 0 {
		grace = DefaultGCGrace
	}
	rep := &GCReport{}

	// 1. Scan, once per distinct backend.
	var classes []*scanned
	seen := map[string]bool{}
	members := map[string][]*backend.Backend{}
	for _, b := range c.backends.All() {
		id := c.canonID(b)
		members[id] = append(members[id], b)
		if !seen[id] {
			seen[id] = true
			classes = append(classes, &scanned{id: id})
		}
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	sem := make(chan struct{}, 4)
	for _, s := range classes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var why error
			for _, b := range members[s.id] {
				if why = c.scanBackend(ctx, b, grace, s); why == nil {
					s.b = b
					return
				}
			}
			mu.Lock()
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: %v", s.id, why))
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("zstor gc: %w", err)
	}

	// 2. Read every record, after the scans.
	refs := map[string]map[uint64]bool{}
	var keys []string
	for k, err := range c.meta.Keys(ctx, "") {
		if err != nil {
			return rep, fmt.Errorf("zstor gc: list records: %w", err)
		}
		keys = append(keys, k)
	}
	for _, mk := range keys {
		sealed, err := c.meta.Get(ctx, mk)
		if errors.Is(err, meta.ErrNotFound) {
			continue // deleted meanwhile: its shards are garbage now
		}
		if err != nil {
			return rep, fmt.Errorf("zstor gc: %w: read record %s: %w", ErrGCRefused, mk, err)
		}
		rec, err := c.openRecord(mk, sealed)
		if err != nil {
			return rep, fmt.Errorf("zstor gc: %w: record %s cannot be opened with this config's key (%v); its shards would look unreferenced", ErrGCRefused, mk, err)
		}
		rep.Records++
		for _, locs := range rec.Locations {
			for _, l := range locs {
				if l.Backend == "" {
					continue
				}
				id := c.locIdentity(l)
				if refs[id] == nil {
					refs[id] = map[uint64]bool{}
				}
				refs[id][l.Seq] = true
			}
		}
	}

	// 3. Inspect and delete the unreferenced candidates.
	for _, s := range classes {
		if s.b == nil {
			continue
		}
		rep.Backends++
		rep.Shards += s.total
		rep.Young += s.total - len(s.old)
		for _, sh := range s.old {
			if refs[s.id][sh.Seq] {
				rep.Referenced++
				continue
			}
			if err := c.collect(ctx, s.b, sh, o, rep); err != nil {
				return rep, err
			}
		}
	}
	sort.Strings(rep.Skipped)
	return rep, nil
}

// scanBackend lists b's values into s, keeping those older than grace.
func (c *Client) scanBackend(ctx context.Context, b *backend.Backend, grace time.Duration, s *scanned) error {
	now, err := b.Now(ctx)
	if err != nil {
		return err
	}
	cutoff := now.Add(-grace)
	s.old, s.total = nil, 0
	for sh, err := range b.Scan(ctx) {
		if err != nil {
			return err
		}
		s.total++
		if sh.Time.Before(cutoff) {
			s.old = append(s.old, sh)
		}
	}
	return nil
}

// collect inspects one unreferenced candidate and deletes it when it is a
// shard of this key unchanged since the scan. Only a cancelled ctx or a
// refusal is returned; other failures are noted in rep.
func (c *Client) collect(ctx context.Context, b *backend.Backend, sh backend.StoredShard, o GCOptions, rep *GCReport) error {
	if o.Pause > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(o.Pause):
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("zstor gc: %w", err)
	}
	note := func(err error) { rep.Errors = append(rep.Errors, err.Error()) }
	data, err := b.Get(ctx, sh.Seq)
	if errors.Is(err, backend.ErrNotFound) {
		return nil // freed meanwhile
	}
	if err != nil {
		note(err)
		return nil
	}
	h, _, err := pipeline.InspectShard(c.cfg.Encryption.Key, data)
	if err != nil {
		rep.Foreign++
		return nil
	}
	if rep.Records == 0 {
		return fmt.Errorf("zstor gc: %w: the metadata store holds no record, yet %s holds shards of this key (object %s): lost metadata? (the shards could rebuild it)",
			ErrGCRefused, b, h.ObjectID)
	}
	t, err := b.ShardTime(ctx, sh.Seq)
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	if err != nil {
		note(err)
		return nil
	}
	if !t.Equal(sh.Time) {
		rep.Foreign++ // rewritten since the scan: a wiped backend reusing ids
		return nil
	}
	rep.Garbage++
	rep.Bytes += int64(len(data))
	if o.DryRun {
		return nil
	}
	if err := b.Delete(ctx, sh.Seq); err != nil {
		note(err)
		return nil
	}
	rep.Deleted++
	c.log.Debug("zstor gc: deleted", slog.String("backend", b.String()), slog.Uint64("seq", sh.Seq),
		slog.String("object", h.ObjectID.String()), slog.Uint64("chunk", h.ChunkIndex), slog.Int("shard", h.ShardIndex))
	return nil
}
