// Package qsfs is the lifecycle of a qsfs filesystem's local files: a zdb
// engine (the local cache and write buffer) whose recovery points are
// stored on remote backends (zstor), whose closed data files leave the
// local disk under a cache cap and come back, a range at a time, when
// read, and which a fresh machine restores from the backends alone.
//
// The flow of a write (docs/qsfs.md, "The lifecycle of a file"):
//
//  1. zdbfs stores it in the engine's namespaces (zdbfs-meta, zdbfs-data);
//     a write waits when the cache is full and nothing can be evicted.
//  2. Every rpo/2 (and on Sync) a cut rotates the changed namespaces
//     (metadata first, so that every block a metadata record names is in a
//     closed data file) and copies the changed closed index files and the
//     descriptors aside (zdb's Namespace.Cut): a recovery point.
//  3. The upload queue (durable, in state/qsfs.db) stores the closed data
//     files and the copies through the Remote; once every object of a
//     point is stored, the point's manifest is stored: it is the recovery
//     point restore uses.
//  4. Stored data files may be evicted (least recently read first); a
//     read of an evicted file fetches the payload's range only.
//  5. Objects that no stored point needs any more are deleted after a
//     grace period.
package qsfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"qss/zdb"
	"qss/zdbfs"
)

// The namespaces a qsfs filesystem holds, in cut order: metadata before
// data, so that a point never names a block its data namespace lacks.
const (
	MetaNamespace = "zdbfs-meta"
	DataNamespace = "zdbfs-data"
)

var namespaces = []string{MetaNamespace, DataNamespace}

// Options configure a Node.
type Options struct {
	Dir       string // local directory: data/, index/, state/
	CacheSize int64  // local disk use the node keeps under (bytes)
	RPO       time.Duration
	// DataFileSize is the engine's data file rotation size (default 64 MiB).
	DataFileSize int64
	// UploadConcurrency is the number of uploads in flight (default 2).
	UploadConcurrency int
	// GCGrace is how long an object no stored point needs is kept (default 24 h).
	GCGrace time.Duration
	// BackpressureWait is how long a write waits for cache space before it
	// fails with ENOSPC (default 30 s).
	BackpressureWait time.Duration
	// RepairEvery is how often the Remote's repair runs when it is a
	// Maintainer (default 1 min): objects that lost shards (a backend
	// lost or replaced) get them back.
	RepairEvery time.Duration
	// CompactInterval is how often the engine checks whether to compact
	// (default 5 s; it compacts above a garbage ratio of 0.3).
	CompactInterval time.Duration
	// FSCacheBytes is zdbfs's memory cache (default 64 MiB).
	FSCacheBytes int64
	Remote       Remote
	Logger       *slog.Logger
}

// Node is an open qsfs filesystem: the engine, its backup and its cache.
type Node struct {
	opts  Options
	log   *slog.Logger
	eng   *zdb.Engine
	st    *state
	dirs  struct{ data, index, state, snap string }
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	kickc chan struct{} // wakes the uploaders
	evc   chan struct{} // wakes the evictor

	cutMu sync.Mutex // one cut at a time

	mu           sync.Mutex
	committed    uint64               // generation of the last stored point
	committedAt  time.Time            // when it was stored
	commitc      chan struct{}        // closed and replaced at each commit
	firstWrite   time.Time            // first write since the last cut (zero: none)
	firsts       map[uint64]time.Time // per point not stored: its first write
	backoff      map[string]time.Time
	pinned       map[string]time.Time // fetched back: not evicted before this
	lastWrite    atomic.Int64         // unix ns of the last admitted write
	syncers      atomic.Int32         // Sync calls waiting for a point
	inflight     map[string]bool
	lastUploadOK time.Time
	lastErr      string

	used       atomic.Int64 // local bytes at the last scan
	admitted   atomic.Int64 // bytes admitted, ever
	admitBase  atomic.Int64 // admitted at the start of the scan before the last one
	scanMu     sync.Mutex
	prevScan   int64        // admitted at the start of the last scan (scanMu)
	demand     atomic.Int64 // bytes writers wait to be admitted for
	spacec     chan struct{}
	spaceMu    sync.Mutex
	lastForced atomic.Int64 // unix ns of the last cut forced by a full cache

	stats Counters

	redMu      sync.Mutex
	redAt      time.Time
	red        Redundancy
	lastRepair RepairState

	fsMu sync.Mutex
	fs   *zdbfs.FS
}

// Counters are the node's running totals.
type Counters struct {
	Uploads, UploadBytes, UploadErrors atomic.Uint64
	Evictions, EvictedBytes            atomic.Uint64
	Fetches, FetchBytes, FetchErrors   atomic.Uint64
	Deleted                            atomic.Uint64
	WriteWaits, WriteENOSPC            atomic.Uint64
}

// ErrForeignFilesystem is returned by Open on an empty local directory
// when the backends already hold a qsfs filesystem: mounting a new one
// would replace its recovery point. Restore it instead.
var ErrForeignFilesystem = errors.New("the backends already hold a qsfs filesystem: run `qsfs restore` on an empty directory first")

func (o *Options) defaults() error {
	if o.Dir == "" {
		return errors.New("qsfs: no local directory")
	}
	if o.Remote == nil {
		return errors.New("qsfs: no remote")
	}
	if o.CacheSize <= 0 {
		return errors.New("qsfs: cache size must be positive")
	}
	if o.RPO <= 0 {
		o.RPO = 60 * time.Second
	}
	if o.DataFileSize <= 0 {
		o.DataFileSize = 64 << 20
	}
	if o.UploadConcurrency <= 0 {
		o.UploadConcurrency = 2
	}
	if o.GCGrace <= 0 {
		o.GCGrace = 24 * time.Hour
	}
	if o.BackpressureWait <= 0 {
		o.BackpressureWait = 30 * time.Second
	}
	if o.RepairEvery <= 0 {
		o.RepairEvery = time.Minute
	}
	if o.CompactInterval <= 0 {
		o.CompactInterval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func (n *Node) setDirs(dir string) {
	n.dirs.data = filepath.Join(dir, "data")
	n.dirs.index = filepath.Join(dir, "index")
	n.dirs.state = filepath.Join(dir, "state")
	n.dirs.snap = filepath.Join(dir, "state", "snap")
}

// statePath is the state database of the local directory dir.
func statePath(dir string) string { return filepath.Join(dir, "state", "qsfs.db") }

// Open opens (or creates) the filesystem in opts.Dir and starts its
// backup, eviction and garbage collection. On a directory without state
// it checks that the backends hold no filesystem yet
// (ErrForeignFilesystem).
func Open(ctx context.Context, opts Options) (*Node, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	n := &Node{opts: opts, log: opts.Logger, kickc: make(chan struct{}, 1), evc: make(chan struct{}, 1),
		commitc: make(chan struct{}), spacec: make(chan struct{}), backoff: map[string]time.Time{}, inflight: map[string]bool{}}
	n.setDirs(opts.Dir)
	_, err := os.Stat(statePath(opts.Dir))
	fresh := errors.Is(err, fs.ErrNotExist)
	if fresh {
		if ents, _ := os.ReadDir(n.dirs.index); len(ents) > 0 {
			return nil, fmt.Errorf("qsfs: %s holds index files but no state: an interrupted restore? run `qsfs restore` again on an empty directory", opts.Dir)
		}
		if err := checkNoManifest(ctx, opts.Remote, n.dirs.state); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{n.dirs.data, n.dirs.index, n.dirs.snap} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("qsfs: %w", err)
		}
	}
	if n.st, err = openState(statePath(opts.Dir)); err != nil {
		return nil, err
	}
	if m, err := n.st.manifest(); err == nil && m != nil {
		n.committed, n.committedAt = m.Generation, m.Cut
	}
	n.ctx, n.stop = context.WithCancel(context.Background())
	n.eng, err = zdb.Open(zdb.Options{
		DataDir: n.dirs.data, IndexDir: n.dirs.index, DataSize: opts.DataFileSize,
		Hooks: n, Fetcher: n, CompactRatio: 0.3, CompactInterval: opts.CompactInterval,
		CompactFilter: n.compactable, Logger: opts.Logger.With("part", "zdb"),
	})
	if err != nil {
		n.st.close()
		return nil, fmt.Errorf("qsfs: open the local zdb: %w", err)
	}
	for _, ns := range namespaces {
		if n.eng.Namespace(ns) == nil {
			if err := n.eng.CreateNamespace(ns); err != nil && !errors.Is(err, zdb.ErrNamespaceExists) {
				n.closeEngine()
				return nil, fmt.Errorf("qsfs: create namespace %s: %w", ns, err)
			}
		}
	}
	if err := n.recover(); err != nil {
		n.closeEngine()
		return nil, err
	}
	n.scanUsage()
	n.wg.Add(opts.UploadConcurrency + 4)
	go n.repairLoop()
	for range opts.UploadConcurrency {
		go n.uploader()
	}
	go n.cutLoop()
	go n.evictLoop()
	go n.gcLoop()
	n.kick()
	return n, nil
}

func (n *Node) closeEngine() {
	n.stop()
	n.eng.Close()
	n.st.close()
}

// Engine is the node's zdb engine.
func (n *Node) Engine() *zdb.Engine { return n.eng }

// Stats are the node's counters.
func (n *Node) Stats() *Counters { return &n.stats }

// NewFS opens zdbfs on the node's namespaces. Its writes pass the cache's
// admission (backpressure), and the node's Sync flushes it first.
func (n *Node) NewFS(ctx context.Context, cfg zdbfs.Config) (*zdbfs.FS, error) {
	cfg.Meta = &gatedStore{EngineStore: zdbfs.NewEngineStore(n.eng.Namespace(MetaNamespace)), n: n}
	cfg.Data = &gatedStore{EngineStore: zdbfs.NewEngineStore(n.eng.Namespace(DataNamespace)), n: n}
	cfg.PrivateStore = true
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = n.opts.FSCacheBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = n.log.With("part", "zdbfs")
	}
	f, err := zdbfs.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	n.fsMu.Lock()
	n.fs = f
	n.fsMu.Unlock()
	return f, nil
}

// ReleaseFS forgets the filesystem NewFS opened (after its Close).
func (n *Node) ReleaseFS() {
	n.fsMu.Lock()
	n.fs = nil
	n.fsMu.Unlock()
}

// Sync returns once everything written before it is stored on the
// backends: zdbfs is flushed to the engine, a point is cut, and Sync waits
// until that point (or a later one) is stored.
func (n *Node) Sync(ctx context.Context) error {
	n.fsMu.Lock()
	f := n.fs
	n.fsMu.Unlock()
	if f != nil {
		if err := f.SyncAll(ctx); err != nil {
			return fmt.Errorf("qsfs sync: flush the filesystem: %w", err)
		}
	}
	gen, err := n.cut(false)
	if err != nil {
		return fmt.Errorf("qsfs sync: %w", err)
	}
	return n.waitCommitted(ctx, gen)
}

func (n *Node) waitCommitted(ctx context.Context, gen uint64) error {
	n.syncers.Add(1)
	defer n.syncers.Add(-1)
	n.kick()
	for {
		n.mu.Lock()
		done, c := n.committed >= gen, n.commitc
		n.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-c:
		case <-ctx.Done():
			return fmt.Errorf("qsfs sync: waiting for recovery point %d (%s): %w", gen, n.pendingSummary(), context.Cause(ctx))
		}
	}
}

// Close cuts a last point, waits for it to be stored until ctx ends
// (what is not stored then is uploaded at the next start), and closes the
// engine and the state. The filesystem NewFS opened must be closed first.
func (n *Node) Close(ctx context.Context) error {
	var serr error
	if gen, err := n.cut(false); err != nil {
		serr = err
	} else if err := n.waitCommitted(ctx, gen); err != nil {
		n.log.Warn("closing before the last recovery point was stored; it is uploaded at the next start", "err", err)
	}
	n.shutdown()
	eerr := n.eng.Close()
	cerr := n.st.close()
	return errors.Join(serr, eerr, cerr)
}

// Crash stops the node without a last point or a clean engine close, as a
// kill -9 would (tests only).
func (n *Node) crash() {
	n.shutdown()
	n.st.close()
}

// shutdown stops the node's goroutines and waits for them.
func (n *Node) shutdown() {
	n.stop()
	n.wg.Wait()
}

// pendingSummary says what the oldest point waiting to be stored still
// needs (for errors and logs).
func (n *Node) pendingSummary() string {
	eps, err := n.st.epochs()
	if err != nil || len(eps) == 0 {
		return "no point waiting"
	}
	m := eps[len(eps)-1]
	var missing []string
	for name := range m.objectNames() {
		if _, ok := n.st.stored(name); !ok {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 5 {
		missing = append(missing[:5], "…")
	}
	jobs, _ := n.st.jobs()
	return fmt.Sprintf("point %d lacks %v; %d uploads queued", m.Generation, missing, len(jobs))
}
