// Package zdb is the storage engine of the 0-db compatible server: named
// namespaces of append-only index and data files in 0-db v2's on-disk
// format (docs/zdb-format.md), an in-memory key index per namespace, file
// rotation, crash recovery and hooks.
//
// The engine knows nothing of the network: zdb/server puts the RESP protocol
// in front of it, and other programs may embed it directly: they receive
// its events through Options.Hooks (events.go), bring back evicted data
// files through Options.Fetcher and evict them with EvictDataFile
// (datafiles.go). docs/zdb.md, "Embedding the engine", has the contract.
package zdb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultNamespace always exists.
const DefaultNamespace = "default"

// Options configure an Engine. Zero values take 0-db's defaults.
type Options struct {
	DataDir  string        // root of d<N> files (./zdb-data)
	IndexDir string        // root of i<N> files (./zdb-index)
	Mode     *Mode         // a single runtime mode; nil: mixed, per namespace
	DataSize int64         // rotate data files at this size (256 MiB)
	MaxSize  uint64        // default maxsize of new namespaces (0: none)
	Sync     bool          // fsync every write
	SyncTime time.Duration // fsync every interval
	Rotate   time.Duration // rotate changed namespaces after this long
	// Hooks receive the engine's events (nil: none). zdb's --hook is
	// NewExecHooks; MultiHooks combines several.
	Hooks Hooks
	// Fetcher brings back closed data files absent from the local disk
	// (nil: the missing-data event does, as in 0-db).
	Fetcher Fetcher
	// MaxOpenDataFiles caps the closed data files kept open per namespace
	// (DefaultMaxOpenDataFiles when 0 or less).
	MaxOpenDataFiles int
	// ProtectDefault makes the default namespace read-only unless selected
	// with this password (--protect with --admin).
	ProtectDefault string
	// CompactRatio starts a namespace's compaction when the dead share of
	// its data files passes it (0: DefaultCompactRatio; negative: never).
	CompactRatio float64
	// CompactHorizon keeps closed files changed more recently than this
	// out of compaction, so HISTORY sees every version written within it.
	CompactHorizon time.Duration
	// CompactFilter, when set, says whether closed data file fileID of
	// namespace may be compacted (and so removed): a backup layer (qsfs)
	// allows only files it has stored, so that every file a recovery point
	// names can still be uploaded.
	CompactFilter func(namespace string, fileID uint32) bool
	// CompactInterval is how often the garbage ratios are checked (10 s).
	CompactInterval time.Duration
	Logger          *slog.Logger
}

// Limits on Options.DataSize.
const (
	DefaultDataSize = 256 << 20
	MinDataSize     = 512 << 10
	MaxDataSize     = 4<<30 - 1
)

// Engine holds every namespace of one server.
type Engine struct {
	opts  Options
	log   *slog.Logger
	hooks Hooks // nil without hooks
	locks []*os.File

	// ctx is given to hooks and fetches; Close cancels it once the last
	// event was delivered. fetches counts the fetches in flight; none
	// starts once fetchStop is set (under fetchMu).
	ctx       context.Context
	cancel    context.CancelFunc
	fetchMu   sync.Mutex
	fetchStop bool
	fetches   sync.WaitGroup

	mu     sync.RWMutex
	spaces map[string]*Namespace

	stats  Stats
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
}

// Stats are the engine's counters for INFO.
type Stats struct {
	indexRead, indexWritten           atomic.Uint64
	dataRead, dataWritten             atomic.Uint64
	indexReadFailed, indexWriteFailed atomic.Uint64
	dataReadFailed, dataWriteFailed   atomic.Uint64
}

// StatsSnapshot is a copy of the counters.
type StatsSnapshot struct {
	IndexRead, IndexWritten, DataRead, DataWritten                     uint64 // bytes
	IndexReadFailed, IndexWriteFailed, DataReadFailed, DataWriteFailed uint64
}

// Snapshot returns the current counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		IndexRead: s.indexRead.Load(), IndexWritten: s.indexWritten.Load(),
		DataRead: s.dataRead.Load(), DataWritten: s.dataWritten.Load(),
		IndexReadFailed: s.indexReadFailed.Load(), IndexWriteFailed: s.indexWriteFailed.Load(),
		DataReadFailed: s.dataReadFailed.Load(), DataWriteFailed: s.dataWriteFailed.Load(),
	}
}

// Open locks the data and index roots, runs the namespaces-init hook, and
// loads every namespace.
func Open(opts Options) (*Engine, error) {
	if opts.DataDir == "" {
		opts.DataDir = "./zdb-data"
	}
	if opts.IndexDir == "" {
		opts.IndexDir = "./zdb-index"
	}
	if opts.DataSize == 0 {
		opts.DataSize = DefaultDataSize
	}
	if opts.DataSize < MinDataSize || opts.DataSize > MaxDataSize {
		return nil, fmt.Errorf("datasize %d out of range [%d, %d]", opts.DataSize, MinDataSize, MaxDataSize)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CompactRatio == 0 {
		opts.CompactRatio = DefaultCompactRatio
	}
	if opts.CompactInterval <= 0 {
		opts.CompactInterval = 10 * time.Second
	}
	if opts.MaxOpenDataFiles <= 0 {
		opts.MaxOpenDataFiles = DefaultMaxOpenDataFiles
	}
	e := &Engine{opts: opts, log: opts.Logger, hooks: opts.Hooks, spaces: map[string]*Namespace{}, stop: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	opened := false
	defer func() {
		if !opened {
			e.cancel()
		}
	}()
	for _, dir := range []string{opts.IndexDir, opts.DataDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			e.unlock()
			return nil, err
		}
		f, err := lockDir(dir)
		if err != nil {
			e.unlock()
			return nil, err
		}
		e.locks = append(e.locks, f)
	}
	e.emit(Event{Kind: EventNamespacesInit, IndexDir: opts.IndexDir, DataDir: opts.DataDir})

	names, err := e.scanNamespaces()
	if err != nil {
		e.unlock()
		return nil, err
	}
	for _, name := range names {
		if _, err := e.openNamespace(name); err != nil {
			e.closeAll()
			return nil, fmt.Errorf("namespace %q: %w", name, err)
		}
	}
	if e.spaces[DefaultNamespace] == nil {
		if _, err := e.openNamespace(DefaultNamespace); err != nil {
			e.closeAll()
			return nil, fmt.Errorf("namespace %q: %w", DefaultNamespace, err)
		}
	}
	// Loading leaves garbage (read windows, validation lists); hand it back
	// to the system now rather than keep it until the heap grows again.
	debug.FreeOSMemory()
	e.startLoops()
	opened = true
	return e, nil
}

// lockDir takes the exclusive flock on dir/.lockfile so that two servers
// never share files.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, ".lockfile")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another server: %w", dir, err)
	}
	return f, nil
}

func (e *Engine) unlock() error {
	var first error
	for _, f := range e.locks {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	e.locks = nil
	return first
}

func (e *Engine) scanNamespaces() ([]string, error) {
	ents, err := os.ReadDir(e.opts.IndexDir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(e.opts.IndexDir, ent.Name(), NamespaceFileName)); err == nil {
			names = append(names, ent.Name())
		}
	}
	return names, nil
}

func (e *Engine) defaultMode() Mode {
	if e.opts.Mode != nil {
		return *e.opts.Mode
	}
	return ModeUser
}

func (e *Engine) openNamespace(name string) (*Namespace, error) {
	ns := &Namespace{
		eng: e, name: name,
		indexDir: filepath.Join(e.opts.IndexDir, name),
		dataDir:  filepath.Join(e.opts.DataDir, name),
	}
	start := time.Now()
	if err := ns.load(true, e.defaultMode()); err != nil {
		ns.close()
		return nil, err
	}
	if e.opts.Mode != nil && ns.mode != *e.opts.Mode {
		ns.close()
		return nil, fmt.Errorf("files are in %s mode but the server runs in %s mode", ns.mode, *e.opts.Mode)
	}
	if name == DefaultNamespace && e.opts.ProtectDefault != "" {
		ns.desc.Password = e.opts.ProtectDefault
		ns.desc.Public = true
	}
	e.log.Info("namespace loaded", "namespace", name, "mode", ns.mode.String(), "keys", ns.idx.Len(),
		"files", len(ns.indexFiles), "took", time.Since(start).Round(time.Millisecond))
	e.mu.Lock()
	e.spaces[name] = ns
	e.mu.Unlock()
	return ns, nil
}

// Namespace returns the namespace called name, or nil.
func (e *Engine) Namespace(name string) *Namespace {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.spaces[name]
}

// Namespaces lists the names, default first, the others sorted.
func (e *Engine) Namespaces() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	names := make([]string, 0, len(e.spaces))
	for n := range e.spaces {
		if n != DefaultNamespace {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return append([]string{DefaultNamespace}, names...)
}

// ValidName checks a namespace name for NSNEW.
func ValidName(name string) error {
	if len(name) > MaxNameLen {
		return ErrNameTooLong
	}
	if name == "" || name == DefaultNamespace || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return ErrNameNotAllowed
	}
	return nil
}

// CreateNamespace makes a new public, password-less namespace (NSNEW).
func (e *Engine) CreateNamespace(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	e.mu.Lock()
	if e.spaces[name] != nil {
		e.mu.Unlock()
		return ErrNamespaceExists
	}
	e.spaces[name] = nil // reserve
	e.mu.Unlock()
	// Leftover files of a namespace that was never registered would be
	// adopted; a fresh name starts from empty directories.
	_, err := e.openNamespace(name)
	if err != nil {
		e.mu.Lock()
		delete(e.spaces, name)
		e.mu.Unlock()
		e.log.Error("cannot create namespace", "namespace", name, "err", err)
		return withCause(ErrWrite, err)
	}
	e.emit(Event{Kind: EventNamespaceCreated, Namespace: name})
	return nil
}

// DeleteNamespace removes a namespace and its files (NSDEL). Sessions on it
// see Deleted() and must be disconnected by the caller.
func (e *Engine) DeleteNamespace(name string) error {
	if name == DefaultNamespace {
		return ErrDeleteDefault
	}
	e.mu.Lock()
	ns := e.spaces[name]
	if ns == nil {
		e.mu.Unlock()
		return ErrNoSuchNamespace
	}
	delete(e.spaces, name)
	e.mu.Unlock()

	ns.mu.Lock()
	ns.deleted.Store(true)
	ns.close()
	ns.idx.Release()
	ns.mu.Unlock()
	if err := os.RemoveAll(ns.indexDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.log.Error("cannot remove namespace files", "namespace", name, "err", err)
	}
	if err := os.RemoveAll(ns.dataDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.log.Error("cannot remove namespace files", "namespace", name, "err", err)
	}
	e.emit(Event{Kind: EventNamespaceDeleted, Namespace: name})
	return nil
}

// NamespaceUpdated and NamespaceReloaded raise their events (the RESP
// front calls them after NSSET and RELOAD).
func (e *Engine) NamespaceUpdated(name string) {
	e.emit(Event{Kind: EventNamespaceUpdated, Namespace: name})
}

func (e *Engine) NamespaceReloaded(name string) {
	e.emit(Event{Kind: EventNamespaceReloaded, Namespace: name})
}

// Hooks lists the hook runs of the last 300 seconds (HOOKS): those of the
// configured hooks that record them (ExecHooks, and MultiHooks of it).
func (e *Engine) Hooks() []HookRun {
	if r, ok := e.hooks.(interface{ Runs() []HookRun }); ok {
		return r.Runs()
	}
	return nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// DataSize is the rotation size of data files.
func (e *Engine) DataSize() int64 { return e.opts.DataSize }

// SingleMode reports the server-wide mode, if any.
func (e *Engine) SingleMode() *Mode { return e.opts.Mode }

func (e *Engine) startLoops() {
	if e.opts.SyncTime > 0 {
		e.every(e.opts.SyncTime, func(ns *Namespace) { ns.Sync() })
	}
	if e.opts.Rotate > 0 {
		e.every(min(e.opts.Rotate, time.Second), func(ns *Namespace) { ns.rotateIfOld(e.opts.Rotate) })
	}
	if e.opts.CompactRatio > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-e.stop; cancel() }()
		e.every(e.opts.CompactInterval, func(ns *Namespace) { ns.autoCompact(ctx) })
	}
}

func (e *Engine) every(d time.Duration, fn func(*Namespace)) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-e.stop:
				return
			case <-t.C:
				for _, ns := range e.all() {
					fn(ns)
				}
			}
		}
	}()
}

func (e *Engine) all() []*Namespace {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*Namespace, 0, len(e.spaces))
	for _, ns := range e.spaces {
		if ns != nil {
			out = append(out, ns)
		}
	}
	return out
}

// Close syncs and closes every namespace, raising EventNamespaceClosing
// for each, and releases the directory locks. Fetches still in flight are
// cancelled. It returns the first failure to write, sync or close a file.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(e.stop)
	e.wg.Wait()
	for _, ns := range e.all() {
		ns.deliverEvents()
		ns.mu.Lock()
		dirty := ns.dirtyList()
		ns.mu.Unlock()
		e.emit(Event{Kind: EventNamespaceClosing, Namespace: ns.name, IndexDir: ns.indexDir, DataDir: ns.dataDir, Dirty: dirty})
	}
	e.fetchMu.Lock()
	e.fetchStop = true
	e.fetchMu.Unlock()
	e.cancel()
	e.fetches.Wait()
	return e.closeAll()
}

func (e *Engine) closeAll() error {
	var first error
	for _, ns := range e.all() {
		ns.mu.Lock()
		if err := ns.close(); err != nil && first == nil {
			first = err
		}
		ns.idx.Release()
		ns.mu.Unlock()
	}
	if err := e.unlock(); err != nil && first == nil {
		first = err
	}
	return first
}
