package zdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
)

// Closed data files: opened lazily, kept in a small LRU, and possibly
// absent from the local disk.
//
// A closed d<N> never changes, so a program that backed it up (qsfs) may
// delete it to stay under a cache cap, and bring it back when a read needs
// it: through a Fetcher (a byte range, or the whole file), or else through
// the missing-data event. Reads of an absent file fetch it outside the
// namespace lock; only the reads that need it wait, and concurrent reads of
// the same range (or file) share one fetch.
//
// Open handles of closed files are few (Options.MaxOpenDataFiles): a file
// deleted by eviction frees its disk space only once no descriptor holds
// it, so the engine must not keep every file it ever read open.

// DefaultMaxOpenDataFiles is the default of Options.MaxOpenDataFiles.
const DefaultMaxOpenDataFiles = 64

// ErrActiveDataFile is EvictDataFile's answer for the active data file,
// which is being written and has no backup.
var ErrActiveDataFile = errors.New("zdb: the active data file cannot be evicted")

// Fetcher brings back the content of closed data files that are absent
// from the local disk (Options.Fetcher). Calls are made outside every
// namespace lock, with a context that ends when the engine closes; one
// call serves every concurrent reader of the same range (or file).
type Fetcher interface {
	// FetchRange fills p with the bytes at offset off of data file fileID
	// of namespace: exactly the payload a read needs. The engine checks
	// them against the index's CRC. An error that errors.Is
	// errors.ErrUnsupported means the fetcher can only restore whole
	// files: the engine then calls FetchFile.
	FetchRange(ctx context.Context, namespace string, fileID uint32, off int64, p []byte) error
	// FetchFile restores the whole data file fileID of namespace at path
	// (complete when it returns nil: write it elsewhere and rename it
	// there). The engine then opens it and retries the read once.
	FetchFile(ctx context.Context, namespace string, fileID uint32, path string) error
}

// dataHandle is an open closed data file. The LRU holds one reference and
// each reader one more; the last release closes the file, so a handle
// dropped from the LRU (or evicted) while being read stays usable until the
// read ends.
type dataHandle struct {
	f    *os.File
	refs atomic.Int32
	used atomic.Uint64 // the LRU clock at the last use
}

// release drops a reference. A nil handle (the active file, which is not
// reference counted) is a no-op.
func (h *dataHandle) release() {
	if h != nil && h.refs.Add(-1) == 0 {
		h.f.Close()
	}
}

// openData is the LRU of open closed data files, guarded by ns.filesMu
// (clock is atomic: readers bump it under the read lock).
type openData struct {
	files map[uint32]*dataHandle
	clock atomic.Uint64
}

// fetchCall is one fetch in flight; done is closed when buf and err are
// set.
type fetchCall struct {
	done    chan struct{}
	buf     []byte
	err     error
	waiters int // readers waiting for it, under filesMu (tests watch it)
}

// errEngineClosed answers a read that needs a fetch once Close began.
var errEngineClosed = errors.New("zdb: engine closed")

// startFetch counts a fetch goroutine in, or reports false once Close
// began (Close waits for the fetches counted).
func (e *Engine) startFetch() bool {
	e.fetchMu.Lock()
	defer e.fetchMu.Unlock()
	if e.fetchStop {
		return false
	}
	e.fetches.Add(1)
	return true
}

// rangeKey names a fetched range.
type rangeKey struct {
	id  uint32
	off int64
	n   int
}

// dataFile returns an open data file for reading id and the handle to
// release when the read is done (nil for the active file). An absent file
// is an error that wraps errMissingFile and fs.ErrNotExist.
func (ns *Namespace) dataFile(id uint32) (*os.File, *dataHandle, error) {
	ns.filesMu.RLock()
	if f := ns.dataFiles[id]; f != nil {
		ns.filesMu.RUnlock()
		return f, nil, nil
	}
	if h := ns.open.files[id]; h != nil {
		h.refs.Add(1)
		h.used.Store(ns.open.clock.Add(1))
		ns.filesMu.RUnlock()
		return h.f, h, nil
	}
	ns.filesMu.RUnlock()

	ns.filesMu.Lock()
	defer ns.filesMu.Unlock()
	if f := ns.dataFiles[id]; f != nil {
		return f, nil, nil
	}
	if h := ns.open.files[id]; h != nil {
		h.refs.Add(1)
		h.used.Store(ns.open.clock.Add(1))
		return h.f, h, nil
	}
	f, err := os.Open(ns.dataPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %w", errMissingFile, err)
	}
	if err != nil {
		ns.dataIOError(false)
		return nil, nil, err
	}
	h := &dataHandle{f: f}
	h.refs.Store(2) // the LRU's and the caller's
	h.used.Store(ns.open.clock.Add(1))
	if ns.open.files == nil {
		ns.open.files = map[uint32]*dataHandle{}
	}
	ns.open.files[id] = h
	limit := ns.eng.opts.MaxOpenDataFiles
	for len(ns.open.files) > limit {
		// Close the least recently used. A linear scan: the cap is small
		// and this runs only when a file is opened.
		var oldID uint32
		var old *dataHandle
		for i, c := range ns.open.files {
			if c != h && (old == nil || c.used.Load() < old.used.Load()) {
				oldID, old = i, c
			}
		}
		delete(ns.open.files, oldID)
		old.release()
	}
	return f, h, nil
}

// closeDataFile closes and forgets the handle of closed data file id, if
// open (a read still using it keeps it until it ends). Compaction calls it
// before deleting a retired file; to be sure that no reader opens the file
// again before it is deleted, hold ns.mu exclusively, or use
// removeDataFile.
func (ns *Namespace) closeDataFile(id uint32) {
	ns.filesMu.Lock()
	h := ns.open.files[id]
	delete(ns.open.files, id)
	ns.filesMu.Unlock()
	h.release()
}

// removeDataFile closes the handle of closed data file id and deletes the
// file, atomically with respect to readers opening it (they open under
// filesMu too). An absent file is not an error.
func (ns *Namespace) removeDataFile(id uint32) error {
	ns.filesMu.Lock()
	h := ns.open.files[id]
	delete(ns.open.files, id)
	err := os.Remove(ns.dataPath(id))
	ns.filesMu.Unlock()
	h.release()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// closeOpenData closes every handle of the LRU. The caller holds filesMu.
func (ns *Namespace) closeOpenData() {
	for _, h := range ns.open.files {
		h.release()
	}
	ns.open.files = nil
}

// EvictDataFile closes closed data file fileID of namespace and deletes it
// from the local disk, freeing its space (at once, or when the reads that
// use it end). The caller has a copy: later reads fetch it back through
// Options.Fetcher or the missing-data event. The active file is refused
// (ErrActiveDataFile); an already absent file is not an error.
func (e *Engine) EvictDataFile(namespace string, fileID uint32) error {
	ns := e.Namespace(namespace)
	if ns == nil {
		return ErrNamespaceNotFound
	}
	// The read lock keeps the active id still (and FLUSH away) meanwhile.
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if ns.deleted.Load() {
		return ErrNamespaceGone
	}
	if fileID == ns.cur {
		return fmt.Errorf("%w: d%d of %s", ErrActiveDataFile, fileID, namespace)
	}
	if fileID > ns.cur {
		return fmt.Errorf("zdb: evicting d%d of %s: %w", fileID, namespace, fs.ErrNotExist)
	}
	if err := ns.removeDataFile(fileID); err != nil {
		return fmt.Errorf("zdb: evicting d%d of %s: %w", fileID, namespace, err)
	}
	return nil
}

// readLive runs find under the read lock and reads the payload it names
// (find returns the location and the key stored in the data entry: the
// key itself, or the 8-byte id in seq mode). When the data file is absent, the lock is released and the
// payload fetched (Fetcher.FetchRange), or the file restored
// (Fetcher.FetchFile, or the missing-data event) and the read retried
// once. lookupErr is find's error; readErr a failure to read the payload.
func (ns *Namespace) readLive(ctx context.Context, find func() (location, []byte, error), dst []byte) (out []byte, lookupErr, readErr error) {
	for attempt := 0; ; attempt++ {
		ns.mu.RLock()
		loc, key, err := find()
		if err != nil {
			ns.mu.RUnlock()
			return nil, err, nil
		}
		out, err := ns.readPayload(loc, key, dst)
		ns.mu.RUnlock()
		if err == nil || attempt > 0 || !errors.Is(err, errMissingFile) {
			return out, nil, err
		}
		out, retry, err := ns.fetchPayload(ctx, loc, len(key), dst, err)
		if !retry {
			return out, nil, err
		}
	}
}

// fetchPayload gets the payload at loc, whose data file is absent
// (missing is that error), without the namespace lock. It returns the
// payload appended to dst, or retry when the whole file should now be
// back.
func (ns *Namespace) fetchPayload(ctx context.Context, loc location, keyLen int, dst []byte, missing error) (out []byte, retry bool, err error) {
	id := loc.DataID
	fetcher := ns.eng.opts.Fetcher
	if fetcher == nil {
		err := ns.fetchFile(ctx, id, func(ctx context.Context) error {
			return ns.eng.emit(Event{Kind: EventMissingData, Namespace: ns.name, FileID: id, Path: ns.dataPath(id)})
		})
		if err != nil {
			return nil, false, fmt.Errorf("%w; missing-data: %w", missing, err)
		}
		return nil, true, nil
	}
	at := int64(loc.DataOffset) + DataEntryFixed + int64(keyLen)
	buf, err := ns.fetchRange(ctx, id, at, int(loc.Length))
	if errors.Is(err, errors.ErrUnsupported) {
		err := ns.fetchFile(ctx, id, func(ctx context.Context) error {
			return fetcher.FetchFile(ctx, ns.name, id, ns.dataPath(id))
		})
		if err != nil {
			return nil, false, fmt.Errorf("%w; fetching the file: %w", missing, err)
		}
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w; fetching %d bytes at %d: %w", missing, loc.Length, at, err)
	}
	if CRC(buf) != loc.CRC {
		ns.dataFaults.Add(1)
		return nil, false, errChecksum
	}
	return append(dst, buf...), false, nil
}

// fetchRange fetches n bytes at off of data file id through the Fetcher;
// concurrent callers asking for the same range share one call. A caller
// whose ctx ends stops waiting; the fetch goes on for the others.
func (ns *Namespace) fetchRange(ctx context.Context, id uint32, off int64, n int) ([]byte, error) {
	key := rangeKey{id, off, n}
	ns.filesMu.Lock()
	c := ns.ranges[key]
	if c == nil {
		if !ns.eng.startFetch() {
			ns.filesMu.Unlock()
			return nil, errEngineClosed
		}
		c = &fetchCall{done: make(chan struct{})}
		if ns.ranges == nil {
			ns.ranges = map[rangeKey]*fetchCall{}
		}
		ns.ranges[key] = c
		go func() {
			defer ns.eng.fetches.Done()
			buf := make([]byte, n)
			err := ns.eng.opts.Fetcher.FetchRange(ns.eng.ctx, ns.name, id, off, buf)
			ns.finishFetch(c, buf, err, func() {
				if ns.ranges[key] == c {
					delete(ns.ranges, key)
				}
			})
		}()
	}
	c.waiters++
	ns.filesMu.Unlock()
	return c.wait(ctx)
}

// fetchFile runs restore (which brings data file id back) once for every
// concurrent caller needing that file.
func (ns *Namespace) fetchFile(ctx context.Context, id uint32, restore func(context.Context) error) error {
	ns.filesMu.Lock()
	c := ns.fetching[id]
	if c == nil {
		if !ns.eng.startFetch() {
			ns.filesMu.Unlock()
			return errEngineClosed
		}
		c = &fetchCall{done: make(chan struct{})}
		if ns.fetching == nil {
			ns.fetching = map[uint32]*fetchCall{}
		}
		ns.fetching[id] = c
		go func() {
			defer ns.eng.fetches.Done()
			err := restore(ns.eng.ctx)
			ns.finishFetch(c, nil, err, func() {
				if ns.fetching[id] == c {
					delete(ns.fetching, id)
				}
			})
		}()
	}
	c.waiters++
	ns.filesMu.Unlock()
	_, err := c.wait(ctx)
	return err
}

func (ns *Namespace) finishFetch(c *fetchCall, buf []byte, err error, forget func()) {
	ns.filesMu.Lock()
	c.buf, c.err = buf, err
	forget()
	ns.filesMu.Unlock()
	close(c.done)
}

func (c *fetchCall) wait(ctx context.Context) ([]byte, error) {
	select {
	case <-c.done:
		return c.buf, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ActiveFileID is the id of the namespace's active data and index files
// (the ones being written; every lower id is closed).
func (ns *Namespace) ActiveFileID() uint32 {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return ns.cur
}

// RecentDataFiles lists the closed data files that are open for reading,
// least recently read first. A program that evicts files (qsfs) keeps
// these longest: a file not listed was not read since it left the small
// LRU of open files (Options.MaxOpenDataFiles).
func (ns *Namespace) RecentDataFiles() []uint32 {
	ns.filesMu.RLock()
	type use struct {
		id   uint32
		used uint64
	}
	uses := make([]use, 0, len(ns.open.files))
	for id, h := range ns.open.files {
		uses = append(uses, use{id, h.used.Load()})
	}
	ns.filesMu.RUnlock()
	sort.Slice(uses, func(i, j int) bool { return uses[i].used < uses[j].used })
	ids := make([]uint32, len(uses))
	for i, u := range uses {
		ids[i] = u.id
	}
	return ids
}

// CutInfo says what Namespace.Cut captured.
type CutInfo struct {
	// Active is the active file id after the cut: every lower id is
	// closed, and the snapshot describes them all.
	Active uint32
	// Jumped is true when the cut rotated the namespace (it had changed).
	Jumped bool
	// Indexes are the closed index file ids copied into the snapshot
	// directory (i<id>), ascending.
	Indexes []uint32
}

// Cut makes a recovery point of the namespace's closed files: under the
// namespace lock it rotates the namespace if it changed since its last
// rotation, then copies into dir (fsynced) the descriptor (NamespaceFileName)
// and every closed index file changed since the last cut — every closed one
// with all — and resets the dirty index list. Closed data files never
// change, so the copies and the closed data files d<id> (id < Active)
// together are the namespace as it was at the cut, even while writes go on:
// a later overwrite flags entries of closed index files in place, which is
// why they are copied here and not read later.
func (ns *Namespace) Cut(dir string, all bool) (CutInfo, error) {
	defer ns.deliverEvents()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return CutInfo{}, ErrNamespaceGone
	}
	var info CutInfo
	if ns.changed {
		if err := ns.jump(); err != nil {
			return CutInfo{}, withCause(ErrWrite, err)
		}
		info.Jumped = true
	} else if err := ns.commitLocked(); err != nil {
		return CutInfo{}, err
	}
	info.Active = ns.cur
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return CutInfo{}, err
	}
	var ids []uint32
	if all {
		for id := range ns.indexFiles {
			if id < ns.cur {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	} else {
		for _, id := range ns.dirtyList() {
			if id < ns.cur {
				ids = append(ids, id)
			}
		}
	}
	for _, id := range ids {
		if err := copyFileSynced(ns.indexPath(id), filepath.Join(dir, "i"+strconv.FormatUint(uint64(id), 10))); err != nil {
			return CutInfo{}, fmt.Errorf("zdb: cut %s: %w", ns.name, err)
		}
	}
	if err := copyFileSynced(filepath.Join(ns.indexDir, NamespaceFileName), filepath.Join(dir, NamespaceFileName)); err != nil {
		return CutInfo{}, fmt.Errorf("zdb: cut %s: %w", ns.name, err)
	}
	syncDir(dir)
	// What was copied is captured: only later changes are dirty. The
	// answers to jump-index events in flight are ignored (dirtyGen), as
	// after INDEX DIRTY RESET; ids changed after this stay dirty.
	ns.dirty = map[uint32]bool{}
	for id := range ns.dirtyFlight {
		if id >= ns.cur {
			ns.dirty[id] = true
		}
	}
	ns.dirtyFlight = nil
	ns.dirtyGen++
	info.Indexes = ids
	return info, nil
}

// copyFileSynced copies src to dst (created or truncated) and fsyncs it.
func copyFileSynced(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// LiveBytes reports, per data file id, the bytes of live entries it holds
// (present or evicted): with a file's size, what compaction would reclaim.
func (ns *Namespace) LiveBytes() map[uint32]int64 {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	out := make(map[uint32]int64, len(ns.indexFiles))
	for id := range ns.indexFiles {
		out[id] = ns.liveData[id]
	}
	return out
}

// Resident reports whether key's payload is in a data file present on the
// local disk: false when that file was evicted (a read fetches it). ok is
// false when key is not live. An embedding program shows it (qsfs: the
// web interface's remote-only badge); it costs an index lookup and a stat.
func (ns *Namespace) Resident(key []byte) (resident, ok bool) {
	ns.mu.RLock()
	loc, found := ns.idx.Get(key)
	ns.mu.RUnlock()
	if !found {
		return false, false
	}
	_, err := os.Stat(ns.dataPath(loc.DataID))
	return err == nil, true
}
