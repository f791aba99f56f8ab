package zdbfs

import (
	"cmp"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

// The inode table holds every inode the kernel refers to, and the kernel
// keeps referring to whatever it looked up until memory pressure makes it
// forget (FUSE FORGET), which on a large machine may be never: touching a
// million files would keep a million inodes in zdbfs. So the table is
// bounded: when it holds more than Config.MaxInodes, the trimmer asks the
// kernel to drop the least recently used names (FUSE_NOTIFY_INVAL_ENTRY);
// the kernel then forgets their inodes, and zdbfs evicts them. Open, dirty
// and root inodes are never asked for.

// useClock orders inode uses for the trimmer (cheaper than the time).
var useClock atomic.Int64

func (in *inode) touch() { in.lastUse.Store(useClock.Add(1)) }

// trimLoop trims when kicked (the table passed its bound by 1/8) and
// every flush-age tick.
func (f *FS) trimLoop() {
	defer f.wg.Done()
	t := time.NewTicker(max(f.cfg.FlushAge/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-f.stopc:
			return
		case <-t.C:
		case <-f.trimKick:
		}
		f.trim()
	}
}

// trim asks the kernel to forget the least recently used names when the
// inode table is over its bound.
func (f *FS) trim() {
	f.tmu.Lock()
	n := len(f.inodes)
	if n <= f.cfg.MaxInodes {
		f.tmu.Unlock()
		return
	}
	type cand struct {
		dir  bool
		use  int64
		node *Node
	}
	cands := make([]cand, 0, n)
	for _, in := range f.inodes {
		if in.ino == RootIno || in.node == nil {
			continue
		}
		dir := in.node.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR
		cands = append(cands, cand{dir, in.lastUse.Load(), in.node})
	}
	f.tmu.Unlock()
	// Files first (a directory's name is what the paths below it need),
	// least recently used first.
	slices.SortFunc(cands, func(a, b cand) int {
		if a.dir != b.dir {
			if a.dir {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.use, b.use)
	})
	// Down to 3/4 of the bound, so that trims come in batches.
	drop := n - f.cfg.MaxInodes*3/4
	asked := 0
	for _, c := range cands {
		if asked >= drop {
			break
		}
		in := c.node.in
		in.mu.Lock()
		busy := in.opens > 0 || in.dirty || f.cache.hasDirty(in.ino)
		in.mu.Unlock()
		if busy {
			continue
		}
		name, parent := c.node.Parent()
		if parent == nil {
			continue
		}
		// Never called while handling a request: the kernel takes the
		// directory's lock for this.
		parent.NotifyEntry(name)
		asked++
	}
	f.Stats.Trims.Add(uint64(asked))
	f.trimmed = time.Now()
}

// maybeEvict drops a clean inode the kernel no longer refers to. The
// caller holds in.mu.
func (f *FS) maybeEvict(in *inode) {
	if in.opens > 0 || in.dirty || f.cache.hasDirty(in.ino) {
		return
	}
	f.tmu.Lock()
	drop := in.nodes <= 0 && f.inodes[in.ino] == in
	if drop {
		delete(f.inodes, in.ino)
	}
	f.tmu.Unlock()
	if drop {
		f.cache.dropInode(in.ino, false)
	}
}
