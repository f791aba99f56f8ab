package zdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Namespace is one key space with its own index and data files.
//
// Write order, which the crash story rests on (docs/zdb-format.md): the data
// entry is written before the index entry that points at it; a new index
// entry is appended before the entry it supersedes is flagged. A crash in
// between leaves either the old version live or an unindexed data entry,
// never an index entry without its data. Startup trims whatever a crash cut.
type Namespace struct {
	eng  *Engine
	name string

	mu      sync.RWMutex
	desc    NamespaceFile // persisted settings (password held in memory only here)
	mode    Mode
	lock    lockState
	deleted atomic.Bool

	idx       *keyIndex
	liveBytes uint64           // payload bytes of live keys
	liveData  map[uint32]int64 // data entry bytes of live keys, per data file (compaction)
	gen       uint64           // bumped by every load: compaction stops when it changes
	nextID    uint64           // index slots written so far (seq ids)

	indexDir, dataDir string
	cur               uint32              // active file id
	indexFiles        map[uint32]*os.File // every index file, read-write
	fileEnds          map[uint32]fileEnd  // per index file: end and last entry
	dataEnd           int64               // append offset in d<cur>
	flushed           flushMark           // how far the write-out of a data file was started
	dataLast          uint32              // offset of the last data entry written
	idxLast           uint32              // offset of the last index entry written
	dirty             map[uint32]bool     // index files changed since INDEX DIRTY RESET
	changed           bool                // written since the last jump
	lastJump          time.Time
	scratch           []byte
	pend              pendingWrites    // see commit.go
	seqMax            uint64           // load: one past the highest live seq id
	seqShifted        bool             // load: a seq id was found off its position
	closedSizes       map[uint32]int64 // load: sizes of closed data files, -1 if absent
	rec               recoveryState    // damage found by load (recover.go)

	compactMu sync.Mutex // one compaction at a time

	filesMu   sync.RWMutex
	dataFiles map[uint32]*os.File // d<cur>, read-write
	open      openData            // closed data files open for reads (datafiles.go)
	fetching  map[uint32]*fetchCall
	ranges    map[rangeKey]*fetchCall

	events      eventQueue     // raised under mu, delivered after (events.go)
	dirtyFlight map[uint32]int // dirty ids reported by jump-index events not yet answered
	dirtyGen    uint64         // bumped by INDEX DIRTY RESET: answers to older reports are void

	// statistics for NSINFO
	indexErrors, dataErrors, dataFaults atomic.Uint64
	indexErrorLast, dataErrorLast       atomic.Int64
}

type lockState uint8

const (
	unlocked lockState = iota
	locked
	frozen
)

type fileEnd struct {
	end  int64  // size of the index file
	last uint32 // offset of its last entry, 0 when it has none
}

// Name is the namespace's name.
func (ns *Namespace) Name() string { return ns.name }

// Deleted reports whether the namespace was removed (NSDEL).
func (ns *Namespace) Deleted() bool { return ns.deleted.Load() }

// Mode is the namespace's key mode.
func (ns *Namespace) Mode() Mode {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return ns.mode
}

// Settings returns the persisted settings.
func (ns *Namespace) Settings() NamespaceFile {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return ns.desc
}

// Len is the number of live keys.
func (ns *Namespace) Len() int {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return ns.idx.Len()
}

func (ns *Namespace) indexPath(id uint32) string {
	return filepath.Join(ns.indexDir, "i"+strconv.FormatUint(uint64(id), 10))
}

func (ns *Namespace) dataPath(id uint32) string {
	return filepath.Join(ns.dataDir, "d"+strconv.FormatUint(uint64(id), 10))
}

func (ns *Namespace) log() *slog.Logger { return ns.eng.log.With("namespace", ns.name) }

// ---------------------------------------------------------------------------
// loading and recovery

// load opens the namespace's files and rebuilds the key index. It trims a
// torn tail from the active index and data files, and keeps damaged
// entries without serving them (recover.go).
func (ns *Namespace) load(create bool, mode Mode) error {
	ns.indexFiles = map[uint32]*os.File{}
	ns.fileEnds = map[uint32]fileEnd{}
	ns.dataFiles = map[uint32]*os.File{}
	ns.fetching = map[uint32]*fetchCall{}
	ns.dirty = map[uint32]bool{}
	ns.idx = newKeyIndex()
	ns.liveBytes, ns.nextID = 0, 0
	ns.liveData = map[uint32]int64{}
	ns.gen++
	ns.idxLast, ns.dataLast = 0, 0
	ns.lastJump = time.Now()
	ns.rec.reset()

	if err := os.MkdirAll(ns.indexDir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(ns.dataDir, 0o700); err != nil {
		return err
	}
	descPath := filepath.Join(ns.indexDir, NamespaceFileName)
	raw, err := os.ReadFile(descPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ns.desc = NamespaceFile{Version: NamespaceFileVersion, Name: ns.name, Public: true, MaxSize: ns.eng.opts.MaxSize}
		if err := ns.saveDescriptor(); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if ns.desc, err = ParseNamespaceFile(raw); err != nil {
			return fmt.Errorf("%s: %w", descPath, err)
		}
	}

	// A compaction that crashed while emptying an index file leaves the
	// new version aside; the old one is still in place and complete.
	if stale, _ := filepath.Glob(filepath.Join(ns.indexDir, "i*.compact")); len(stale) > 0 {
		for _, p := range stale {
			os.Remove(p)
		}
	}
	ids, err := listIDs(ns.indexDir, 'i')
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		ns.mode = mode
		return ns.createFiles(0)
	}
	ns.cur = ids[len(ids)-1]

	// Recover the active data file first: its valid entries are the ground
	// truth against which the index tail is checked.
	valid, err := ns.recoverDataTail()
	if err != nil {
		return err
	}
	ns.seqMax, ns.seqShifted = 0, false
	ns.closedSizes = map[uint32]int64{}
	for i, id := range ids {
		if err := ns.replayIndex(id, i == len(ids)-1, valid); err != nil {
			return err
		}
	}
	// New ids never reuse a live one, even when positions shifted.
	ns.nextID = max(ns.nextID, ns.seqMax)
	ns.idx.Range(func(key []byte, l location) bool {
		ns.liveBytes += uint64(l.Length)
		ns.liveAdd(ns.dataKeyLen(key), l)
		return true
	})
	f, err := os.OpenFile(ns.dataPath(ns.cur), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	ns.dataFiles[ns.cur] = f
	return nil
}

// fitsClosedData checks that a live entry of index file id pointing into a
// closed data file lies within it. A closed data file that is absent is
// offloaded (fetched by the missing-data hook when read), so only a present
// one is checked. A live entry never points into a data file older than its
// own index file (a seq slot is only ever rewritten to point at newer data)
// nor past the active one.
func (ns *Namespace) fitsClosedData(id uint32, e IndexEntry) bool {
	if e.DataID > ns.cur || e.DataID < id {
		return false
	}
	size, ok := ns.closedSizes[e.DataID]
	if !ok {
		size = -1
		if st, err := os.Stat(ns.dataPath(e.DataID)); err == nil {
			size = st.Size()
		}
		ns.closedSizes[e.DataID] = size
	}
	end := int64(e.DataOffset) + DataEntryFixed + int64(len(e.Key)) + int64(e.Length)
	return size < 0 || (int64(e.DataOffset) >= DataHeaderSize && end <= size)
}

// entryDataID is the data file an index entry in index file id points at.
// In user mode that is always the index file's own id: 0-db v2 leaves the
// dataid field at 0 for new keys, so the field cannot be trusted there. In
// seq mode a slot may be rewritten to point into a later data file, and the
// field is right.
func (ns *Namespace) entryDataID(id uint32, e IndexEntry) uint32 {
	if ns.mode == ModeUser {
		return id
	}
	return e.DataID
}

func (ns *Namespace) firstID() uint32 {
	first := ^uint32(0)
	for id := range ns.indexFiles {
		first = min(first, id)
	}
	return first
}

// createFiles starts index and data files id (a fresh namespace or a jump).
func (ns *Namespace) createFiles(id uint32) error {
	now := uint64(time.Now().Unix())
	ih := IndexHeader{Version: IndexVersion, Created: now, Opened: now, FileID: id, Mode: ns.mode}
	dh := DataHeader{Version: DataVersion, Created: now, Opened: now, FileID: id}
	// Data first: an index file never exists without its data file.
	if err := writeNewFile(ns.dataPath(id), dh.Marshal()); err != nil {
		return err
	}
	if err := writeNewFile(ns.indexPath(id), ih.Marshal()); err != nil {
		return err
	}
	fi, err := os.OpenFile(ns.indexPath(id), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fd, err := os.OpenFile(ns.dataPath(id), os.O_RDWR, 0)
	if err != nil {
		fi.Close()
		return err
	}
	syncDir(ns.indexDir)
	syncDir(ns.dataDir)
	ns.indexFiles[id] = fi
	ns.fileEnds[id] = fileEnd{end: IndexHeaderSize}
	ns.filesMu.Lock()
	ns.dataFiles[id] = fd
	ns.filesMu.Unlock()
	ns.cur = id
	ns.dataEnd = DataHeaderSize // dataLast carries over, as in 0-db
	return nil
}

func writeNewFile(path string, content []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func (ns *Namespace) saveDescriptor() error {
	path := filepath.Join(ns.indexDir, NamespaceFileName)
	tmp := path + ".tmp"
	if err := writeNewFile(tmp, ns.desc.Marshal()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(ns.indexDir)
	return nil
}

// listIDs returns the N of files named <prefix>N in dir, sorted.
func listIDs(dir string, prefix byte) ([]uint32, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint32
	for _, e := range ents {
		n := e.Name()
		if len(n) < 2 || n[0] != prefix || !e.Type().IsRegular() {
			continue
		}
		id, err := strconv.ParseUint(n[1:], 10, 32)
		if err != nil || strconv.FormatUint(id, 10) != n[1:] {
			continue
		}
		ids = append(ids, uint32(id))
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// close commits what is buffered, then releases files and memory. The
// caller holds mu or owns ns. It returns the first failure: of the final
// commit, or of syncing or closing a file.
func (ns *Namespace) close() error {
	var first error
	if ns.indexFiles != nil {
		if err := ns.commitLocked(); err != nil {
			ns.log().Error("final commit failed", "err", err)
			first = err
		}
	}
	if err := ns.closeFiles(); err != nil && first == nil {
		first = err
	}
	return first
}

// closeFiles releases files and memory without writing anything buffered.
// It returns the first failure to sync or close a file it wrote.
func (ns *Namespace) closeFiles() error {
	ns.gen++ // a compaction in progress stops
	var first error
	keep := func(err error) { // os errors name their file
		if err != nil && first == nil {
			first = err
		}
	}
	for _, f := range ns.indexFiles {
		keep(f.Sync())
		keep(f.Close())
	}
	ns.filesMu.Lock()
	for _, f := range ns.dataFiles {
		keep(f.Sync())
		keep(f.Close())
	}
	ns.dataFiles = map[uint32]*os.File{}
	ns.closeOpenData()
	ns.filesMu.Unlock()
	ns.indexFiles = map[uint32]*os.File{}
	if ns.idx != nil {
		ns.idx.Release()
		ns.idx = newKeyIndex()
	}
	return first
}

// fileScanner reads a file through a window, for sequential parsing.
type fileScanner struct {
	f    *os.File
	size int64
	buf  []byte
	base int64 // file offset of buf[0]
	err  error
}

func newFileScanner(f *os.File, start, size int64) *fileScanner {
	return &fileScanner{f: f, size: size, base: start}
}

// peek returns n bytes at off, or nil when the file ends first.
func (s *fileScanner) peek(off int64, n int) []byte {
	if off+int64(n) > s.size {
		return nil
	}
	if off >= s.base && off+int64(n) <= s.base+int64(len(s.buf)) {
		return s.buf[off-s.base : off-s.base+int64(n)]
	}
	want := max(n, 1<<20)
	if int64(want) > s.size-off {
		want = int(s.size - off)
	}
	if cap(s.buf) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	if _, err := s.f.ReadAt(s.buf, off); err != nil && !errors.Is(err, io.EOF) {
		s.err = err
		s.buf = s.buf[:0]
		return nil
	}
	s.base = off
	return s.buf[:n]
}

// ---------------------------------------------------------------------------
// keys

func seqKey(id uint64) []byte {
	k := make([]byte, SeqKeyLen)
	binary.LittleEndian.PutUint64(k, id)
	return k
}

// checkKeyOp returns the lock error for an operation.
func (ns *Namespace) checkAccess(write bool) error {
	switch ns.lock {
	case frozen:
		return ErrFrozen
	case locked:
		if write {
			return ErrLocked
		}
	}
	return nil
}

// Set stores value under key (in seq mode, an empty key takes the next id)
// with timestamp ts (0: now), durably (see Commit) when it returns. It
// returns the key written, or nil when the stored payload is byte-identical
// and nothing was written.
func (ns *Namespace) Set(key, value []byte, ts uint32) ([]byte, error) {
	k, t, err := ns.SetDeferred(key, value, ts)
	if err != nil || k == nil {
		return k, err
	}
	if err := ns.Commit(t); err != nil {
		return nil, err
	}
	return k, nil
}

// SetDeferred is Set without the commit: the write is visible to readers at
// once, but the caller must Commit(ticket) before acknowledging it.
func (ns *Namespace) SetDeferred(key, value []byte, ts uint32) ([]byte, Ticket, error) {
	if ts == 0 {
		ts = uint32(time.Now().Unix())
	}
	return ns.SetDeferredAt(key, value, ts)
}

// SetDeferredAt is SetDeferred with the timestamp stored as given, 0
// included (0-db's SET key value ts stores atoll(ts), whatever it is).
func (ns *Namespace) SetDeferredAt(key, value []byte, ts uint32) ([]byte, Ticket, error) {
	if len(key) > MaxKeyLen {
		return nil, Ticket{}, ErrKeyTooLarge
	}
	if len(value) > MaxPayload {
		return nil, Ticket{}, ErrWrite
	}
	crc := CRC(value)

	defer ns.deliverEvents() // after Unlock: a rotation raises events
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return nil, Ticket{}, ErrNamespaceGone
	}
	if err := ns.checkAccess(true); err != nil {
		return nil, Ticket{}, err
	}
	var old location
	exists := false
	if len(key) > 0 {
		old, exists = ns.idx.Get(key)
	}
	if exists && ns.desc.Worm {
		return nil, Ticket{}, ErrWorm
	}
	if ns.desc.MaxSize > 0 {
		limit := ns.desc.MaxSize
		if exists {
			limit += uint64(old.Length)
		}
		if ns.liveBytes+uint64(len(value)) > limit {
			return nil, Ticket{}, ErrNoSpace
		}
	}
	if ns.mode == ModeUser && len(key) == 0 {
		return nil, Ticket{}, ErrKeyNeeded
	}
	if ns.mode == ModeSeq && len(key) > 0 && !exists {
		return nil, Ticket{}, ErrOnlyUpdate
	}
	if exists && old.Length == uint32(len(value)) && old.CRC == crc {
		// 0-db trusts the CRC alone; we compare the bytes, so that a CRC
		// collision never drops a write.
		same, err := ns.payloadEquals(old, key, value)
		if err == nil && same {
			return nil, Ticket{}, nil
		}
	}
	if err := ns.maybeJump(len(value)); err != nil {
		return nil, Ticket{}, withCause(ErrWrite, err)
	}
	if ns.mode == ModeSeq && !exists {
		key = seqKey(ns.nextID)
	}

	dataOff := ns.appendData(key, value, crc, 0, ts)
	loc := location{DataID: ns.cur, DataOffset: dataOff, Length: uint32(len(value)), CRC: crc, Timestamp: ts}
	if ns.mode == ModeSeq && exists {
		if err := ns.seqUpdate(old, &loc); err != nil {
			return nil, Ticket{}, withCause(ErrWrite, err)
		}
	} else {
		e := IndexEntry{DataOffset: dataOff, Length: loc.Length, DataID: ns.cur, Timestamp: ts, CRC: crc, Key: key}
		if exists {
			e.ParentID, e.ParentOffset = old.IndexID, old.IndexOffset
		}
		loc.IndexID = ns.cur
		loc.IndexOffset = ns.appendIndex(&e)
		if exists {
			if err := ns.flagDeleted(old.IndexID, old.IndexOffset); err != nil {
				return nil, Ticket{}, withCause(ErrWrite, err)
			}
		}
	}
	if exists {
		ns.liveBytes -= uint64(old.Length)
		ns.liveSub(ns.dataKeyLen(key), old)
	}
	ns.liveBytes += uint64(len(value))
	ns.liveAdd(ns.dataKeyLen(key), loc)
	ns.idx.Put(key, loc)
	ns.changed = true
	t := ns.ticket()
	if ns.pendingBytes() > commitThreshold {
		if err := ns.commitLocked(); err != nil {
			return nil, Ticket{}, err
		}
	}
	return key, t, nil
}

// seqUpdate moves id's slot to a new version: a copy of the old slot,
// flagged deleted, is appended (it takes an id), then the original slot is
// rewritten in place to point at the new data with the copy as its parent.
// seqUpdate moves id's slot to a new version: a copy of the old slot,
// flagged deleted, is appended (it takes an id), then the original slot is
// rewritten in place to point at the new data with the copy as its parent.
func (ns *Namespace) seqUpdate(old location, loc *location) error {
	slot := make([]byte, SeqEntrySize)
	if err := ns.readIndexAt(old.IndexID, slot, int64(old.IndexOffset)); err != nil {
		return err
	}
	prev, _, err := ParseIndexEntry(slot)
	if err != nil && (errors.Is(err, errShort) || len(prev.Key) == 0) {
		return err
	}
	cp := prev
	cp.Flags |= FlagDeleted
	if err != nil {
		// A damaged slot (a length over the limit, see recover.go): the
		// update replaces it; its copy keeps no length.
		cp.Length, cp.CRC = 0, 0
	}
	cpOff := ns.appendIndex(&cp)
	upd := prev
	upd.DataOffset, upd.Length, upd.DataID = loc.DataOffset, loc.Length, loc.DataID
	upd.Timestamp, upd.CRC, upd.Flags = loc.Timestamp, loc.CRC, 0
	upd.ParentID, upd.ParentOffset = ns.cur, cpOff
	ns.writeIndexAt(old.IndexID, int64(old.IndexOffset), upd.Append(nil))
	loc.IndexID, loc.IndexOffset = old.IndexID, old.IndexOffset
	return nil
}

// appendData buffers one data entry at the end of d<cur>.
func (ns *Namespace) appendData(key, payload []byte, crc uint32, flags uint8, ts uint32) uint32 {
	h := DataEntryHeader{Previous: ns.dataLast, CRC: crc, Flags: flags, Timestamp: ts}
	off := ns.bufData(func(b []byte) []byte { return AppendDataEntry(b, h, key, payload) })
	ns.dataLast = uint32(off)
	return uint32(off)
}

// appendIndex buffers e at the end of i<cur>, filling in Previous.
func (ns *Namespace) appendIndex(e *IndexEntry) uint32 {
	// Like 0-db, the first entry of a file links to the last entry of the
	// file before.
	e.Previous = ns.idxLast
	ns.scratch = e.Append(ns.scratch[:0])
	off := uint32(ns.bufIndex(ns.scratch))
	ns.idxLast = off
	ns.dirty[ns.cur] = true
	ns.nextID++
	return off
}

// flagDeleted sets the deleted flag of an index entry in place.
func (ns *Namespace) flagDeleted(id, off uint32) error {
	var b [1]byte
	if err := ns.readIndexAt(id, b[:], int64(off)+idxOffFlags); err != nil {
		return err
	}
	b[0] |= FlagDeleted
	ns.writeIndexAt(id, int64(off)+idxOffFlags, b[:])
	return nil
}

// indexIOError and dataIOError count a failed disk read or write for
// NSINFO and INFO.
func (ns *Namespace) indexIOError(write bool) {
	ns.indexErrors.Add(1)
	ns.indexErrorLast.Store(time.Now().Unix())
	if write {
		ns.eng.stats.indexWriteFailed.Add(1)
	} else {
		ns.eng.stats.indexReadFailed.Add(1)
	}
}

func (ns *Namespace) dataIOError(write bool) {
	ns.dataErrors.Add(1)
	ns.dataErrorLast.Store(time.Now().Unix())
	if write {
		ns.eng.stats.dataWriteFailed.Add(1)
	} else {
		ns.eng.stats.dataReadFailed.Add(1)
	}
}

// Del deletes key, durably when it returns: a tombstone is appended to the
// data file (and, in user mode, an index entry for it), and the index entry
// is flagged in place.
func (ns *Namespace) Del(key []byte, ts uint32) error {
	t, err := ns.DelDeferred(key, ts)
	if err != nil {
		return err
	}
	return ns.Commit(t)
}

// DelDeferred is Del without the commit (see SetDeferred).
func (ns *Namespace) DelDeferred(key []byte, ts uint32) (Ticket, error) {
	if len(key) > MaxKeyLen {
		return Ticket{}, ErrInvalidKey
	}
	if ts == 0 {
		ts = uint32(time.Now().Unix())
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return Ticket{}, ErrNamespaceGone
	}
	if err := ns.checkAccess(true); err != nil {
		return Ticket{}, err
	}
	loc, ok := ns.idx.Get(key)
	if !ok {
		return Ticket{}, ErrNotFound
	}
	if ns.desc.Worm {
		return Ticket{}, ErrWormDelete
	}
	tomb := ns.appendData(key, nil, 0, FlagDeleted, ts)
	ns.appendTombstoneEntry(key, tomb, ts, loc)
	if err := ns.flagDeleted(loc.IndexID, loc.IndexOffset); err != nil {
		return Ticket{}, withCause(ErrWrite, err)
	}
	ns.idx.Delete(key)
	ns.liveBytes -= uint64(loc.Length)
	ns.liveSub(ns.dataKeyLen(key), loc)
	ns.changed = true
	t := ns.ticket()
	if ns.pendingBytes() > commitThreshold {
		if err := ns.commitLocked(); err != nil {
			return Ticket{}, err
		}
	}
	return t, nil
}

// lookup finds key for a read command.
func (ns *Namespace) lookup(key []byte) (location, error) {
	if ns.deleted.Load() {
		return location{}, ErrNamespaceGone
	}
	if err := ns.checkAccess(false); err != nil {
		return location{}, err
	}
	if ns.mode == ModeSeq && len(key) != SeqKeyLen {
		return location{}, ErrNotFound
	}
	loc, ok := ns.idx.Get(key)
	if !ok {
		return location{}, ErrNotFound
	}
	if ns.isDamaged(loc) {
		return location{}, ErrInternal
	}
	return loc, nil
}

// EntryInfo describes a live key.
type EntryInfo struct {
	Length    uint32
	Timestamp uint32
	CRC       uint32
}

// Stat returns a live key's description (EXISTS, LENGTH, KEYTIME).
func (ns *Namespace) Stat(key []byte) (EntryInfo, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	loc, err := ns.lookup(key)
	if err != nil {
		return EntryInfo{}, err
	}
	return EntryInfo{Length: loc.Length, Timestamp: loc.Timestamp, CRC: loc.CRC}, nil
}

// Get returns the payload of key, appended to dst. A payload whose CRC does
// not match is never returned: the read fails with ErrInternal (wrapping
// the cause).
func (ns *Namespace) Get(key, dst []byte) ([]byte, error) {
	return ns.GetContext(context.Background(), key, dst)
}

// GetContext is Get whose wait for an absent data file (Options.Fetcher,
// the missing-data event) ends with ctx.
func (ns *Namespace) GetContext(ctx context.Context, key, dst []byte) ([]byte, error) {
	out, lookupErr, err := ns.readLive(ctx, func() (location, []byte, error) {
		loc, err := ns.lookup(key)
		return loc, key, err
	}, dst)
	if lookupErr != nil {
		return nil, lookupErr
	}
	if err != nil {
		return nil, withCause(ErrInternal, err)
	}
	return out, nil
}

// Check verifies key's payload against its CRC: 1 match, 0 mismatch, -1
// unreadable.
func (ns *Namespace) Check(key []byte) (int, error) {
	_, lookupErr, err := ns.readLive(context.Background(), func() (location, []byte, error) {
		loc, err := ns.lookup(key)
		return loc, key, err
	}, nil)
	switch {
	case lookupErr == ErrInternal: // a damaged entry (lookup)
		return 0, nil
	case lookupErr != nil:
		return 0, lookupErr
	case err == nil:
		return 1, nil
	case errors.Is(err, errChecksum), errors.Is(err, errMismatch):
		return 0, nil
	default:
		return -1, nil
	}
}

var (
	errMissingFile = errors.New("data file missing")
	errChecksum    = errors.New("payload checksum mismatch")
)

func (ns *Namespace) payloadEquals(loc location, key, value []byte) (bool, error) {
	buf, err := ns.readPayload(loc, key, nil)
	if err != nil {
		return false, err
	}
	return bytes.Equal(buf, value), nil
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n)
	copy(nb, b)
	return nb
}

// ---------------------------------------------------------------------------
// rotation

// maybeJump rotates to new files when a payload of n bytes would take the
// active data file past the configured size.
func (ns *Namespace) maybeJump(n int) error {
	if ns.dataEnd+int64(n) <= int64(ns.eng.opts.DataSize) || ns.dataEnd == DataHeaderSize {
		return nil
	}
	return ns.jump()
}

// Jump forces a rotation (NSJUMP).
func (ns *Namespace) Jump() error {
	defer ns.deliverEvents()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return ErrNamespaceGone
	}
	if err := ns.jump(); err != nil {
		return withCause(ErrWrite, err)
	}
	return nil
}

// jump closes the active files (synced, so that the closed data file is
// complete when EventFileClosed reports it) and starts id+1. Its events
// are queued: the caller delivers them after unlocking.
func (ns *Namespace) jump() error {
	if err := ns.commitLocked(); err != nil {
		return err
	}
	old := ns.cur
	if f := ns.dataFiles[old]; f != nil {
		if err := f.Sync(); err != nil {
			ns.dataIOError(true)
			return err
		}
	}
	if err := ns.indexFiles[old].Sync(); err != nil {
		ns.indexIOError(true)
		return err
	}
	if err := ns.createFiles(old + 1); err != nil {
		ns.log().Error("rotation failed", "err", err)
		return err
	}
	// The closed data file is reopened read-only for reads.
	ns.filesMu.Lock()
	if f := ns.dataFiles[old]; f != nil {
		f.Close()
		delete(ns.dataFiles, old)
	}
	ns.filesMu.Unlock()
	ns.changed = false
	ns.lastJump = time.Now()
	if ns.eng.hooks != nil {
		ns.queueJumpEvents(old)
	}
	return nil
}

// dirtyList lists the dirty index ids: changed since the last reset, or
// reported by a jump-index event not answered yet.
func (ns *Namespace) dirtyList() []uint32 {
	ids := make([]uint32, 0, len(ns.dirty)+len(ns.dirtyFlight))
	for id := range ns.dirty {
		ids = append(ids, id)
	}
	for id := range ns.dirtyFlight {
		if !ns.dirty[id] {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func dirtyString(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, " ")
}

// DirtyIndexes lists the index files changed since the last reset, and
// resets the list when reset is set.
func (ns *Namespace) DirtyIndexes(reset bool) []uint32 {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ids := ns.dirtyList()
	if reset {
		ns.dirty = map[uint32]bool{}
		ns.dirtyFlight = nil
		ns.dirtyGen++
	}
	return ids
}

// rotateIfIdle jumps when the namespace changed and the last jump is older
// than d (--rotate).
func (ns *Namespace) rotateIfOld(d time.Duration) {
	defer ns.deliverEvents()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() || !ns.changed || time.Since(ns.lastJump) < d {
		return
	}
	ns.jump()
}

// Sync flushes the active files to disk (--synctime, shutdown).
func (ns *Namespace) Sync() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return nil
	}
	first := ns.commitLocked()
	if f := ns.dataFiles[ns.cur]; f != nil {
		if err := f.Sync(); err != nil && first == nil {
			first = err
		}
	}
	for _, f := range ns.indexFiles {
		if err := f.Sync(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
