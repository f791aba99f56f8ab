package zstor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"qss/zstor/meta"
	"qss/zstor/pipeline"
)

// Check returns the stored whole-file checksum of the object key
// (ErrNotStored when there is none).
func (c *Client) Check(ctx context.Context, key string) (pipeline.Checksum, error) {
	rec, _, err := c.getRecord(ctx, key)
	if err != nil {
		return pipeline.Checksum{}, fmt.Errorf("zstor check: %w", err)
	}
	return rec.Object.Checksum, nil
}

// Stat returns the record of an object key.
func (c *Client) Stat(ctx context.Context, key string) (*Record, error) {
	rec, _, err := c.getRecord(ctx, key)
	return rec, err
}

// Delete removes the object's record, then frees every shard it named.
// The record goes first so that a crash or a failure in between never
// leaves a record that claims shards already freed: the worst case is
// unreferenced shards. Shards on unreachable backends cannot be freed;
// their number is returned (they are unreferenced garbage from then on).
func (c *Client) Delete(ctx context.Context, key string) (leaked int, err error) {
	rec, mk, err := c.getRecord(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("zstor delete: %w", err)
	}
	if err := c.meta.Delete(ctx, mk); err != nil {
		return 0, fmt.Errorf("zstor delete %q: remove metadata: %w", key, err)
	}
	return c.freeShards(ctx, shardsOf(rec)), nil
}

// Entry is one stored object as List reports it.
type Entry struct {
	Key      string
	Size     int64
	Stored   time.Time
	Checksum pipeline.Checksum
	Chunks   int
	K, N     int
	// MinShards is, over the object's chunks, the fewest shards that sit on
	// distinct backends reachable right now (N when fully healthy; below K
	// the object cannot be read until backends come back). Two shards on
	// one backend under two spellings count once.
	MinShards int
	// Placement is, per chunk, the IDs of the backends its shards are
	// recorded on ("" for a shard with none): what the daemon needs to
	// recompute MinShards when a backend's reachability changes, without
	// reading the metadata again.
	Placement [][]string `json:"-"`
}

// Census is every object record under a prefix, as the daemon's metrics
// count them: the entries this key opens, and the records it could not
// count as entries.
type Census struct {
	Entries []Entry
	// Foreign records exist but do not open with this config's key.
	Foreign int
	// Unreadable records are listed but could not be read (metadata
	// unavailable, or a record the store refuses).
	Unreadable int
}

// Objects is every record the census found, readable or not.
func (c Census) Objects() int { return len(c.Entries) + c.Foreign + c.Unreadable }

// List returns the objects whose key starts with prefix, sorted by key,
// and how many records could not be decrypted with this config's key. A
// record that cannot be read fails the whole list (see Census for a count
// that goes on).
func (c *Client) List(ctx context.Context, prefix string) ([]Entry, int, error) {
	cs, err := c.list(ctx, prefix, false)
	if err != nil {
		return nil, 0, err
	}
	return cs.Entries, cs.Foreign, nil
}

// Census is List for monitoring: a record that cannot be read is counted
// (Census.Unreadable) instead of failing the list, so that one bad record
// does not hide every other object from the metrics. It fails only when
// the keys cannot be listed.
func (c *Client) Census(ctx context.Context) (Census, error) {
	return c.list(ctx, "", true)
}

func (c *Client) list(ctx context.Context, prefix string, tolerant bool) (Census, error) {
	reachable := map[string]bool{}
	for _, h := range c.health(ctx) {
		if h.Reachable {
			reachable[h.Backend.ID()] = true
		}
	}
	var keys []string
	for k, err := range c.meta.Keys(ctx, "") {
		if err != nil {
			return Census{}, fmt.Errorf("zstor list: %w", err)
		}
		keys = append(keys, k)
	}
	var (
		mu         sync.Mutex
		out        []Entry
		foreign    int
		unreadable int
		firstErr   error
		wg         sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for _, mk := range keys {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sealed, err := c.meta.Get(ctx, mk)
			if errors.Is(err, meta.ErrUnauthentic) {
				mu.Lock()
				foreign++
				mu.Unlock()
				return
			}
			if err != nil {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, meta.ErrNotFound) {
					mu.Lock()
					unreadable++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
				return
			}
			rec, err := c.openRecord(mk, sealed)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				foreign++
				return
			}
			if !strings.HasPrefix(rec.Key, prefix) {
				return
			}
			minShards := rec.Object.N
			placement := make([][]string, len(rec.Locations))
			for i, locs := range rec.Locations {
				distinct := map[string]bool{}
				placement[i] = make([]string, len(locs))
				for j, l := range locs {
					placement[i][j] = l.Backend
					if l.Backend != "" && reachable[l.Backend] {
						distinct[c.locIdentity(l)] = true
					}
				}
				minShards = min(minShards, len(distinct))
			}
			out = append(out, Entry{Key: rec.Key, Size: rec.Object.Size, Stored: rec.Stored, Checksum: rec.Object.Checksum,
				Chunks: len(rec.Object.Chunks), K: rec.Object.K, N: rec.Object.N, MinShards: minShards, Placement: placement})
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Census{}, fmt.Errorf("zstor list: %w", err)
	}
	if firstErr != nil && !tolerant {
		return Census{}, fmt.Errorf("zstor list: %w", firstErr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return Census{Entries: out, Foreign: foreign, Unreadable: unreadable}, nil
}

// ShardProblem is a shard that is missing or fails verification.
type ShardProblem struct {
	Key     string
	Chunk   uint64
	Shard   int
	Backend string // "" when the record names none
	Err     string
}

func (p ShardProblem) String() string {
	return fmt.Sprintf("%s chunk %d shard %d on %s: %s", p.Key, p.Chunk, p.Shard, p.Backend, p.Err)
}

// fetchAll reads and verifies every shard of a chunk concurrently. good[i]
// is shard i when it verified, nil otherwise.
func (c *Client) fetchAll(ctx context.Context, dec *pipeline.Decoder, key string, ch *pipeline.ChunkMeta, locs []Location) ([][]byte, []ShardProblem) {
	good := make([][]byte, len(locs))
	var (
		mu       sync.Mutex
		problems []ShardProblem
		wg       sync.WaitGroup
	)
	report := func(i int, err string) {
		mu.Lock()
		problems = append(problems, ShardProblem{Key: key, Chunk: ch.Index, Shard: i, Backend: locs[i].Backend, Err: err})
		mu.Unlock()
	}
	for i, l := range locs {
		if l.Backend == "" {
			report(i, "no copy recorded")
			continue
		}
		b := c.backends.Lookup(l.Backend)
		if b == nil {
			report(i, "backend no longer in the config")
			continue
		}
		wg.Go(func() {
			data, err := b.Get(ctx, l.Seq)
			if err == nil {
				err = dec.VerifyShard(ch.Index, i, data)
			}
			if err != nil {
				report(i, err.Error())
				return
			}
			good[i] = data
		})
	}
	wg.Wait()
	sort.Slice(problems, func(i, j int) bool { return problems[i].Shard < problems[j].Shard })
	return good, problems
}

// locIdentity is the backend identity of a shard location (see canonID);
// a backend no longer in the config is its recorded ID.
func (c *Client) locIdentity(l Location) string {
	if b := c.backends.Lookup(l.Backend); b != nil {
		return c.canonID(b)
	}
	return l.Backend
}

// Doubled reports whether two shards of a chunk of rec sit on one backend
// (under two configured spellings of it).
func (c *Client) Doubled(rec *Record) bool {
	for _, locs := range rec.Locations {
		seen := map[string]bool{}
		for _, l := range locs {
			if l.Backend == "" {
				continue
			}
			id := c.locIdentity(l)
			if seen[id] {
				return true
			}
			seen[id] = true
		}
	}
	return false
}

// doubledShards finds the shards of a chunk that sit on a backend already
// holding another of its shards under another spelling (records written
// before spellings were merged): all but the first are reported, and
// dropped from good, so that rebuild moves them to distinct backends.
func (c *Client) doubledShards(key string, chunk uint64, locs []Location, good [][]byte) []ShardProblem {
	var out []ShardProblem
	seen := map[string]int{}
	for i, l := range locs {
		if l.Backend == "" || good[i] == nil {
			continue
		}
		id := c.locIdentity(l)
		if j, dup := seen[id]; dup {
			good[i] = nil
			out = append(out, ShardProblem{Key: key, Chunk: chunk, Shard: i, Backend: l.Backend,
				Err: fmt.Sprintf("same backend as shard %d (%s)", j, locs[j].Backend)})
			continue
		}
		seen[id] = i
	}
	return out
}

// ScrubReport is the result of Scrub.
type ScrubReport struct {
	Objects  int
	Shards   int            // shards checked
	Problems []ShardProblem // missing or corrupt shards
	Errors   []string       // objects that could not be scrubbed at all
}

// records calls fn for every record this key opens (in key order).
func (c *Client) records(ctx context.Context, fn func(mk string, rec *Record) error) error {
	var keys []string
	for k, err := range c.meta.Keys(ctx, "") {
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, mk := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		sealed, err := c.meta.Get(ctx, mk)
		if err != nil {
			continue // deleted meanwhile, or unavailable: reported by the next operation
		}
		rec, err := c.openRecord(mk, sealed)
		if err != nil {
			continue // another key's record
		}
		if err := fn(mk, rec); err != nil {
			return err
		}
	}
	return nil
}

// Scrub reads every shard of every object and verifies it against its
// checksum, reporting the missing and corrupt ones. It changes nothing.
func (c *Client) Scrub(ctx context.Context) (*ScrubReport, error) {
	rep := &ScrubReport{}
	err := c.records(ctx, func(mk string, rec *Record) error {
		rep.Objects++
		dec, err := pipeline.NewDecoder(c.cfg.Encryption.Key, rec.Object, pipeline.DecoderOptions{Logger: c.log})
		if err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", rec.Key, err))
			return nil
		}
		for ci := range rec.Object.Chunks {
			good, problems := c.fetchAll(ctx, dec, rec.Key, &rec.Object.Chunks[ci], rec.Locations[ci])
			problems = append(problems, c.doubledShards(rec.Key, uint64(ci), rec.Locations[ci], good)...)
			rep.Shards += len(rec.Locations[ci])
			rep.Problems = append(rep.Problems, problems...)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("zstor scrub: %w", err)
	}
	return rep, nil
}

// RebuildResult describes the repair of one object.
type RebuildResult struct {
	Key     string
	Rebuilt int // shards re-created
	Chunks  int // chunks that needed it
}

// Rebuild re-creates the missing and corrupt shards of the object key on
// healthy backends (keeping the placement rules when possible, else at
// least distinct backends), commits the updated record, and then frees the
// corrupt copies. The object stays readable throughout: the old record
// stays valid until the new one is committed.
func (c *Client) Rebuild(ctx context.Context, key string) (*RebuildResult, error) {
	rec, mk, err := c.getRecord(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("zstor rebuild: %w", err)
	}
	return c.rebuild(ctx, mk, rec)
}

func (c *Client) rebuild(ctx context.Context, mk string, rec *Record) (*RebuildResult, error) {
	res := &RebuildResult{Key: rec.Key}
	obj := rec.Object
	dec, err := pipeline.NewDecoder(c.cfg.Encryption.Key, obj, pipeline.DecoderOptions{Logger: c.log})
	if err != nil {
		return nil, fmt.Errorf("zstor rebuild %q: %w", rec.Key, err)
	}
	p := c.newPlacer(ctx, true, 0)
	newLocs := make([][]Location, len(rec.Locations))
	var freeAfter []ownedShard
	for ci := range obj.Chunks {
		locs := rec.Locations[ci]
		newLocs[ci] = locs
		good, problems := c.fetchAll(ctx, dec, rec.Key, &obj.Chunks[ci], locs)
		problems = append(problems, c.doubledShards(rec.Key, uint64(ci), locs, good)...)
		if len(problems) == 0 {
			continue
		}
		out, rebuilt, err := dec.RebuildShards(uint64(ci), good)
		if err != nil {
			p.cleanup(ctx)
			return nil, fmt.Errorf("zstor rebuild %q: chunk %d: %d of %d shards left: %w", rec.Key, ci, obj.N-len(problems), obj.N, err)
		}
		toWrite := make([][]byte, obj.N)
		for _, i := range rebuilt {
			toWrite[i] = out[i]
			if locs[i].Backend != "" {
				freeAfter = append(freeAfter, ownedShard{Location: locs[i], obj: obj.ID, chunk: uint64(ci), index: i})
			}
		}
		nl, err := p.write(ctx, obj.K, obj.N, toWrite, locs)
		if err != nil {
			p.cleanup(ctx)
			return nil, fmt.Errorf("zstor rebuild %q: chunk %d: %w", rec.Key, ci, err)
		}
		newLocs[ci] = nl
		res.Chunks++
		res.Rebuilt += len(rebuilt)
	}
	if res.Rebuilt == 0 {
		return res, nil
	}
	// The record read at the start may have been replaced (a new version
	// stored, which freed the shards it names) or deleted while the shards
	// were rebuilt: committing it then would bring back a record naming
	// freed shards, over the newer one. Read it again right before the
	// commit and give up when it changed. (The metadata stores have no
	// compare-and-set, so a commit landing between this read and ours is
	// still possible, in a window of one metadata round trip instead of a
	// whole rebuild.)
	cur, err := c.meta.Get(ctx, mk)
	if err == nil {
		var now *Record
		if now, err = c.openRecord(mk, cur); err == nil && !sameVersion(now, rec) {
			err = errors.New("the object was stored again or repaired meanwhile; run it again")
		}
	} else if errors.Is(err, meta.ErrNotFound) {
		err = fmt.Errorf("%w for %q: deleted meanwhile", ErrNotStored, rec.Key)
	}
	if err != nil {
		p.cleanup(ctx)
		return nil, fmt.Errorf("zstor rebuild %q: not committed: %w", rec.Key, err)
	}
	rec.Locations = newLocs
	if err := c.putRecord(ctx, mk, rec); err != nil {
		// The new shards are left alone: the record may have reached some
		// metadata backends and name them.
		return nil, fmt.Errorf("zstor rebuild %q: commit metadata: %w", rec.Key, err)
	}
	var reachable []ownedShard
	for _, s := range freeAfter {
		if b := c.backends.Lookup(s.Backend); b != nil && !b.Down() {
			reachable = append(reachable, s)
		}
	}
	c.freeShards(ctx, reachable)
	c.log.Info("zstor: rebuilt", slog.String("key", rec.Key), slog.Int("shards", res.Rebuilt))
	return res, nil
}

// RepairReport is the result of Repair.
type RepairReport struct {
	Objects  int
	Repaired []RebuildResult // objects that needed shards re-created
	Errors   []string        // objects that could not be repaired
}

// Repair rebuilds every object whose key starts with prefix that lost
// shards, restoring full redundancy.
func (c *Client) Repair(ctx context.Context, prefix string) (*RepairReport, error) {
	rep := &RepairReport{}
	err := c.records(ctx, func(mk string, rec *Record) error {
		if !strings.HasPrefix(rec.Key, prefix) {
			return nil
		}
		rep.Objects++
		res, err := c.rebuild(ctx, mk, rec)
		switch {
		case err != nil:
			rep.Errors = append(rep.Errors, err.Error())
		case res.Rebuilt > 0:
			rep.Repaired = append(rep.Repaired, *res)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("zstor repair: %w", err)
	}
	return rep, nil
}

// sameVersion reports whether two records describe the same object with
// the same shard locations.
func sameVersion(a, b *Record) bool {
	if a.Object.ID != b.Object.ID || len(a.Locations) != len(b.Locations) {
		return false
	}
	for ci := range a.Locations {
		if !slices.Equal(a.Locations[ci], b.Locations[ci]) {
			return false
		}
	}
	return true
}
