package qsfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"qss/zdbfs"
	"qss/zstor"
)

// The cache: local disk use (data, index and state files, as allocated on
// disk) stays under Options.CacheSize. The evictor removes stored closed
// data files, least recently read first, once use passes evictHigh of the
// cap, down to evictLow; a write that finds the cache full waits for
// space (backpressure) and fails with ENOSPC after BackpressureWait. A file
// is evicted only if it is stored and its content still hashes to the
// stored checksum; the active file never is.
const (
	evictHigh = 0.90
	evictLow  = 0.75
)

// scanUsage measures the local directory.
func (n *Node) scanUsage() int64 {
	// An admitted write may land on disk well after its admission (zdbfs
	// batches blocks), during or after a walk: the bytes admitted since
	// the start of the walk before this one stay counted beside the
	// measure (some are counted twice, which errs on the safe side).
	n.scanMu.Lock()
	defer n.scanMu.Unlock()
	start := n.admitted.Load()
	var total int64
	filepath.WalkDir(n.opts.Dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			} else {
				total += fi.Size()
			}
		}
		return nil
	})
	n.used.Store(total)
	n.admitBase.Store(n.prevScan)
	n.prevScan = start
	return total
}

// admitLimit is the local use up to which writes are admitted: the high
// mark, so that what the admission does not count (index entries,
// snapshot copies, the state database, compaction's copies until the next
// scan) has a tenth of the cap to fit in.
func (n *Node) admitLimit() int64 { return int64(evictHigh * float64(n.opts.CacheSize)) }

// usage is the local use as last measured plus what was admitted since.
func (n *Node) usage() int64 { return n.used.Load() + n.admitted.Load() - n.admitBase.Load() }

func (n *Node) kickEvict() {
	select {
	case n.evc <- struct{}{}:
	default:
	}
}

func (n *Node) evictLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastReclaim time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.evc:
		}
		// Waiting writers count: without them, a cache just under the
		// high mark would never be evicted while a write larger than the
		// room left waits for space until it fails with ENOSPC.
		used, demand := n.scanUsage(), n.demand.Load()
		if float64(used+demand) > evictHigh*float64(n.opts.CacheSize) {
			n.evict(min(int64(evictLow*float64(n.opts.CacheSize)), n.admitLimit()-demand))
			n.scanUsage()
		} else if time.Since(lastReclaim) > reclaimEvery {
			lastReclaim = time.Now()
			n.reclaim(n.ctx)
			n.mergeSmall(n.ctx)
		}
		n.spaceChanged()
	}
}

// evict removes stored data files until use is under target.
func (n *Node) evict(target int64) {
	for _, c := range n.evictionOrder() {
		if n.usage() <= target || n.ctx.Err() != nil {
			return
		}
		o, ok := n.st.stored(dataName(c.ns, c.id))
		if !ok || n.isPinned(dataName(c.ns, c.id)) {
			continue
		}
		fi, err := os.Stat(c.path)
		if err != nil {
			continue
		}
		sum, err := zstor.LocalChecksum(c.path)
		if err != nil || sum.String() != o.Checksum {
			n.log.Warn("not evicting a data file that differs from its stored copy", "file", c.path, "err", err)
			continue
		}
		if err := n.eng.EvictDataFile(c.ns, c.id); err != nil {
			n.log.Warn("evict a data file", "file", c.path, "err", err)
			continue
		}
		n.stats.Evictions.Add(1)
		n.stats.EvictedBytes.Add(uint64(fi.Size()))
		n.used.Add(-fi.Size())
	}
}

type candidate struct {
	ns   string
	id   uint32
	path string
}

// evictionOrder lists the closed data files present locally, least
// recently read first: files not read since they left the engine's
// open-file LRU (oldest id first), then the open ones by last read.
func (n *Node) evictionOrder() []candidate {
	var cold, warm []candidate
	for _, ns := range namespaces {
		nsp := n.eng.Namespace(ns)
		if nsp == nil {
			continue
		}
		active := nsp.ActiveFileID()
		// One look at the LRU, so that no file is both cold and warm.
		recentIDs := nsp.RecentDataFiles()
		recent := map[uint32]bool{}
		for _, id := range recentIDs {
			recent[id] = true
		}
		ents, _ := os.ReadDir(filepath.Join(n.dirs.data, ns))
		for _, e := range ents {
			name := e.Name()
			if len(name) < 2 || name[0] != 'd' {
				continue
			}
			id64, err := strconv.ParseUint(name[1:], 10, 32)
			if err != nil || uint32(id64) >= active {
				continue
			}
			c := candidate{ns, uint32(id64), filepath.Join(n.dirs.data, ns, name)}
			if !recent[c.id] {
				cold = append(cold, c)
			}
		}
		sort.Slice(cold, func(i, j int) bool { return cold[i].id < cold[j].id })
		for _, id := range recentIDs {
			if id < active {
				warm = append(warm, candidate{ns, id, filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(id), 10))})
			}
		}
	}
	return append(cold, warm...)
}

func (n *Node) spaceChanged() {
	n.spaceMu.Lock()
	close(n.spacec)
	n.spacec = make(chan struct{})
	n.spaceMu.Unlock()
}

// ErrCacheFull is wrapped (with syscall.ENOSPC) by a write that waited
// BackpressureWait for cache space in vain.
var ErrCacheFull = errors.New("qsfs: the local cache is full of data not stored yet (are the backends reachable?)")

// admit lets a write of size bytes in once the cache has room for it,
// waiting (backpressure) at most BackpressureWait.
func (n *Node) admit(ctx context.Context, size int) error {
	limit := n.admitLimit()
	if n.usage()+int64(size) <= limit {
		n.admitted.Add(int64(size))
		return nil
	}
	n.stats.WriteWaits.Add(1)
	n.demand.Add(int64(size))
	defer n.demand.Add(-int64(size))
	deadline := time.NewTimer(n.opts.BackpressureWait)
	defer deadline.Stop()
	for {
		// Room comes from eviction, which needs stored files, which
		// needs the active file cut: cut (at most every 2 s).
		if last := n.lastForced.Load(); time.Since(time.Unix(0, last)) > 2*time.Second &&
			n.lastForced.CompareAndSwap(last, time.Now().UnixNano()) {
			go func() {
				if _, err := n.cut(false); err != nil {
					n.log.Warn("cut for cache space", "err", err)
				}
			}()
		}
		n.kickEvict()
		n.shortenBackoff(2 * time.Second)
		n.spaceMu.Lock()
		c := n.spacec
		n.spaceMu.Unlock()
		if n.usage()+int64(size) <= limit {
			n.admitted.Add(int64(size))
			return nil
		}
		select {
		case <-c:
		case <-deadline.C:
			n.stats.WriteENOSPC.Add(1)
			return fmt.Errorf("%w (%d of %d bytes used): %w", ErrCacheFull, n.usage(), limit, syscall.ENOSPC)
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return n.ctx.Err()
		}
	}
}

// gatedStore is a zdbfs store over an engine namespace whose writes pass
// the cache's admission first. It embeds the engine store, so zdbfs still
// reads the namespace's space from it (statfs).
type gatedStore struct {
	*zdbfs.EngineStore
	n *Node
}

// entryOverhead is what a key-value write adds beside its bytes (data and
// index entry headers).
const entryOverhead = 64

// Set implements zdbfs.Store.
func (g *gatedStore) Set(ctx context.Context, key, value []byte) error {
	if err := g.n.admit(ctx, len(key)*2+len(value)+entryOverhead); err != nil {
		return err
	}
	g.n.noteWrite()
	return g.EngineStore.Set(ctx, key, value)
}

// Del implements zdbfs.Store.
func (g *gatedStore) Del(ctx context.Context, key []byte) error {
	if err := g.n.admit(ctx, len(key)*2+entryOverhead); err != nil {
		return err
	}
	g.n.noteWrite()
	return g.EngineStore.Del(ctx, key)
}

// Apply implements zdbfs.Store.
func (g *gatedStore) Apply(ctx context.Context, ops []zdbfs.Op) error {
	size := 0
	for _, op := range ops {
		size += len(op.Key)*2 + len(op.Value) + entryOverhead
	}
	if err := g.n.admit(ctx, size); err != nil {
		return err
	}
	g.n.noteWrite()
	return g.EngineStore.Apply(ctx, ops)
}

// reclaimRatio is the share of dead bytes above which an evicted data
// file is fetched back so that compaction can reclaim it (locally, and on
// the backends once the point without it is stored and the grace period
// passed). Compaction only works on local files.
const reclaimRatio = 0.5

// reclaimEvery spaces the fetches of reclaim.
var reclaimEvery = 10 * time.Second

// reclaim fetches back one evicted data file that is mostly dead, when
// the cache has room for it, and compacts it. It runs in the evictor's
// goroutine, so the file is not evicted again in between.
func (n *Node) reclaim(ctx context.Context) {
	for _, ns := range namespaces {
		nsp := n.eng.Namespace(ns)
		if nsp == nil {
			continue
		}
		active := nsp.ActiveFileID()
		live := nsp.LiveBytes()
		ids := make([]uint32, 0, len(live))
		for id := range live {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			if id >= active {
				continue
			}
			name := dataName(ns, id)
			o, ok := n.st.stored(name)
			if !ok || o.Size <= 0 || n.st.retired(name) {
				continue
			}
			if float64(o.Size-live[id]) < reclaimRatio*float64(o.Size) {
				continue
			}
			path := filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(id), 10))
			if _, err := os.Stat(path); err == nil {
				continue // local: compaction sees it
			}
			if n.usage()+o.Size > n.opts.CacheSize {
				return
			}
			if err := n.FetchFile(ctx, ns, id, path); err != nil {
				n.log.Warn("fetch a mostly dead data file back for compaction", "object", name, "err", err)
				return
			}
			st, err := nsp.CompactFile(ctx, id)
			if err != nil {
				n.log.Warn("compact a data file fetched back", "object", name, "err", err)
				return
			}
			n.log.Info("reclaimed an evicted data file", "object", name, "live", live[id], "size", o.Size,
				"retired", len(st.Retired) > 0, "copied_bytes", st.BytesCopied)
			return
		}
	}
}

// Small files: every cut closes the active files, so a slow writer leaves
// many small data files (and their index files, each an open descriptor
// in the engine and an object on the backends). Once a namespace holds
// more than mergeAbove closed files under a quarter of data_file_size,
// the oldest mergeBatch of them are merged (zdb MergeFiles: their entries
// move to the active file, which the next cut stores as one file). A
// merged file is bigger, so data is merged a few times at most.
var (
	mergeAbove = 32
	mergeBatch = 16
)

// mergeSmall merges one batch of small files of one namespace, when the
// cache has room to bring the evicted ones back.
func (n *Node) mergeSmall(ctx context.Context) {
	smallSize := n.opts.DataFileSize / 4
	for _, ns := range namespaces {
		nsp := n.eng.Namespace(ns)
		if nsp == nil {
			continue
		}
		active := nsp.ActiveFileID()
		live := nsp.LiveBytes()
		var small []uint32
		var need int64
		for id := uint32(0); id < active; id++ {
			name := dataName(ns, id)
			o, ok := n.st.stored(name)
			if !ok || n.st.retired(name) || o.Size >= smallSize {
				continue
			}
			if _, known := live[id]; !known {
				continue // no index file: nothing to merge
			}
			small = append(small, id)
		}
		if len(small) <= mergeAbove {
			continue
		}
		batch := small[:mergeBatch]
		var fetch []uint32
		for _, id := range batch {
			path := filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(id), 10))
			if _, err := os.Stat(path); err != nil {
				o, _ := n.st.stored(dataName(ns, id))
				need += o.Size
				fetch = append(fetch, id)
			}
		}
		if n.usage()+need > n.opts.CacheSize {
			return
		}
		for _, id := range fetch {
			path := filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(id), 10))
			if err := n.FetchFile(ctx, ns, id, path); err != nil {
				n.log.Warn("fetch a small data file back to merge it", "object", dataName(ns, id), "err", err)
				return
			}
		}
		st, err := nsp.MergeFiles(ctx, batch)
		if err != nil {
			n.log.Warn("merge small data files", "namespace", ns, "err", err)
			return
		}
		n.log.Info("merged small data files", "namespace", ns, "files", len(st.Retired), "copied_bytes", st.BytesCopied)
		return
	}
}

// shortenBackoff brings the uploads' retries within d: while a writer
// waits for room, a backend that came back must not wait out a long
// back-off before the queue drains.
func (n *Node) shortenBackoff(d time.Duration) {
	limit := time.Now().Add(d)
	woke := false
	n.mu.Lock()
	for name, t := range n.backoff {
		if t.After(limit) {
			n.backoff[name] = limit
			woke = true
		}
	}
	n.mu.Unlock()
	if woke {
		n.kick()
	}
}
