package qsfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"qss/zdb"
	"qss/zstor"
)

// Handle receives the engine's events (zdb.Hooks). It only records
// durable facts and wakes the uploaders: slow work never runs here.
func (n *Node) Handle(ctx context.Context, ev zdb.Event) error {
	switch ev.Kind {
	case zdb.EventFileClosed:
		// A closed data file is immutable: queue it at once, so that its
		// upload starts before the next cut.
		name := dataName(ev.Namespace, ev.FileID)
		if _, ok := n.st.stored(name); !ok {
			if err := n.st.addJobs([]job{{Name: name, Source: ev.Path, Since: time.Now()}}); err != nil {
				n.log.Error("queue a closed data file", "file", ev.Path, "err", err)
			}
			n.kick()
		}
	case zdb.EventIndexChanged:
		// Changed index files are copied by the next cut (Namespace.Cut)
		// under the namespace lock; they stay dirty until then.
		return zdb.ErrKeepDirty
	case zdb.EventFileRetired:
		if !ev.Index {
			if err := n.st.retire(dataName(ev.Namespace, ev.FileID), time.Now()); err != nil {
				n.log.Error("record a retired data file", "file", ev.Path, "err", err)
			}
		}
	}
	return nil
}

// compactable lets compaction remove only data files that are stored
// (zdb.Options.CompactFilter): a point cut before the compaction still
// names them, and must be able to store them.
func (n *Node) compactable(ns string, id uint32) bool {
	_, ok := n.st.stored(dataName(ns, id))
	return ok
}

func (n *Node) kick() {
	select {
	case n.kickc <- struct{}{}:
	default:
	}
}

// noteWrite records the time of the first write since the last cut (the
// live RPO counts from it).
func (n *Node) noteWrite() {
	n.lastWrite.Store(time.Now().UnixNano())
	n.mu.Lock()
	if n.firstWrite.IsZero() {
		n.firstWrite = time.Now()
	}
	n.mu.Unlock()
}

// cut makes a recovery point (see Namespace.Cut) and queues its objects.
// It returns the generation a caller waits for: the new point's, or,
// when nothing changed, the newest point cut before.
func (n *Node) cut(all bool) (uint64, error) {
	n.cutMu.Lock()
	defer n.cutMu.Unlock()
	prev, err := n.latestPoint()
	if err != nil {
		return 0, err
	}
	gen, err := n.st.nextGen()
	if err != nil {
		return 0, err
	}
	// The first write since the last cut moves to this point in one step,
	// so the live RPO never reads 0 while the point is being made; if no
	// point comes of it, it moves back.
	n.mu.Lock()
	first := n.firstWrite
	n.firstWrite = time.Time{}
	if n.firsts == nil {
		n.firsts = map[uint64]time.Time{}
	}
	if !first.IsZero() {
		n.firsts[gen] = first
	}
	n.mu.Unlock()
	made := false
	defer func() {
		if made {
			return
		}
		n.mu.Lock()
		delete(n.firsts, gen)
		if n.firstWrite.IsZero() || (!first.IsZero() && first.Before(n.firstWrite)) {
			if !first.IsZero() {
				n.firstWrite = first
			}
		}
		n.mu.Unlock()
	}()
	now := time.Now()
	m := newManifest(gen, now)
	m.FirstWrite = first
	dir := filepath.Join(n.dirs.snap, strconv.FormatUint(gen, 10))
	var jobs []job
	changed := prev == nil
	for _, ns := range namespaces {
		var pp *NamespacePoint
		if prev != nil {
			pp = prev.Namespaces[ns]
		}
		nsDir := filepath.Join(dir, ns)
		info, err := n.eng.Namespace(ns).Cut(nsDir, all || pp == nil)
		if err != nil {
			os.RemoveAll(dir)
			return 0, fmt.Errorf("cut %s: %w", ns, err)
		}
		p := &NamespacePoint{Active: info.Active, Indexes: map[uint32]string{}, Data: map[uint32]DataObject{}}
		if pp != nil {
			for id, name := range pp.Indexes {
				p.Indexes[id] = name
			}
			p.Descriptor = pp.Descriptor
		}
		for _, id := range info.Indexes {
			src := filepath.Join(nsDir, "i"+strconv.FormatUint(uint64(id), 10))
			// An index file equal to its stored version is not stored
			// again (a restart copies every closed one).
			if old, ok := p.Indexes[id]; ok && n.sameAsStored(src, old) {
				os.Remove(src)
				continue
			}
			name := indexName(ns, id, gen)
			p.Indexes[id] = name
			jobs = append(jobs, job{Name: name, Source: src, Temp: true, Since: now})
			changed = true
		}
		desc := filepath.Join(nsDir, zdb.NamespaceFileName)
		if p.Descriptor != "" && n.sameAsStored(desc, p.Descriptor) {
			os.Remove(desc)
		} else {
			p.Descriptor = descName(ns, gen)
			jobs = append(jobs, job{Name: p.Descriptor, Source: desc, Temp: true, Since: now})
			changed = true
		}
		p.Mode = uint8(n.eng.Namespace(ns).Mode())
		// The data files: those of the previous point (less what
		// compaction removed since), and the ones closed after it. A file
		// of neither kind that is not stored and not here (removed before
		// this state knew it, as after a restore) is not part of the
		// namespace.
		first := uint32(0)
		if pp != nil {
			first = pp.Active
			for id, d := range pp.Data {
				name := dataName(ns, id)
				if n.st.retired(name) {
					continue
				}
				if o, ok := n.st.stored(name); ok {
					d = DataObject{o.Size, o.Checksum}
				}
				p.Data[id] = d
			}
		}
		for id := first; id < info.Active; id++ {
			name := dataName(ns, id)
			if n.st.retired(name) {
				continue
			}
			if o, ok := n.st.stored(name); ok {
				p.Data[id] = DataObject{o.Size, o.Checksum}
				continue
			}
			path := filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(id), 10))
			if _, err := os.Stat(path); err != nil {
				n.log.Warn("a closed data file is neither stored nor here; not in the point", "file", path, "err", err)
				continue
			}
			p.Data[id] = DataObject{} // filled in when the manifest is stored
			jobs = append(jobs, job{Name: name, Source: path, Since: now})
		}
		if pp == nil || pp.Active != p.Active {
			changed = true
		}
		m.Namespaces[ns] = p
	}
	if !changed {
		os.RemoveAll(dir)
		return prev.Generation, nil // the deferred func gives first back
	}
	if err := n.st.addJobs(jobs); err != nil {
		return 0, err
	}
	if err := n.st.putEpoch(m); err != nil {
		return 0, err
	}
	made = true
	n.kick()
	return gen, nil
}

// latestPoint is the newest point cut (stored or not), nil for none.
func (n *Node) latestPoint() (*Manifest, error) {
	eps, err := n.st.epochs()
	if err != nil {
		return nil, err
	}
	if len(eps) > 0 {
		return eps[len(eps)-1], nil
	}
	return n.st.manifest()
}

// sameAsStored reports whether the local file holds what object name
// holds (by checksum).
func (n *Node) sameAsStored(path, name string) bool {
	o, ok := n.st.stored(name)
	if !ok {
		// Not stored yet: equal to its queued copy? (While the backends
		// are down, an unchanged file is not queued again at every cut.)
		j, ok := n.st.job(name)
		if !ok || !j.Temp {
			return false
		}
		a, err1 := os.ReadFile(path)
		b, err2 := os.ReadFile(j.Source)
		return err1 == nil && err2 == nil && string(a) == string(b)
	}
	sum, err := zstor.LocalChecksum(path)
	return err == nil && sum.String() == o.Checksum
}

// pointFirst remembers the first write a point captured (for the live
// RPO), in memory: after a restart the points are measured from their cut.
func (n *Node) pointFirst(gen uint64, t time.Time) {
	n.mu.Lock()
	if n.firsts == nil {
		n.firsts = map[uint64]time.Time{}
	}
	if !t.IsZero() {
		n.firsts[gen] = t
	}
	n.mu.Unlock()
}

// recover brings the state in line with the local files after a start
// (clean or not): snapshot directories of points that were never
// recorded go, closed data files that are neither stored nor queued are
// queued, and a cut of every closed index file catches changes the engine
// forgot in a crash (its dirty list is not persistent); unchanged files
// are not stored again.
func (n *Node) recover() error {
	eps, err := n.st.epochs()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, m := range eps {
		known[strconv.FormatUint(m.Generation, 10)] = true
		n.pointFirst(m.Generation, m.Cut)
	}
	ents, _ := os.ReadDir(n.dirs.snap)
	for _, e := range ents {
		if !known[e.Name()] {
			os.RemoveAll(filepath.Join(n.dirs.snap, e.Name()))
		}
	}
	var jobs []job
	for _, ns := range namespaces {
		active := n.eng.Namespace(ns).ActiveFileID()
		for id := uint32(0); id < active; id++ {
			name := dataName(ns, id)
			path := filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(id), 10))
			if _, ok := n.st.stored(name); ok {
				continue
			}
			if _, err := os.Stat(path); err == nil {
				jobs = append(jobs, job{Name: name, Source: path, Since: time.Now()})
			}
		}
	}
	if err := n.st.addJobs(jobs); err != nil {
		return err
	}
	// The engine knows that a namespace changed since its last rotation
	// only in memory: after a crash, an active file holding entries (writes
	// no point captured) would stay active through the cut below, while the
	// closed index files it copies already carry those writes' in-place
	// flags (an overwritten directory record, say), so the point would name
	// neither the old nor the new record. Close such a file first.
	for _, ns := range namespaces {
		nsp := n.eng.Namespace(ns)
		active := filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(nsp.ActiveFileID()), 10))
		if fi, err := os.Stat(active); err == nil && fi.Size() > zdb.DataHeaderSize {
			if err := nsp.Jump(); err != nil {
				return fmt.Errorf("qsfs: close the active file of %s at start: %w", ns, err)
			}
		}
	}
	if _, err := n.cut(true); err != nil {
		return fmt.Errorf("qsfs: recovery point at start: %w", err)
	}
	return nil
}

// cutLoop cuts a point every rpo/2, so that a write is stored within
// rpo/2 + the upload time.
func (n *Node) cutLoop() {
	defer n.wg.Done()
	every := max(n.opts.RPO/2, 500*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			if _, err := n.cut(false); err != nil {
				n.log.Error("cut a recovery point", "err", err)
			}
		}
	}
}

// uploader runs queued uploads, with a back-off per object after a
// failure, and stores the manifest of every point whose objects are all
// stored.
func (n *Node) uploader() {
	defer n.wg.Done()
	retry := time.NewTimer(time.Second)
	defer retry.Stop()
	for {
		// Once stopped, an upload fails at once (its context is done)
		// and leaves its job queued: without this check the loop would
		// pick it again and again.
		if n.ctx.Err() != nil {
			return
		}
		j, wait := n.nextJob()
		if j == nil {
			if !retry.Stop() {
				select {
				case <-retry.C:
				default:
				}
			}
			retry.Reset(wait)
			select {
			case <-n.ctx.Done():
				return
			case <-n.kickc:
			case <-retry.C:
			}
			continue
		}
		n.upload(*j)
		n.mu.Lock()
		delete(n.inflight, j.Name)
		n.mu.Unlock()
		n.commit()
		n.kick()
	}
}

// Uploads yield to a burst of writes: while writes come in, a job younger
// than 2/5 of rpo waits, and older ones go one at a time (the disk and the
// CPUs go to the writer; a point cut every rpo/2 still leaves time to
// store it), unless the cache needs room, writers wait for it, or a sync
// waits for the uploads.
const (
	yieldQuiet = 300 * time.Millisecond // writes this recent make a burst
	yieldPoll  = 200 * time.Millisecond
)

func (n *Node) yieldToWriters() bool {
	if time.Since(time.Unix(0, n.lastWrite.Load())) > yieldQuiet {
		return false
	}
	if n.syncers.Load() > 0 || n.demand.Load() > 0 || n.usage() > int64(evictLow*float64(n.opts.CacheSize)) {
		return false
	}
	return true
}

// nextJob picks a queued job not in flight and not backing off; else the
// wait until one may be.
func (n *Node) nextJob() (*job, time.Duration) {
	jobs, err := n.st.jobs()
	if err != nil {
		n.log.Error("read the upload queue", "err", err)
		return nil, 5 * time.Second
	}
	// Data files first (they are large and a point needs them), then by age.
	sort.SliceStable(jobs, func(i, j int) bool {
		if jobs[i].Temp != jobs[j].Temp {
			return !jobs[i].Temp
		}
		return jobs[i].Since.Before(jobs[j].Since)
	})
	now := time.Now()
	wait := 5 * time.Second
	yield := n.yieldToWriters()
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range jobs {
		j := &jobs[i]
		if n.inflight[j.Name] {
			continue
		}
		if yield && (now.Sub(j.Since) < n.opts.RPO*2/5 || len(n.inflight) > 0) {
			// A young job waits; an old one goes, one at a time.
			wait = min(wait, yieldPoll)
			continue
		}
		if t, ok := n.backoff[j.Name]; ok && now.Before(t) {
			wait = min(wait, t.Sub(now))
			continue
		}
		n.inflight[j.Name] = true
		return j, 0
	}
	return nil, wait
}

func (n *Node) upload(j job) {
	ctx := n.ctx
	st, err := n.opts.Remote.Put(ctx, j.Name, j.Source)
	if err != nil {
		if _, serr := os.Stat(j.Source); errors.Is(serr, fs.ErrNotExist) {
			// Compaction removed a data file only once stored, and
			// eviction only removes stored files: a missing source is
			// stored already or gone for good.
			if _, ok := n.st.stored(j.Name); !ok {
				n.log.Error("a file to upload is gone", "object", j.Name, "file", j.Source)
				if !j.Temp {
					// Later points leave it out (those cut before
					// cannot be stored; a later one is).
					n.st.retire(j.Name, time.Now())
				}
			}
			n.st.dropJob(j.Name)
			return
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		n.stats.UploadErrors.Add(1)
		n.st.jobFailed(j.Name, err)
		d := time.Second << min(j.Tries, 6)
		n.mu.Lock()
		n.backoff[j.Name] = time.Now().Add(d)
		n.lastErr = err.Error()
		n.mu.Unlock()
		n.log.Warn("upload failed; retrying", "object", j.Name, "in", d, "err", err)
		return
	}
	if err := n.st.jobDone(j.Name, storedObject{Size: st.Size, Checksum: st.Checksum.String(), MinShards: st.MinShards, At: time.Now()}); err != nil {
		n.log.Error("record an upload", "object", j.Name, "err", err)
		return
	}
	if j.Temp {
		os.Remove(j.Source)
	}
	n.stats.Uploads.Add(1)
	n.stats.UploadBytes.Add(uint64(st.Size))
	n.mu.Lock()
	delete(n.backoff, j.Name)
	n.lastUploadOK = time.Now()
	n.mu.Unlock()
	n.kickEvict()
}

// commit stores the manifest of the newest point whose objects are all
// stored.
func (n *Node) commit() {
	n.cutMu.Lock()
	defer n.cutMu.Unlock()
	eps, err := n.st.epochs()
	if err != nil || len(eps) == 0 {
		return
	}
	for i := len(eps) - 1; i >= 0; i-- {
		m := eps[i]
		if !n.complete(m) {
			continue
		}
		if err := n.storeManifest(m); err != nil {
			n.log.Warn("store a recovery point; retrying", "generation", m.Generation, "err", err)
			return
		}
		n.mu.Lock()
		n.committed, n.committedAt = m.Generation, time.Now()
		for g := range n.firsts {
			if g <= m.Generation {
				delete(n.firsts, g)
			}
		}
		close(n.commitc)
		n.commitc = make(chan struct{})
		n.mu.Unlock()
		os.RemoveAll(filepath.Join(n.dirs.snap, strconv.FormatUint(m.Generation, 10)))
		for _, old := range eps[:i] {
			os.RemoveAll(filepath.Join(n.dirs.snap, strconv.FormatUint(old.Generation, 10)))
		}
		return
	}
}

// complete reports whether every object m names is stored, filling in the
// data files' checksums.
func (n *Node) complete(m *Manifest) bool {
	for ns, p := range m.Namespaces {
		if _, ok := n.st.stored(p.Descriptor); !ok {
			return false
		}
		for _, name := range p.Indexes {
			if _, ok := n.st.stored(name); !ok {
				return false
			}
		}
		for id := range p.Data {
			o, ok := n.st.stored(dataName(ns, id))
			if !ok {
				return false
			}
			p.Data[id] = DataObject{o.Size, o.Checksum}
		}
	}
	return true
}

func (n *Node) storeManifest(m *Manifest) error {
	raw, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(n.dirs.state, "manifest-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	st, err := n.opts.Remote.Put(n.ctx, manifestName, tmp.Name())
	if err != nil {
		return err
	}
	n.st.jobDone(manifestName, storedObject{Size: st.Size, Checksum: st.Checksum.String(), MinShards: st.MinShards, At: time.Now()})
	return n.st.committed(m, time.Now())
}

// checkNoManifest refuses to start a new filesystem over backends that
// hold one (ErrForeignFilesystem), or that cannot tell.
func checkNoManifest(ctx context.Context, r Remote, tmpDir string) error {
	dir, err := os.MkdirTemp("", "qsfs-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	err = r.Get(ctx, manifestName, filepath.Join(dir, "manifest"))
	switch {
	case err == nil:
		return fmt.Errorf("qsfs: %w", ErrForeignFilesystem)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("qsfs: cannot check whether the backends already hold a filesystem: %w", err)
	}
}

// gcLoop deletes the objects no stored point has needed for the grace
// period.
func (n *Node) gcLoop() {
	defer n.wg.Done()
	every := min(max(n.opts.GCGrace/10, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.collect()
		}
	}
}

func (n *Node) collect() {
	for _, name := range n.st.garbage(time.Now().Add(-n.opts.GCGrace)) {
		if n.ctx.Err() != nil {
			return
		}
		if err := n.opts.Remote.Delete(n.ctx, name); err != nil {
			n.log.Warn("delete an unneeded object; retrying later", "object", name, "err", err)
			return
		}
		n.st.forget(name)
		n.stats.Deleted.Add(1)
	}
}
