package daemon

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/meta"
)

// Backend states, as the health loop classifies them.
const (
	stateHealthy     = "healthy"
	stateLowSpace    = "low_space"
	stateUnreachable = "unreachable"
	stateWrongMode   = "wrong_mode" // reachable, but not a seq-mode namespace: unusable for shards
)

// state is what the loops last saw, for metrics and repair decisions.
type state struct {
	mu        sync.RWMutex
	checked   time.Time // when the last health check completed
	data      []backend.Health
	meta      []meta.BackendHealth
	status    map[string]string    // data backend ID → state
	downSince map[string]time.Time // data backend ID → first health check that found it unreachable

	redundancyKnown bool
	objects         int         // every object record at the last census, readable or not
	unreadable      int         // of which this key could not read or open
	placed          *placements // where the readable ones' shards are, at the last census
	backlog         int         // objects with fewer than N shards on reachable backends
	lowest          int         // min over objects of (shards on reachable backends − K)

	cacheKnown bool
	cacheSize  int64
	cacheLimit int64

	scrubDone     time.Time
	scrubProblems int
}

func (d *daemon) startLoops() {
	d.loops.Go(func() { d.every(d.opts.HealthInterval, d.healthWake, d.checkHealth) })
	d.loops.Go(func() { d.every(d.opts.RepairInterval, d.repairWake, d.checkRedundancy) })
	if d.opts.ScrubInterval > 0 {
		d.loops.Go(d.scrubLoop)
	}
	if d.opts.GCInterval > 0 {
		d.loops.Go(d.gcLoop)
	}
	d.loops.Go(func() { d.every(d.opts.CacheInterval, nil, d.checkCache) })
}

// every runs fn at once, then every period and whenever wakeup fires,
// until the loops stop. fn gets the current generation, held while it runs.
func (d *daemon) every(period time.Duration, wakeup chan struct{}, fn func(g *generation)) {
	d.loop(period, wakeup, true, fn)
}

// periodic runs fn every period, the first time one period after start,
// until the loops stop.
func (d *daemon) periodic(period time.Duration, fn func(g *generation)) {
	d.loop(period, nil, false, fn)
}

func (d *daemon) loop(period time.Duration, wakeup chan struct{}, now bool, fn func(g *generation)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		if now {
			g := d.acquire()
			fn(g)
			g.release()
		}
		now = true
		select {
		case <-d.loopCtx.Done():
			return
		case <-t.C:
		case <-wakeup:
		}
	}
}

// checkHealth asks every data backend for NSINFO and every metadata
// backend for PING (even those in their back-off, so that a return is seen
// at once), logs state changes, recomputes the redundancy gauges from the
// last census when a backend went down or came back, and wakes the repair
// loop then.
func (d *daemon) checkHealth(g *generation) {
	ctx, cancel := context.WithTimeout(g.ctx, d.opts.HealthTimeout)
	defer cancel()
	data := g.client.Backends().ProbeAll(ctx)
	mh := g.client.Meta().Health(ctx)
	if g.ctx.Err() != nil {
		return // superseded or stopping: the snapshot may be of cancelled calls
	}
	now := time.Now()
	changed := false
	st := &d.state
	st.mu.Lock()
	seen := map[string]bool{}
	for _, h := range data {
		id := h.Backend.ID()
		seen[id] = true
		s := d.classify(h)
		prev, known := st.status[id]
		if s == stateUnreachable {
			if _, down := st.downSince[id]; !down {
				st.downSince[id] = now
			}
		} else {
			delete(st.downSince, id)
		}
		if prev == s {
			continue
		}
		st.status[id] = s
		if known || s != stateHealthy {
			changed = changed || prev == stateUnreachable || s == stateUnreachable
			attrs := []any{slog.String("backend", h.Backend.String()), slog.String("was", prev), slog.String("now", s)}
			switch s {
			case stateHealthy:
				d.log.Info("zstor daemon: backend healthy", attrs...)
			case stateUnreachable:
				d.log.Warn("zstor daemon: backend unreachable", append(attrs, slog.Any("err", h.Err))...)
			default:
				d.log.Warn("zstor daemon: backend degraded", append(attrs, slog.Float64("usage_percent", h.UsagePercent()))...)
			}
		}
	}
	for id := range st.status {
		if !seen[id] { // left the config
			delete(st.status, id)
			delete(st.downSince, id)
			changed = true
		}
	}
	first := st.data == nil
	st.data, st.meta, st.checked = data, mh, now
	if changed || first {
		st.recomputeLocked()
	}
	st.mu.Unlock()
	if changed {
		wake(d.repairWake)
	}
}

func (d *daemon) classify(h backend.Health) string {
	switch {
	case !h.Reachable:
		return stateUnreachable
	case !h.Seq():
		return stateWrongMode
	case h.UsagePercent() >= d.opts.LowSpacePercent:
		return stateLowSpace
	}
	return stateHealthy
}

// checkRedundancy lists every object to compute the repair backlog and the
// lowest redundancy, then rebuilds the objects that can and should be
// (repairNow). Objects are rebuilt one by one with Client.Rebuild rather
// than with Client.Repair, which would read every shard of every object
// (a scrub) to find the few that lost some.
func (d *daemon) checkRedundancy(g *generation) {
	ctx := g.ctx
	cs, err := g.client.Census(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("zstor daemon: redundancy check: cannot list objects", slog.String("err", err.Error()))
		}
		return
	}
	if cs.Unreadable > 0 {
		d.log.Warn("zstor daemon: redundancy check: some object records cannot be read", slog.Int("records", cs.Unreadable))
	}
	backlog := d.noteRedundancy(g, cs)
	usable := d.usableBackends(g)
	repaired, blocked := 0, 0
	now := time.Now()
	for _, e := range backlog {
		if ctx.Err() != nil {
			return
		}
		if usable < e.N {
			blocked++ // no n distinct backends to put the shards on
			continue
		}
		if r, ok := d.repairRetry[e.Key]; ok && now.Before(r.at) {
			continue
		}
		rec, err := g.client.Stat(ctx, e.Key)
		if err != nil {
			continue // deleted meanwhile, or metadata unavailable: next round
		}
		if !d.repairNow(g, rec) {
			continue
		}
		ok, err := d.rebuild(ctx, g, e.Key, "lost shards")
		if err != nil {
			// Each failed rebuild read the whole object: back off per
			// object, up to an hour, instead of retrying every round.
			r := d.repairRetry[e.Key]
			r.delay = min(max(2*r.delay, d.opts.RepairInterval), time.Hour)
			r.at = now.Add(r.delay)
			d.repairRetry[e.Key] = r
			continue
		}
		delete(d.repairRetry, e.Key)
		if ok {
			repaired++
		}
	}
	if blocked > 0 && !d.repairBlocked {
		d.log.Warn("zstor daemon: objects lost shards but cannot be repaired: too few usable backends for n shards",
			slog.Int("objects", blocked), slog.Int("usable_backends", usable))
	}
	d.repairBlocked = blocked > 0
	if repaired > 0 {
		if cs, err := g.client.Census(ctx); err == nil {
			d.noteRedundancy(g, cs)
		}
	}
}

// usableBackends is how many distinct data backends (spellings of one
// merged) the last health check found able to take shards.
func (d *daemon) usableBackends(g *generation) int {
	d.state.mu.RLock()
	defer d.state.mu.RUnlock()
	distinct := map[string]bool{}
	for _, h := range d.state.data {
		if h.Usable() {
			distinct[g.client.BackendIdentity(h.Backend)] = true
		}
	}
	return len(distinct)
}

// noteRedundancy records a census (the object count, and the placements
// the health loop recomputes the gauges from) and returns the objects below
// full redundancy by the daemon's own health view, with MinShards set from
// it. Shards on one server under two spellings count once, as in List.
func (d *daemon) noteRedundancy(g *generation, cs zstor.Census) []zstor.Entry {
	identity := func(id string) string {
		if b := g.client.Backends().Lookup(id); b != nil {
			return g.client.BackendIdentity(b)
		}
		return id
	}
	st := &d.state
	st.mu.Lock()
	defer st.mu.Unlock()
	st.objects, st.unreadable = cs.Objects(), cs.Foreign+cs.Unreadable
	st.placed = newPlacements(cs.Entries, identity)
	mins := st.recomputeLocked()
	var backlog []zstor.Entry
	for _, e := range cs.Entries {
		if m := mins[e.Key]; m < e.N {
			e.MinShards = m
			backlog = append(backlog, e)
		}
	}
	return backlog
}

// repairNow reports whether an object below full redundancy should be
// rebuilt now: some shard of it has no copy recorded (stored degraded),
// sits on a backend that left the config, on one unreachable for
// RepairAfter, or on a backend holding another shard of the chunk under
// another spelling.
func (d *daemon) repairNow(g *generation, rec *zstor.Record) bool {
	if g.client.Doubled(rec) {
		return true
	}
	st := &d.state
	st.mu.RLock()
	defer st.mu.RUnlock()
	for _, locs := range rec.Locations {
		for _, l := range locs {
			if l.Backend == "" || g.client.Backends().Lookup(l.Backend) == nil {
				return true
			}
			if since, down := st.downSince[l.Backend]; down && time.Since(since) >= d.opts.RepairAfter {
				return true
			}
		}
	}
	return false
}

// rebuild rebuilds one object and logs and counts the outcome. It
// reports whether shards were re-created.
func (d *daemon) rebuild(ctx context.Context, g *generation, key, why string) (bool, error) {
	res, err := g.client.Rebuild(ctx, key)
	switch {
	case err != nil && errors.Is(err, zstor.ErrNotStored):
		return false, nil // deleted meanwhile
	case err != nil:
		if ctx.Err() == nil {
			d.met.repairs.WithLabelValues("error").Inc()
			d.log.Warn("zstor daemon: repair failed", slog.String("key", key), slog.String("why", why), slog.String("err", err.Error()))
		}
		return false, err
	case res.Rebuilt > 0:
		d.met.repairs.WithLabelValues("ok").Inc()
		d.log.Info("zstor daemon: repaired", slog.String("key", key), slog.String("why", why), slog.Int("shards", res.Rebuilt))
		return true, nil
	}
	return false, nil
}

// scrubLoop scrubs every ScrubInterval, the first time one interval after
// start, and rebuilds at once the objects with corrupt or missing shards
// on reachable backends (shards on unreachable ones are the repair loop's).
func (d *daemon) scrubLoop() { d.periodic(d.opts.ScrubInterval, d.scrub) }

func (d *daemon) scrub(g *generation) {
	start := time.Now()
	rep, err := g.client.Scrub(g.ctx)
	if err != nil {
		if g.ctx.Err() == nil {
			d.met.scrubs.WithLabelValues("error").Inc()
			d.log.Warn("zstor daemon: scrub failed", slog.String("err", err.Error()))
		}
		return
	}
	d.met.scrubs.WithLabelValues("ok").Inc()
	d.noteScrub(rep)
	d.log.Info("zstor daemon: scrub done", slog.Int("objects", rep.Objects), slog.Int("shards", rep.Shards),
		slog.Int("problems", len(rep.Problems)), slog.Duration("took", time.Since(start)))
	keys := map[string]bool{}
	d.state.mu.RLock()
	for _, p := range rep.Problems {
		if s, known := d.state.status[p.Backend]; !known || s != stateUnreachable {
			keys[p.Key] = true
		}
	}
	d.state.mu.RUnlock()
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if g.ctx.Err() != nil {
			return
		}
		d.rebuild(g.ctx, g, k, "scrub found bad shards") // logged and counted; a failure is retried by the next scrub
	}
	if len(sorted) > 0 {
		wake(d.repairWake)
	}
}

func (d *daemon) noteScrub(rep *zstor.ScrubReport) {
	d.state.mu.Lock()
	d.state.scrubDone = time.Now()
	d.state.scrubProblems = len(rep.Problems)
	d.state.mu.Unlock()
}

// gcLoop collects garbage shards every GCInterval, the first time one
// interval after start, slowly (GCPause per candidate).
func (d *daemon) gcLoop() { d.periodic(d.opts.GCInterval, d.gc) }

func (d *daemon) gc(g *generation) {
	start := time.Now()
	rep, err := g.client.GC(g.ctx, zstor.GCOptions{Grace: d.opts.GCGrace, Pause: d.opts.GCPause})
	if err != nil {
		if g.ctx.Err() == nil {
			d.log.Warn("zstor daemon: garbage collection failed", slog.String("err", err.Error()))
		}
		return
	}
	attrs := []any{slog.Int("deleted", rep.Deleted), slog.Int64("bytes", rep.Bytes), slog.Int("shards", rep.Shards),
		slog.Int("backends", rep.Backends), slog.Int("skipped_backends", len(rep.Skipped)), slog.Int("errors", len(rep.Errors)),
		slog.Duration("took", time.Since(start))}
	d.log.Info("zstor daemon: garbage collection done", attrs...)
}

// queueLoop starts due queued stores, QueueWorkers at a time, until ctx
// ends; then it waits for those running.
func (d *daemon) queueLoop(ctx context.Context) {
	running := map[string]bool{}
	done := make(chan string, d.opts.QueueWorkers)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for len(running) < d.opts.QueueWorkers && ctx.Err() == nil {
			j, wait := d.queue.next(time.Now(), running)
			if j == nil {
				if wait < 0 {
					wait = time.Hour
				}
				timer.Reset(wait)
				break
			}
			running[j.Path] = true
			d.jobs.Go(func() {
				d.runJob(*j)
				done <- j.Path
			})
		}
		select {
		case <-ctx.Done():
			for len(running) > 0 {
				delete(running, <-done)
			}
			return
		case p := <-done:
			delete(running, p)
		case <-d.queue.wake:
		case <-timer.C:
		}
	}
}

// runJob runs one queued store. The job leaves the queue only when the
// store committed, or when its file is gone (then nothing can be stored).
// A failure reschedules it with backoff; a store cancelled by shutdown
// leaves it as it was, for the next start.
func (d *daemon) runJob(j job) {
	log := d.log.With(slog.String("path", j.Path))
	fi, err := os.Stat(j.Path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
		d.dropJob(j, log)
		return
	}
	g := d.acquire()
	defer g.release()
	start := time.Now()
	res, err := g.client.Store(d.opCtx, j.Path, zstor.StoreOptions{Key: j.Key, DeleteLocal: j.DeleteLocal})
	if err == nil {
		if _, err := d.queue.remove(j.Path, j.Seq); err != nil {
			// The store committed; the job runs again and is skipped.
			log.Error("zstor daemon: stored, but could not dequeue", slog.String("err", err.Error()))
		}
		d.met.jobs.WithLabelValues("stored").Inc()
		log.Info("zstor daemon: queued store done", slog.String("key", res.Key), slog.Bool("unchanged", res.Skipped),
			slog.Int("attempts", j.Attempts+1), slog.Duration("took", time.Since(start)))
		return
	}
	if d.opCtx.Err() != nil {
		log.Info("zstor daemon: queued store interrupted by shutdown; it stays queued")
		return
	}
	if _, serr := os.Stat(j.Path); errors.Is(serr, fs.ErrNotExist) {
		d.dropJob(j, log)
		return
	}
	d.met.jobs.WithLabelValues("retry").Inc()
	delay, qerr := d.queue.failed(j.Path, j.Seq, err, d.opts.RetryMin, d.opts.RetryMax)
	if qerr != nil {
		log.Error("zstor daemon: queued store failed and could not be rescheduled", slog.String("err", err.Error()), slog.String("queue_err", qerr.Error()))
		return
	}
	if delay == 0 {
		log.Warn("zstor daemon: queued store failed; the file was queued again meanwhile and runs again", slog.String("err", err.Error()))
		return
	}
	log.Warn("zstor daemon: queued store failed, will retry", slog.String("err", err.Error()),
		slog.Int("attempt", j.Attempts+1), slog.Duration("retry_in", delay.Round(time.Millisecond)))
}

// dropJob removes the job of a file that no longer exists. With
// delete_local, the file may be gone because an earlier attempt stored it
// and deleted it before the job could be removed (a crash in between):
// the log tells which.
func (d *daemon) dropJob(j job, log *slog.Logger) {
	if removed, err := d.queue.remove(j.Path, j.Seq); err != nil || !removed {
		return // queued again meanwhile, or the queue failed: it runs again
	}
	d.met.jobs.WithLabelValues("dropped").Inc()
	g := d.acquire()
	defer g.release()
	key := j.Key
	if key == "" {
		key, _ = g.client.KeyFor(j.Path)
	}
	stored := false
	if key != "" {
		ctx, cancel := context.WithTimeout(d.opCtx, 30*time.Second)
		_, err := g.client.Check(ctx, key)
		cancel()
		stored = err == nil
	}
	if stored && j.DeleteLocal {
		log.Info("zstor daemon: queued file was stored and deleted locally; job done", slog.String("key", key))
		return
	}
	log.Warn("zstor daemon: queued file no longer exists; dropping the job",
		slog.Bool("a_version_is_stored", stored), slog.Int("attempts", j.Attempts))
}
