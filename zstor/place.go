package zstor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"qss/zstor/backend"
	"qss/zstor/pipeline"
	"qss/zstor/placement"
)

// healthTTL is how long a health snapshot of the data backends is reused
// for placement decisions (failures seen meanwhile are taken into account
// at once through placer.bad and Backend.Down).
const healthTTL = 5 * time.Second

type healthCache struct {
	mu   sync.Mutex
	at   time.Time
	snap []backend.Health
}

func (c *Client) health(ctx context.Context) []backend.Health {
	c.hc.mu.Lock()
	defer c.hc.mu.Unlock()
	if c.hc.snap == nil || time.Since(c.hc.at) > healthTTL {
		snap := c.healthAll(ctx)
		if ctx.Err() != nil {
			// The calls were cut short by the caller, not by the
			// backends: this snapshot says nothing for the others.
			return snap
		}
		c.hc.snap = snap
		c.hc.at = time.Now()
	}
	return c.hc.snap
}

// placer places the shards of one operation (a store or a repair): it
// starts from a health snapshot, keeps an estimate of each backend's free
// space as it writes, and excludes for the rest of the operation any
// backend a write failed on.
type placer struct {
	c      *Client
	mu     sync.Mutex
	usable []bool
	free   []int64
	bad    map[string]bool
	relax  bool // fall back to "distinct backends only" when the group rules cannot be met
	// atLeast > 0 allows degraded writes: when not every shard fits on
	// the usable backends, write as many as fit, but at least atLeast per
	// chunk; the others stay without a copy for repair to write later.
	atLeast int
	written []Location
}

func (c *Client) newPlacer(ctx context.Context, relax bool, atLeast int) *placer {
	h := c.health(ctx)
	p := &placer{c: c, usable: make([]bool, len(h)), free: make([]int64, len(h)), bad: map[string]bool{}, relax: relax, atLeast: atLeast}
	for i, hh := range h {
		p.usable[i] = hh.Usable()
		p.free[i] = hh.Free()
	}
	return p
}

func (p *placer) candidates(shardSize int) []placement.Candidate {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []placement.Candidate
	for i, b := range p.c.backends.All() {
		if !p.usable[i] || p.bad[p.c.canonID(b)] || b.Down() {
			continue
		}
		if p.free[i] >= 0 && p.free[i] < int64(shardSize) {
			continue
		}
		out = append(out, placement.Candidate{Index: i, ID: p.c.canonID(b), Group: b.Group, Free: p.free[i]})
	}
	return out
}

// fixedOf returns the placement candidates of backends already holding
// shards (those still in the config).
func (p *placer) fixedOf(locs []Location, skip map[int]bool) []placement.Candidate {
	var out []placement.Candidate
	for i, l := range locs {
		if l.Backend == "" || skip[i] {
			continue
		}
		if b := p.c.backends.Lookup(l.Backend); b != nil {
			out = append(out, placement.Candidate{Index: b.Index, ID: p.c.canonID(b), Group: b.Group})
		} else {
			out = append(out, placement.Candidate{Index: -1, ID: l.Backend, Group: -1 - i})
		}
	}
	return out
}

// place chooses backends for want shards on top of fixed: a valid
// placement when one exists; else, for a repair, one on distinct backends
// only (relax); else, for a degraded write (atLeast > 0), as many as fit.
// Degraded writes are allowed only when the rules can be met by the
// configured backends when all are usable: a config whose rules can never be
// met is an error, not a reason to store every object degraded.
func (p *placer) place(k, n int, cands, fixed []placement.Candidate, want int) ([]int, error) {
	rules := p.c.rules(k, n)
	if total := len(fixed) + want; total < n && p.atLeast > 0 {
		// Already degraded (shards left out earlier in this write): place
		// the rest under the rules for that many shards, or fewer.
		rules.N = total
		return placement.PlaceAtLeast(rules, cands, fixed, want, p.atLeast)
	}
	picks, err := placement.Place(rules, cands, fixed, want)
	if errors.Is(err, placement.ErrImpossible) && p.relax {
		p.c.log.Warn("zstor: group rules cannot be met, placing on distinct backends only", slog.String("err", err.Error()))
		picks, err = placement.Place(placement.Rules{K: k, N: n}, cands, fixed, want)
	}
	if errors.Is(err, placement.ErrImpossible) && p.atLeast > 0 && p.c.rulesMet(rules) {
		picks, err = placement.PlaceAtLeast(rules, cands, fixed, want, p.atLeast)
		if err == nil {
			p.c.log.Warn("zstor: not enough usable backends for every shard; writing degraded (repair adds the missing shards when backends return)",
				slog.Int("shards", len(fixed)+len(picks)), slog.Int("n", n))
		}
	}
	return picks, err
}

// rulesMet reports whether the placement rules can be met with every
// configured backend usable.
func (c *Client) rulesMet(r placement.Rules) bool {
	var all []placement.Candidate
	for _, b := range c.backends.All() {
		all = append(all, placement.Candidate{Index: b.Index, ID: c.canonID(b), Group: b.Group})
	}
	_, err := placement.Place(r, all, nil, r.N)
	return err == nil
}

// write stores shards[i] for every i with a non-nil shard, on backends
// chosen so that, together with the backends in held (the other shards of
// the chunk), the placement rules hold. A failed write excludes its backend
// and the shard is placed again elsewhere. It returns the locations of all
// n shards (held ones included). A degraded write (see place) leaves the
// highest-indexed shards (parity first) without a location.
func (p *placer) write(ctx context.Context, k, n int, shards [][]byte, held []Location) ([]Location, error) {
	locs := make([]Location, n)
	copy(locs, held)
	var todo []int
	shardSize := 0
	for i, s := range shards {
		if s != nil {
			todo = append(todo, i)
			locs[i] = Location{}
			shardSize = len(s)
		}
	}
	var lastErr error
	for len(todo) > 0 {
		pending := map[int]bool{}
		for _, i := range todo {
			pending[i] = true
		}
		fixed := p.fixedOf(locs, pending)
		cands := p.candidates(shardSize)
		picks, err := p.place(k, n, cands, fixed, len(todo))
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (after: %v)", err, lastErr)
			}
			return nil, err
		}
		todo = todo[:len(picks)] // degraded: the rest get no copy
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			failed []int
		)
		for j, i := range todo {
			b := p.c.backends.All()[picks[j]]
			wg.Go(func() {
				// Not cancelled with ctx: a write the backend may
				// already have applied must report its id, or
				// cleanup could not free it (Put is bounded by the
				// backend's I/O timeout).
				seq, err := b.Put(context.WithoutCancel(ctx), shards[i])
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, i)
					lastErr = err
					p.mu.Lock()
					p.bad[p.c.canonID(b)] = true
					p.mu.Unlock()
					return
				}
				loc := Location{Backend: b.ID(), Seq: seq}
				locs[i] = loc
				p.mu.Lock()
				p.written = append(p.written, loc)
				if p.free[b.Index] >= 0 {
					p.free[b.Index] -= int64(len(shards[i]))
				}
				p.mu.Unlock()
			})
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		todo = failed
	}
	return locs, nil
}

// cleanup deletes every shard this placer wrote (best effort), after a
// failed operation.
func (p *placer) cleanup(ctx context.Context) {
	p.mu.Lock()
	written := p.written
	p.written = nil
	p.mu.Unlock()
	p.c.deleteShards(ctx, written)
}

// ownedShard is a recorded shard to free: its location and which shard
// of which object the record says is there.
type ownedShard struct {
	Location
	obj   pipeline.ObjectID
	chunk uint64
	index int
}

// shardsOf lists the recorded shards of rec (those with a copy).
func shardsOf(rec *Record) []ownedShard {
	var out []ownedShard
	for ci, locs := range rec.Locations {
		for i, l := range locs {
			if l.Backend != "" {
				out = append(out, ownedShard{Location: l, obj: rec.Object.ID, chunk: uint64(ci), index: i})
			}
		}
	}
	return out
}

// freeShards frees recorded shards (a replaced version's, a deleted
// object's, a repaired object's bad copies), best effort and concurrently,
// each only after reading it back and finding a header that claims to be
// that shard (object id, chunk and shard index; the checksum is not
// needed: a corrupt copy is freed too). A backend wiped and restarted at
// the same address reuses ids, so a recorded location may now hold another
// object's shard, which is kept. It returns how many could not be freed or
// were kept.
func (c *Client) freeShards(ctx context.Context, shards []ownedShard) int {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	fail := func() {
		mu.Lock()
		failed++
		mu.Unlock()
	}
	sem := make(chan struct{}, 16)
	for _, s := range shards {
		b := c.backends.Lookup(s.Backend)
		if b == nil {
			fail()
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			data, err := b.Get(ctx, s.Seq)
			if errors.Is(err, backend.ErrNotFound) {
				return
			}
			if err == nil {
				h, herr := pipeline.ParseShardHeader(data)
				if herr != nil || h.ObjectID != s.obj || h.ChunkIndex != s.chunk || h.ShardIndex != s.index {
					c.log.Warn("zstor: not freeing a recorded shard: its location holds another value (backend wiped and restarted?)",
						slog.String("backend", s.Backend), slog.Uint64("seq", s.Seq), slog.String("object", s.obj.String()))
					fail()
					return
				}
				err = b.Delete(ctx, s.Seq)
			}
			if err != nil {
				c.log.Warn("zstor: could not free shard", slog.String("backend", s.Backend), slog.Uint64("seq", s.Seq), slog.String("err", err.Error()))
				fail()
			}
		})
	}
	wg.Wait()
	return failed
}

// deleteShards frees shards this operation wrote itself (no check: the ids
// were just assigned), best effort and concurrently; it returns how many
// could not be deleted (their backend being unreachable).
func (c *Client) deleteShards(ctx context.Context, locs []Location) int {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	sem := make(chan struct{}, 16)
	for _, l := range locs {
		if l.Backend == "" {
			continue
		}
		b := c.backends.Lookup(l.Backend)
		if b == nil {
			mu.Lock()
			failed++
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := b.Delete(ctx, l.Seq); err != nil {
				c.log.Warn("zstor: could not free shard", slog.String("backend", l.Backend), slog.Uint64("seq", l.Seq), slog.String("err", err.Error()))
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}
