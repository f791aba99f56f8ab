package zdbfs

import (
	"container/list"
	"sort"
	"sync"
	"time"
)

// The block cache holds file blocks, clean and dirty, under one bound in
// bytes. Clean blocks are evicted least recently used first; dirty blocks
// stay until flushed (the writer flushes its own file when its dirty data
// passes a share of the bound, and the background loop is kicked when the
// whole cache is half dirty), so memory stays bounded by the cache size
// whatever the number of files touched.
//
// Locking: the cache mutex guards the maps and the LRU. A block's bytes
// are read and written only by holders of its inode's mutex.

type bkey struct{ ino, blk uint64 }

type cblock struct {
	key    bkey
	data   []byte // BlockSize bytes
	dirty  bool
	since  time.Time // when it became dirty
	elem   *list.Element
	ver    uint64 // bumped by every change (under the inode's mutex)
	frozen bool   // data is being written by a background flush: copy before changing
	pdirty uint16 // dirty pages (blocks.go); 0 with dirty: all of them
	// What zdb holds for the block (blocks.go), when sknown: the length
	// of the block record, then of each page record (0: none).
	slen   [1 + blockPages]int32
	sknown bool
	lent   bool // data was handed to a READ reply without a copy: copy before changing
}

// mutable returns b's bytes for changing them: a copy when a background
// flush is writing the current ones or a read reply may still be sending
// them (copy on write). The caller holds the inode's mutex and marks b
// dirty afterwards.
func (b *cblock) mutable() []byte {
	if b.frozen || b.lent {
		b.data = append([]byte(nil), b.data...)
		b.frozen, b.lent = false, false
	}
	b.ver++
	return b.data
}

type cache struct {
	f     *FS
	mu    sync.Mutex
	limit int64
	used  int64
	byIno map[uint64]map[uint64]*cblock
	lru   *list.List     // clean blocks, front = most recent
	dirty map[uint64]int // ino -> dirty block count
	ndirt int64          // dirty blocks
	kick  chan struct{}
}

func newCache(f *FS, limit int64) *cache {
	return &cache{f: f, limit: max(limit, 4*BlockSize), byIno: map[uint64]map[uint64]*cblock{},
		lru: list.New(), dirty: map[uint64]int{}, kick: make(chan struct{}, 1)}
}

func (c *cache) get(ino, blk uint64) *cblock {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.byIno[ino][blk]
	if b != nil && b.elem != nil {
		c.lru.MoveToFront(b.elem)
	}
	return b
}

func (c *cache) insertLocked(b *cblock) {
	m := c.byIno[b.key.ino]
	if m == nil {
		m = map[uint64]*cblock{}
		c.byIno[b.key.ino] = m
	}
	if old := m[b.key.blk]; old != nil && old != b {
		c.removeLocked(old)
	}
	if m[b.key.blk] != b {
		m[b.key.blk] = b
		c.used += BlockSize
	}
}

func (c *cache) removeLocked(b *cblock) {
	m := c.byIno[b.key.ino]
	if m[b.key.blk] != b {
		return
	}
	delete(m, b.key.blk)
	if len(m) == 0 {
		delete(c.byIno, b.key.ino)
	}
	c.used -= BlockSize
	if b.elem != nil {
		c.lru.Remove(b.elem)
		b.elem = nil
	}
	if b.dirty {
		b.dirty = false
		c.ndirt--
		if c.dirty[b.key.ino]--; c.dirty[b.key.ino] <= 0 {
			delete(c.dirty, b.key.ino)
		}
	}
}

func (c *cache) evictLocked() {
	for c.used > c.limit {
		e := c.lru.Back()
		if e == nil {
			return
		}
		c.removeLocked(e.Value.(*cblock))
	}
}

// putClean adds a block read from the store.
func (c *cache) putClean(b *cblock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insertLocked(b)
	if !b.dirty && b.elem == nil {
		b.elem = c.lru.PushFront(b)
	}
	c.evictLocked()
}

// markDirty records that b was modified as a whole (and re-inserts it if
// it was evicted meanwhile). It reports whether the cache is under dirty
// pressure.
func (c *cache) markDirty(b *cblock) (pressure bool) {
	return c.markDirtyRange(b, 0, BlockSize)
}

// markDirtyRange records that bytes [lo, hi) of b were modified, like
// markDirty.
func (c *cache) markDirtyRange(b *cblock, lo, hi int) (pressure bool) {
	b.pdirty |= pageSpan(lo, hi)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insertLocked(b)
	if b.elem != nil {
		c.lru.Remove(b.elem)
		b.elem = nil
	}
	if !b.dirty {
		b.dirty = true
		b.since = time.Now()
		c.ndirt++
		c.dirty[b.key.ino]++
	}
	c.evictLocked()
	if c.ndirt*BlockSize > c.limit/2 {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return int64(c.dirty[b.key.ino])*BlockSize > c.limit/4 || c.ndirt*BlockSize > c.limit*3/4
}

// dirtyBlocks lists ino's dirty blocks in block order.
func (c *cache) dirtyBlocks(ino uint64) []*cblock {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*cblock
	if c.dirty[ino] == 0 {
		return nil
	}
	for _, b := range c.byIno[ino] {
		if b.dirty {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key.blk < out[j].key.blk })
	return out
}

// markClean makes flushed blocks clean (evictable).
func (c *cache) markClean(bs []*cblock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range bs {
		if !b.dirty || c.byIno[b.key.ino][b.key.blk] != b {
			continue
		}
		b.dirty, b.pdirty = false, 0
		c.ndirt--
		if c.dirty[b.key.ino]--; c.dirty[b.key.ino] <= 0 {
			delete(c.dirty, b.key.ino)
		}
		b.elem = c.lru.PushFront(b)
	}
	c.evictLocked()
}

func (c *cache) dirtyBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ndirt * BlockSize
}

// dirtyCount is the number of ino's dirty blocks.
func (c *cache) dirtyCount(ino uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirty[ino]
}

func (c *cache) hasDirty(ino uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirty[ino] > 0
}

// truncate drops ino's blocks from block number from on, dirty or not.
func (c *cache) truncate(ino, from uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for blk, b := range c.byIno[ino] {
		if blk >= from {
			c.removeLocked(b)
		}
	}
}

// dropInode forgets ino's clean blocks, and its dirty ones too when all.
func (c *cache) dropInode(ino uint64, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.byIno[ino] {
		if all || !b.dirty {
			c.removeLocked(b)
		}
	}
}

func (c *cache) dirtyInodes() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, 0, len(c.dirty))
	for ino := range c.dirty {
		out = append(out, ino)
	}
	return out
}

// flushCandidates lists the inodes holding a block dirty for longer than
// age, or every dirty inode when the cache is under dirty pressure.
func (c *cache) flushCandidates(age time.Duration) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := c.ndirt*BlockSize > c.limit/2
	cut := time.Now().Add(-age)
	var out []uint64
	for ino := range c.dirty {
		if all {
			out = append(out, ino)
			continue
		}
		for _, b := range c.byIno[ino] {
			if b.dirty && b.since.Before(cut) {
				out = append(out, ino)
				break
			}
		}
	}
	return out
}
