// Package zdbfs is a POSIX filesystem whose inodes, directories and file
// data live in two zdb namespaces (metadata and data), served over FUSE.
//
// The records are described in docs/zdbfs-format.md (zdbfs format v1).
// Metadata operations go through an ordered write-behind log (store_wb.go)
// and file data through a bounded block cache (cache.go); both reach zdb
// in the background within a bounded age, after the last close of a
// written file, and completely by fsync, fdatasync, an fsync of the root
// directory (what syncfs would do; Linux does not send syncfs to FUSE
// servers) and unmount. A file's inode record never claims a size whose
// blocks are not yet stored.
package zdbfs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// inodeBytes is what one inode the kernel refers to costs in memory: our
// inode (~1.1 KiB measured with a heap profile while creating files) and
// go-fuse's node for it (~0.9 KiB).
const inodeBytes = 2048

// Config configures a filesystem.
type Config struct {
	Meta Store // metadata namespace (inodes, directories, xattrs)
	Data Store // data namespace (blocks)

	CacheBytes int64         // memory bound of the caches (default 64 MiB): blocks and inodes
	MaxInodes  int           // inodes kept for the kernel (default CacheBytes/4 at inodeBytes each)
	FlushAge   time.Duration // dirty data older than this is flushed (default 2 s)
	// SyncClose makes close(2) wait until the file's data and every
	// metadata change before it are in zdb, and report a failure to store
	// them. Off by default: as on a local filesystem, the last close of a
	// file that was written starts storing it in the background (it is in
	// zdb within FlushAge), and the kernel is told not to send FLUSH at
	// all, which saves a round trip per close; fsync, fdatasync, fsync of
	// the root directory (syncfs does not reach FUSE servers)
	// and unmount are the durability points (spec §2), and a failure to
	// store is reported by the next write, fsync or close of the file.
	SyncClose bool
	Capacity  uint64        // caps the size reported by statfs (default: what zdb reports, see space.go)
	LeaseTTL  time.Duration // a lease not renewed for this long is stale (default 30 s)
	UID, GID  uint32        // owner of a new root directory
	// WholeBlocks makes flushes write whole blocks only, never page
	// records (what format v1 did): for benchmarks, as the reference the
	// page records are measured against (bench/zdbfsamp).
	WholeBlocks bool
	// PrivateStore says that no other process can open the stores (an
	// in-process engine holds its directory lock, as in qsfs): no mount
	// lease is taken, so nothing is written to the metadata namespace
	// while the filesystem is idle.
	PrivateStore bool
	Logger       *slog.Logger
}

// Stats are counters a monitor can read.
type Stats struct {
	Requests    atomic.Uint64
	CacheHits   atomic.Uint64
	CacheMisses atomic.Uint64
	BytesRead   atomic.Uint64
	BytesWrite  atomic.Uint64
	Errors      atomic.Uint64
	Flushes     atomic.Uint64
	Trims       atomic.Uint64 // names the kernel was asked to forget
	Pushes      atomic.Uint64 // page ranges given to the kernel's cache
	PushErrors  atomic.Uint64
	Prefetched  atomic.Uint64 // blocks read ahead
}

// FS is the filesystem state shared by all FUSE nodes.
type FS struct {
	cfg        Config
	meta, data Store    // meta is mlog: writes are logged (store_wb.go)
	rawMeta    Store    // the metadata namespace itself (superblock, lease)
	mlog       *wbStore // the write-behind log of the metadata namespace
	log        *slog.Logger

	// mu serialises namespace changes (entries, link counts, renames).
	mu sync.Mutex

	tmu    sync.Mutex
	inodes map[uint64]*inode

	amu              sync.Mutex
	nextIno, limitIn uint64

	omu     sync.Mutex
	orphans []uint64

	cache *cache
	dents *direntCache
	pages pageCache // listing pages, under mu
	fresh freshDirs // directories created by this mount
	lease lease

	// life is the filesystem's lifetime: the parent of the contexts of
	// all background work, cancelled by Close when its caller's deadline
	// passes (a zdb that never answers) and at its end.
	life     context.Context
	endLife  context.CancelFunc
	stopc    chan struct{}
	wg       sync.WaitGroup // the loops (flush, close, lease, trim)
	bg       sync.WaitGroup // background flushes (flushAsync) and readahead fetches
	trimmed  time.Time
	pushes   chan struct{} // bounds concurrent page pushes
	trimKick chan struct{}
	closeq   chan *inode // files last closed after writing, to flush (unless SyncClose)
	statfs   statfsCache
	Stats    Stats
}

// inode is the in-memory state of one inode, shared by all its names.
type inode struct {
	ino uint64
	mu  sync.Mutex
	a   attrs // current attributes
	pa  attrs // attributes as last persisted (size, HWM, Inline matter)
	xs  xattrList
	xok bool

	nodes    int   // live FUSE nodes referring to this inode (under FS.tmu)
	node     *Node // the FUSE node (under FS.tmu), for the trimmer
	lastUse  atomic.Int64
	opens    int          // open file handles
	writers  int          // of which opened for writing
	gate     sync.RWMutex // held shared by page pushes, exclusively by what changes data under them
	gen      uint64       // bumped whenever stored blocks or pa change (see FS.read)
	unlinked bool         // nlink reached 0 while open: purged at last close
	gone     bool         // purged
	werr     error        // flush error to report at the next write/fsync/close
	dirty    bool         // attributes changed by writes, not yet persisted
	flushing bool         // a background flush (flushAsync) runs
	raNext   uint64       // sequential readahead (readaheadLocked): expected next offset,
	raSeq    int          // sequential reads in a row,
	raBlk    uint64       // blocks fetched ahead up to here,
	raBusy   int          // fetches ahead running
	fcond    *sync.Cond
}

func (in *inode) isDir() bool      { return in.a.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (in *inode) isReg() bool      { return in.a.Mode&syscall.S_IFMT == syscall.S_IFREG }
func (in *inode) fileType() uint32 { return in.a.Mode & syscall.S_IFMT }

func nowNs() int64 { return time.Now().UnixNano() }

// New opens the filesystem on the two stores: it checks or writes the
// superblock, takes the mount lease (refusing a second mount), creates the
// root directory of an empty namespace and purges inodes left orphaned by
// a crash. Close releases it.
func New(ctx context.Context, cfg Config) (*FS, error) {
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 64 << 20
	}
	if cfg.MaxInodes <= 0 {
		cfg.MaxInodes = max(1024, int(cfg.CacheBytes/4/inodeBytes))
	}
	if cfg.FlushAge <= 0 {
		cfg.FlushAge = 2 * time.Second
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Meta, cfg.Data = spaceStore{cfg.Meta}, spaceStore{cfg.Data} // a full disk is ENOSPC (space.go)
	mlog := newWBStore(cfg.Meta)
	f := &FS{
		cfg:      cfg,
		meta:     mlog,
		rawMeta:  cfg.Meta,
		mlog:     mlog,
		data:     cfg.Data,
		log:      cfg.Logger,
		inodes:   map[uint64]*inode{},
		stopc:    make(chan struct{}),
		pushes:   make(chan struct{}, 4),
		trimKick: make(chan struct{}, 1),
		closeq:   make(chan *inode, 4096),
	}
	f.life, f.endLife = context.WithCancel(context.Background())
	f.cache = newCache(f, cfg.CacheBytes-int64(cfg.MaxInodes)*inodeBytes)
	f.dents = newDirentCache()
	if err := f.checkSuper(ctx); err != nil {
		return nil, err
	}
	if !cfg.PrivateStore {
		if err := f.takeLease(ctx); err != nil {
			return nil, err
		}
	}
	err := f.init(ctx)
	if err == nil {
		err = f.mlog.Flush(ctx)
	}
	if err != nil {
		if !cfg.PrivateStore {
			f.rawMeta.Del(ctx, keyLease)
		}
		f.endLife()
		return nil, err
	}
	f.wg.Add(4)
	go f.flushLoop()
	go f.leaseLoop()
	go f.trimLoop()
	go f.closeLoop()
	return f, nil
}

func (f *FS) checkSuper(ctx context.Context) error {
	v, err := f.rawMeta.Get(ctx, keySuper)
	if errors.Is(err, ErrNotFound) {
		s := &super{Version: FormatVersion, BlockSize: BlockSize, Created: nowNs()}
		if err := f.rawMeta.Set(ctx, keySuper, encodeSuper(s)); err != nil {
			return fmt.Errorf("write superblock: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read superblock: %w", err)
	}
	s, err := decodeSuper(v)
	if err != nil {
		return err
	}
	if s.Version < 1 || s.Version > FormatVersion || s.BlockSize != BlockSize {
		return fmt.Errorf("zdbfs format v%d with %d-byte blocks: this build reads v1 to v%d with %d-byte blocks",
			s.Version, s.BlockSize, FormatVersion, BlockSize)
	}
	if s.Version < FormatVersion {
		// This mount writes v2 inode records, which a v1 build cannot
		// read: mark the namespace v2 first, so that such a build refuses
		// it with a clear error instead of failing on a record.
		s.Version = FormatVersion
		if err := f.rawMeta.Set(ctx, keySuper, encodeSuper(s)); err != nil {
			return fmt.Errorf("upgrade superblock to v%d: %w", FormatVersion, err)
		}
		f.log.Info("zdbfs namespace upgraded", "format", FormatVersion)
	}
	return nil
}

// ErrMounted is returned by New when another live mount holds the lease.
var ErrMounted = errors.New("the namespaces are mounted elsewhere (lease held)")

// takeLease refuses to mount when a live lease is recorded: one held by a
// running process of this host, or one renewed within LeaseTTL by another
// host. A lease of a dead local process (kill -9) is taken over.
func (f *FS) takeLease(ctx context.Context) error {
	host, _ := os.Hostname()
	v, err := f.rawMeta.Get(ctx, keyLease)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fmt.Errorf("read lease: %w", err)
	default:
		old, derr := decodeLease(v)
		if derr == nil {
			age := time.Duration(nowNs() - old.Renewed)
			if old.Host == host {
				if processAlive(int(old.PID)) {
					return fmt.Errorf("%w: pid %d on %s", ErrMounted, old.PID, old.Host)
				}
			} else if age < f.cfg.LeaseTTL {
				return fmt.Errorf("%w: pid %d on %s, renewed %v ago", ErrMounted, old.PID, old.Host, age)
			}
			f.log.Warn("taking over a stale lease", "pid", old.PID, "host", old.Host)
		}
	}
	l := lease{PID: uint32(os.Getpid()), Renewed: nowNs(), Host: host}
	rand.Read(l.Token[:])
	if err := f.rawMeta.Set(ctx, keyLease, encodeLease(&l)); err != nil {
		return fmt.Errorf("write lease: %w", err)
	}
	f.lease = l
	return nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (f *FS) leaseLoop() {
	defer f.wg.Done()
	if f.cfg.PrivateStore {
		return
	}
	t := time.NewTicker(f.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-f.stopc:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(f.life, 10*time.Second)
			f.lease.Renewed = nowNs()
			if err := f.rawMeta.Set(ctx, keyLease, encodeLease(&f.lease)); err != nil {
				f.log.Warn("renew lease", "err", err)
			}
			cancel()
		}
	}
}

func (f *FS) init(ctx context.Context) error {
	v, err := f.meta.Get(ctx, keyAlloc)
	switch {
	case errors.Is(err, ErrNotFound):
		f.nextIno, f.limitIn = RootIno+1, RootIno+1
	case err != nil:
		return fmt.Errorf("read allocator: %w", err)
	default:
		vs, err := decodeU64s(v)
		if err != nil || len(vs) != 1 {
			return fmt.Errorf("allocator record: %w", errCorrupt)
		}
		// Ids below the reserved limit may have been handed out before a
		// crash: start above it.
		f.nextIno, f.limitIn = vs[0], vs[0]
	}
	if _, err := f.meta.Get(ctx, inodeKey(RootIno)); errors.Is(err, ErrNotFound) {
		t := nowNs()
		root := &attrs{Mode: syscall.S_IFDIR | 0o755, UID: f.cfg.UID, GID: f.cfg.GID, Nlink: 2,
			Atime: t, Mtime: t, Ctime: t}
		if err := f.meta.Set(ctx, inodeKey(RootIno), encodeInode(root)); err != nil {
			return fmt.Errorf("create root: %w", err)
		}
		f.fresh.added(RootIno)
	} else if err != nil {
		return fmt.Errorf("read root: %w", err)
	}
	v, err = f.meta.Get(ctx, keyOrphans)
	if err == nil {
		list, _ := decodeU64s(v)
		for _, ino := range list {
			in, err := f.loadInode(ctx, ino)
			if err == nil {
				f.log.Info("purging orphan inode", "ino", ino)
				if err := f.purge(ctx, in); err != nil {
					return err
				}
			}
		}
		if err := f.meta.Del(ctx, keyOrphans); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("read orphans: %w", err)
	}
	return nil
}

// allocIno hands out a new inode id. Ids are reserved allocChunk at a time
// with a durable write of the new limit before any is used, so an id is
// never handed out twice, even after a crash.
func (f *FS) allocIno(ctx context.Context) (uint64, error) {
	f.amu.Lock()
	defer f.amu.Unlock()
	if f.nextIno >= f.limitIn {
		lim := f.nextIno + allocChunk
		if err := f.meta.Set(ctx, keyAlloc, encodeU64s([]uint64{lim})); err != nil {
			return 0, fmt.Errorf("reserve inode ids: %w", err)
		}
		f.limitIn = lim
	}
	f.nextIno++
	return f.nextIno - 1, nil
}

// loadInode returns the in-memory inode of ino, reading it from the store
// when no node holds it. It does not count a node reference.
func (f *FS) loadInode(ctx context.Context, ino uint64) (*inode, error) {
	f.tmu.Lock()
	if in, ok := f.inodes[ino]; ok {
		f.tmu.Unlock()
		return in, nil
	}
	f.tmu.Unlock()
	v, err := f.meta.Get(ctx, inodeKey(ino))
	if err != nil {
		return nil, err
	}
	a, err := decodeInode(v)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	in := &inode{ino: ino, a: *a, pa: *a}
	if err := f.cleanupBlocks(ctx, in); err != nil {
		return nil, err
	}
	f.tmu.Lock()
	defer f.tmu.Unlock()
	if old, ok := f.inodes[ino]; ok {
		return old, nil
	}
	f.inodes[ino] = in
	return in, nil
}

// cleanupBlocks deletes the block keys a crashed flush may have left
// beyond the persisted size (see the crash story in the format doc).
func (f *FS) cleanupBlocks(ctx context.Context, in *inode) error {
	if !in.isReg() {
		return nil
	}
	keep := (in.a.Size + BlockSize - 1) / BlockSize
	if in.a.Inline {
		keep = 0
	}
	if in.a.HWM <= keep {
		return nil
	}
	if _, err := f.delBlocks(ctx, in.ino, keep, in.a.HWM, in.a.Paged, false); err != nil {
		return err
	}
	in.a.HWM, in.pa.HWM = keep, keep
	return f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&in.a))
}

// ref counts a FUSE node created for in; unref drops it and evicts a
// clean, closed inode from the table.
func (f *FS) ref(in *inode) {
	f.tmu.Lock()
	in.nodes++
	f.inodes[in.ino] = in
	over := len(f.inodes) > f.cfg.MaxInodes+f.cfg.MaxInodes/8
	f.tmu.Unlock()
	if over {
		select {
		case f.trimKick <- struct{}{}:
		default:
		}
	}
}

func (f *FS) unref(in *inode) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f.tmu.Lock()
	in.nodes--
	if in.nodes <= 0 {
		in.node = nil
	}
	drop := in.nodes <= 0 && in.opens == 0 && !f.cache.hasDirty(in.ino) && !in.dirty
	if drop && f.inodes[in.ino] == in {
		delete(f.inodes, in.ino)
	}
	f.tmu.Unlock()
	if drop {
		f.cache.dropInode(in.ino, false)
	}
}

// recordView is the inode record that may be written outside a data
// flush: the current attributes, but for a regular file the size, block
// high-water mark, inline data, page flag and stored bytes as last
// written by a flush, so that the record never claims data that is not
// stored.
func (in *inode) recordView() attrs {
	v := in.a
	if in.isReg() {
		v.Size, v.HWM, v.Inline, v.Data = in.pa.Size, in.pa.HWM, in.pa.Inline, in.pa.Data
		v.Paged, v.Alloc = in.pa.Paged, in.pa.Alloc
	}
	return v
}

// saveLocked writes in's record as recordView gives it (the data of a
// regular file is written by flushLocked). The caller holds in.mu.
func (f *FS) saveLocked(ctx context.Context, in *inode) error {
	if in.gone {
		return nil
	}
	v := in.recordView()
	if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&v)); err != nil {
		return err
	}
	in.pa = v
	in.gen++
	if !in.isReg() || (in.a.Size == v.Size && in.a.Inline == v.Inline && !f.cache.hasDirty(in.ino)) {
		in.dirty = false
	}
	return nil
}

// addOrphan records ino in the orphan list (unlinked while open), so that
// a crash does not leak it: the next mount purges it.
func (f *FS) addOrphan(ctx context.Context, ino uint64) error {
	f.omu.Lock()
	defer f.omu.Unlock()
	list := append(slices.Clone(f.orphans), ino)
	if err := f.meta.Set(ctx, keyOrphans, encodeU64s(list)); err != nil {
		return err
	}
	f.orphans = list
	return nil
}

func (f *FS) removeOrphan(ctx context.Context, ino uint64) error {
	f.omu.Lock()
	defer f.omu.Unlock()
	i := slices.Index(f.orphans, ino)
	if i < 0 {
		return nil
	}
	list := slices.Delete(slices.Clone(f.orphans), i, i+1)
	var err error
	if len(list) == 0 {
		err = f.meta.Del(ctx, keyOrphans)
	} else {
		err = f.meta.Set(ctx, keyOrphans, encodeU64s(list))
	}
	if err == nil {
		f.orphans = list
	}
	return err
}

// purge deletes an inode with no links left: its blocks, xattrs and record.
func (f *FS) purge(ctx context.Context, in *inode) error {
	in.quiesce()
	in.gen++
	f.cache.dropInode(in.ino, true)
	if in.isReg() && in.pa.HWM > 0 {
		// The removal of its last name must be in zdb before its blocks
		// go, or a crash could bring the name back with zeros.
		if err := f.mlog.Flush(ctx); err != nil {
			return err
		}
		if _, err := f.delBlocks(ctx, in.ino, 0, in.pa.HWM, in.pa.Paged, false); err != nil {
			return err
		}
	}
	err := f.meta.Apply(ctx, []Op{{Key: xattrKey(in.ino), Del: true}, {Key: inodeKey(in.ino), Del: true}})
	if err != nil {
		return err
	}
	in.gone = true
	return nil
}

// dropLink is called with f.mu and in.mu held when a name of in goes away.
func (f *FS) dropLinkLocked(ctx context.Context, in *inode) error {
	if in.isDir() {
		in.a.Nlink = 0
	} else if in.a.Nlink > 0 {
		in.a.Nlink--
	}
	in.a.Ctime = nowNs()
	if in.a.Nlink > 0 {
		return f.saveLocked(ctx, in)
	}
	if in.opens > 0 {
		if err := f.addOrphan(ctx, in.ino); err != nil {
			return err
		}
		in.unlinked = true
		return f.saveLocked(ctx, in)
	}
	return f.purge(ctx, in)
}

// SyncAll flushes every dirty block and inode (fsync of the root
// directory, unmount).
func (f *FS) SyncAll(ctx context.Context) error {
	first := f.flushFiles(ctx, f.tableInodes(f.cache.dirtyInodes()), "sync")
	f.tmu.Lock()
	var rest []*inode
	for _, in := range f.inodes {
		rest = append(rest, in)
	}
	f.tmu.Unlock()
	for _, in := range rest {
		in.mu.Lock()
		var err error
		if in.dirty {
			err = f.flushLocked(ctx, in)
		}
		in.mu.Unlock()
		if err != nil && first == nil {
			first = err
		}
	}
	if err := f.mlog.Flush(ctx); err != nil && first == nil {
		first = err
	}
	return first
}

// tableInodes returns the inodes the table holds for inos (a number
// whose inode is gone is left out).
func (f *FS) tableInodes(inos []uint64) []*inode {
	f.tmu.Lock()
	defer f.tmu.Unlock()
	out := make([]*inode, 0, len(inos))
	for _, ino := range inos {
		if in := f.inodes[ino]; in != nil {
			out = append(out, in)
		}
	}
	return out
}

// flushFiles flushes ins: their high-water marks first, with one flush of
// the metadata log for all of them (raiseMarks), then each file's data
// and record. A file flushed cleanly may be evicted; failures are logged
// as what and the first is returned.
func (f *FS) flushFiles(ctx context.Context, ins []*inode, what string) error {
	first := f.raiseMarks(ctx, ins)
	if first != nil {
		f.log.Warn(what, "files", len(ins), "err", first)
	}
	for _, in := range ins {
		in.mu.Lock()
		err := f.flushLocked(ctx, in)
		if err == nil {
			f.maybeEvict(in)
		}
		in.mu.Unlock()
		if err != nil {
			f.log.Warn(what, "ino", in.ino, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// flushLoop flushes the data of files whose oldest dirty block is older
// than FlushAge, and more when the cache holds too much dirty data.
func (f *FS) flushLoop() {
	defer f.wg.Done()
	tick := max(f.cfg.FlushAge/4, 50*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-f.stopc:
			return
		case <-t.C:
		case <-f.cache.kick:
		}
		if due := f.tableInodes(f.cache.flushCandidates(f.cfg.FlushAge)); len(due) > 0 {
			ctx, cancel := context.WithTimeout(f.life, 30*time.Second)
			f.flushFiles(ctx, due, "background flush")
			cancel()
		}
		if n, age := f.mlog.pending(); n > wbMaxOps/2 || (n > 0 && age >= f.cfg.FlushAge) {
			ctx, cancel := context.WithTimeout(f.life, 30*time.Second)
			if err := f.mlog.Flush(ctx); err != nil {
				f.log.Warn("background metadata flush", "pending", n, "err", err)
			}
			cancel()
		}
	}
}

// closeLoop flushes the files closed after writing (unless SyncClose), a
// batch at a time: each file's data, then one metadata flush for the
// whole batch.
func (f *FS) closeLoop() {
	defer f.wg.Done()
	for {
		var batch []*inode
		select {
		case <-f.stopc:
			return
		case in := <-f.closeq:
			batch = append(batch, in)
		}
	more:
		for len(batch) < 1024 {
			select {
			case in := <-f.closeq:
				batch = append(batch, in)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(f.life, 2*time.Minute)
		f.flushFiles(ctx, batch, "flush after close")
		if err := f.mlog.Flush(ctx); err != nil {
			f.log.Warn("metadata flush after close", "err", err)
		}
		cancel()
	}
}

// Close flushes everything, releases the lease and stops the background
// work. The stores are left open (they belong to the caller).
//
// Close takes at most until ctx's deadline (plus the time to notice):
// when it passes — zdb does not answer — the background work is
// cancelled too, and Close returns the flush's error; what was not
// flushed is lost, as in a crash, and the next mount finds the last
// durable state.
func (f *FS) Close(ctx context.Context) error {
	stop := context.AfterFunc(ctx, f.endLife)
	defer stop()
	err := f.SyncAll(ctx)
	close(f.stopc)
	f.wg.Wait()
	f.bg.Wait()
	f.endLife()
	st := &f.Stats
	f.log.Info("zdbfs statistics", "requests", st.Requests.Load(), "cache_hits", st.CacheHits.Load(),
		"cache_misses", st.CacheMisses.Load(), "bytes_read", st.BytesRead.Load(), "bytes_written", st.BytesWrite.Load(),
		"errors", st.Errors.Load(), "flushes", st.Flushes.Load(), "metadata_flushes", f.mlog.flushes,
		"trims", st.Trims.Load(), "page_pushes", st.Pushes.Load(), "push_errors", st.PushErrors.Load(), "prefetched", st.Prefetched.Load())
	// The lease goes even when the flush failed: this process no longer
	// serves the namespaces.
	var lerr error
	if !f.cfg.PrivateStore {
		lerr = f.rawMeta.Del(ctx, keyLease)
	}
	if err != nil {
		return fmt.Errorf("final flush: %w", err)
	}
	if lerr != nil {
		return fmt.Errorf("release lease: %w", lerr)
	}
	return nil
}
