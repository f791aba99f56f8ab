package zdbfs

import "sync"

// Metadata caches. A mount holds the lease: no other process changes the
// namespaces, so what this process read or wrote stays true until this
// process changes it. Two small bounded caches save round trips on the
// paths every file creation and removal takes:
//
//   - dirents: recent lookups, positive and negative (the kernel's LOOKUP
//     of a new name is followed by CREATE of the same name; rm's LOOKUP by
//     UNLINK), updated by every committed entry change;
//   - pages: recently written listing pages (new names go to the last page
//     of a directory; removals in listing order hit one page in a row),
//     guarded by FS.mu like every directory change.
//
// Both are bounded in entries (FIFO), so their memory is bounded whatever
// the number of files.

const (
	direntCacheMax = 8192
	pageCacheMax   = 64 // pages of up to 16 KiB
)

type direntCache struct {
	mu   sync.Mutex
	seq  uint64             // bumped by every change (see lookupEntry)
	m    map[string]*dirent // nil value: known not to exist
	fifo []string
	head int
}

func newDirentCache() *direntCache {
	return &direntCache{m: map[string]*dirent{}, fifo: make([]string, 0, direntCacheMax)}
}

func (c *direntCache) get(key string) (e *dirent, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok = c.m[key]
	return e, ok
}

func (c *direntCache) snapshot() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

func (c *direntCache) putLocked(key string, e *dirent) {
	if _, ok := c.m[key]; !ok {
		if len(c.fifo) < direntCacheMax {
			c.fifo = append(c.fifo, key)
		} else {
			delete(c.m, c.fifo[c.head])
			c.fifo[c.head] = key
			c.head = (c.head + 1) % direntCacheMax
		}
	}
	c.m[key] = e
}

// fill records what a lookup read from the store, unless an entry changed
// since seq was taken (the read may be older than that change).
func (c *direntCache) fill(key string, e *dirent, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq == seq {
		c.putLocked(key, e)
	}
}

// set records a committed change (e nil: the name is gone).
func (c *direntCache) set(key string, e *dirent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.putLocked(key, e)
}

// forget drops key: a change whose outcome is unknown (failed commit).
func (c *direntCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	// The key stays in the FIFO; a later put of the key reuses the slot
	// accounting harmlessly (the map is what bounds memory).
	delete(c.m, key)
}

// pageCache holds listing pages by key; only used under FS.mu.
type pageCache struct {
	m    map[string][]pageEntry
	fifo []string
}

func (c *pageCache) get(key string) ([]pageEntry, bool) {
	es, ok := c.m[key]
	return es, ok
}

func (c *pageCache) put(key string, es []pageEntry) {
	if c.m == nil {
		c.m = map[string][]pageEntry{}
	}
	if _, ok := c.m[key]; !ok {
		c.fifo = append(c.fifo, key)
		for len(c.m) >= pageCacheMax && len(c.fifo) > 0 {
			delete(c.m, c.fifo[0])
			c.fifo = c.fifo[1:]
		}
	}
	c.m[key] = es
}

func (c *pageCache) forget(key string) { delete(c.m, key) }

// freshDirs answers "no such name" without a round trip for directories
// created by this mount: every name ever added to such a directory went
// through addEntry here, which records it in a Bloom filter, so a name the
// filter has never seen is certainly absent (removals are not recorded: a
// removed name just costs a lookup). Its memory is fixed; when too many
// names or directories were recorded, it starts over empty (directories
// then lose the shortcut, nothing else).
type freshDirs struct {
	mu    sync.Mutex
	dirs  map[uint64]struct{}
	bits  []uint64
	names int
}

const (
	freshBits     = 1 << 24 // 2 MiB of filter
	freshMaxNames = 1 << 20 // ~1% false positives at this load
	freshMaxDirs  = 1 << 16
)

func (d *freshDirs) hashes(dir uint64, name string) [4]uint32 {
	// FNV-1a over the directory id and the name, split into 4 probes.
	h1 := uint64(14695981039346656037)
	for i := 0; i < 8; i++ {
		h1 ^= (dir >> (8 * i)) & 0xff
		h1 *= 1099511628211
	}
	for i := 0; i < len(name); i++ {
		h1 ^= uint64(name[i])
		h1 *= 1099511628211
	}
	h2 := h1*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	h2 ^= h2 >> 29
	var out [4]uint32
	for i := range out {
		out[i] = uint32((h1 + uint64(i)*h2) % freshBits)
	}
	return out
}

// added records a directory created by this mount.
func (d *freshDirs) added(dir uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dirs == nil || len(d.dirs) >= freshMaxDirs {
		d.resetLocked()
	}
	d.dirs[dir] = struct{}{}
}

func (d *freshDirs) resetLocked() {
	d.dirs = map[uint64]struct{}{}
	if d.bits == nil {
		d.bits = make([]uint64, freshBits/64)
	} else {
		clear(d.bits)
	}
	d.names = 0
}

// named records that dir holds (or held) name.
func (d *freshDirs) named(dir uint64, name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.dirs[dir]; !ok {
		return
	}
	if d.names >= freshMaxNames {
		d.resetLocked()
		return
	}
	for _, h := range d.hashes(dir, name) {
		d.bits[h/64] |= 1 << (h % 64)
	}
	d.names++
}

// absent reports whether name is certainly not in dir.
func (d *freshDirs) absent(dir uint64, name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.dirs[dir]; !ok {
		return false
	}
	for _, h := range d.hashes(dir, name) {
		if d.bits[h/64]&(1<<(h%64)) == 0 {
			return true
		}
	}
	return false
}
