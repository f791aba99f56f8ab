package qsfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// FetchRange implements zdb.Fetcher: the payload a read needs, read from
// the stored data file without restoring it (only the chunks holding the
// range are fetched; see Remote.ReadAt).
func (n *Node) FetchRange(ctx context.Context, ns string, id uint32, off int64, p []byte) error {
	if n.sequential(dataName(ns, id), off, len(p)) {
		n.prefetch(ns, id)
		n.prefetch(ns, id+1)
	}
	err := n.opts.Remote.ReadAt(ctx, dataName(ns, id), p, off)
	if err != nil {
		n.stats.FetchErrors.Add(1)
		return err
	}
	n.stats.Fetches.Add(1)
	n.stats.FetchBytes.Add(uint64(len(p)))
	return nil
}

// FetchFile implements zdb.Fetcher: the whole data file, back at path
// (when the Remote cannot read ranges). It counts toward the cache and is
// evicted again like any stored file.
func (n *Node) FetchFile(ctx context.Context, ns string, id uint32, path string) error {
	// The read that needs the file opens it after this returns: until
	// then (and a little longer) the evictor leaves it alone.
	n.pin(dataName(ns, id))
	if err := n.opts.Remote.Get(ctx, dataName(ns, id), path); err != nil {
		n.stats.FetchErrors.Add(1)
		return fmt.Errorf("qsfs: fetch %s: %w", dataName(ns, id), err)
	}
	n.stats.Fetches.Add(1)
	n.kickEvict()
	return nil
}

// pinFor is how long a file fetched back is kept from eviction.
const pinFor = 30 * time.Second

func (n *Node) pin(name string) {
	n.mu.Lock()
	if n.pinned == nil {
		n.pinned = map[string]time.Time{}
	}
	n.pinned[name] = time.Now().Add(pinFor)
	n.mu.Unlock()
}

func (n *Node) isPinned(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.pinned[name]
	if ok && time.Now().After(t) {
		delete(n.pinned, name)
		return false
	}
	return ok
}

// Sequential reads: after seqRun ranges of one evicted data file read in
// order, the whole file (and the next one) is fetched back in the
// background, at the Remote's full speed (zstor retrieves many chunks at
// once), and the reads that follow are local; until it lands, reads go
// on by range. Only when the cache has room; the files come back pinned,
// and are evicted again like any stored file.
const seqRun = 4

// A read continues a run when it starts near the frontier of the reads
// so far (the end of the furthest one): at most seqAhead past it (the
// header and key of the entry between two payloads, a skipped entry), or
// seqBehind before it (the kernel's read-ahead and zdbfs's serve several
// requests at once, so in-order reads arrive a little out of order).
// Random reads of a data file seldom land there several times in a row.
const (
	seqAhead  = 64 << 10
	seqBehind = 2 << 20
)

type seqState struct {
	next int64
	run  int
}

// sequential notes a range read of object name and reports whether it
// continues a run of seqRun in-order reads.
func (n *Node) sequential(name string, off int64, size int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seq == nil {
		n.seq = map[string]*seqState{}
	}
	s := n.seq[name]
	if s == nil {
		if len(n.seq) > 256 {
			clear(n.seq)
		}
		s = &seqState{}
		n.seq[name] = s
	}
	// In order: the next entry's payload, past its header (a small gap).
	if s.next > 0 && off <= s.next+seqAhead && off >= s.next-seqBehind {
		s.run++
	} else {
		s.run = 0
	}
	s.next = max(s.next, off+int64(size))
	return s.run >= seqRun
}

// prefetch fetches data file id of ns back in the background, unless it
// is local, not stored, being fetched, or the cache has no room for it.
func (n *Node) prefetch(ns string, id uint32) {
	name := dataName(ns, id)
	o, ok := n.st.stored(name)
	if !ok || o.Size <= 0 || n.usage()+o.Size > n.opts.CacheSize {
		return
	}
	path := filepath.Join(n.dirs.data, ns, "d"+strconv.FormatUint(uint64(id), 10))
	if _, err := os.Stat(path); err == nil {
		return
	}
	n.mu.Lock()
	if n.prefetching == nil {
		n.prefetching = map[string]bool{}
	}
	if n.closing || n.prefetching[name] || len(n.prefetching) >= 2 {
		n.mu.Unlock()
		return
	}
	n.prefetching[name] = true
	n.wg.Add(1) // under n.mu: Close sets closing under it before it waits
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			delete(n.prefetching, name)
			n.mu.Unlock()
		}()
		if err := n.FetchFile(n.ctx, ns, id, path); err != nil {
			if n.ctx.Err() == nil {
				n.log.Warn("prefetch a data file", "object", name, "err", err)
			}
			return
		}
		n.stats.Prefetches.Add(1)
	}()
}
