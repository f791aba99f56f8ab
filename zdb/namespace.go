package zdb

import (
	"bytes"
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

	compactMu sync.Mutex // one compaction at a time

	filesMu   sync.RWMutex
	dataFiles map[uint32]*os.File // opened lazily for reads; d<cur> read-write
	fetching  map[uint32]*fetchCall

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

type fetchCall struct {
	done chan struct{}
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
// torn or corrupt tail from the active index and data files.
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

// validData lists the entries of the active data file that survived
// recovery, sorted by offset.
type validData []validEntry

// validEntry is what an index entry must agree with to point at a data
// entry: its offset, CRC, payload length and key length.
type validEntry struct {
	off, crc, length uint32
	keyLen           uint8
}

// has reports whether the data entry at off exists and matches crc, length
// and keyLen. An index entry that disagrees on any of them (a corrupt
// length, say) would make GET read the wrong bytes, so it is not served.
func (v validData) has(off, crc, length uint32, keyLen int) bool {
	i := sort.Search(len(v), func(i int) bool { return v[i].off >= off })
	return i < len(v) && v[i] == validEntry{off: off, crc: crc, length: length, keyLen: uint8(keyLen)} && keyLen <= 0xff
}

// recoverDataTail reads the active data file entry by entry, checks each
// CRC, and truncates the file after the last whole, valid entry.
func (ns *Namespace) recoverDataTail() (validData, error) {
	path := ns.dataPath(ns.cur)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// A crash between creating i<N> and d<N>.
		ns.log().Warn("active data file missing, creating it", "file", path)
		if err := writeNewFile(path, DataHeader{Version: DataVersion, Created: uint64(time.Now().Unix()), FileID: ns.cur}.Marshal()); err != nil {
			return nil, err
		}
		ns.dataEnd, ns.dataLast = DataHeaderSize, 0
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	hdr := make([]byte, DataHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil || !bytes.Equal(hdr[:4], []byte(DataMagic)) {
		if size > DataHeaderSize {
			return nil, fmt.Errorf("%s: unreadable data header", path)
		}
		ns.log().Warn("torn data file header, rewriting it", "file", path, "size", size)
		if err := writeNewFile(path, DataHeader{Version: DataVersion, Created: uint64(time.Now().Unix()), FileID: ns.cur}.Marshal()); err != nil {
			return nil, err
		}
		ns.dataEnd, ns.dataLast = DataHeaderSize, 0
		return nil, nil
	}
	if _, err := ParseDataHeader(hdr); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var valid validData
	r := newFileScanner(f, DataHeaderSize, size)
	off := int64(DataHeaderSize)
	last := uint32(0)
	reason := ""
	for off < size {
		h, err := ParseDataEntryHeader(r.peek(off, DataEntryFixed))
		if err != nil {
			reason = "entry header: " + err.Error()
			break
		}
		if h.KeyLen == 0 && h.Flags&FlagDeleted == 0 {
			reason = "entry without a key"
			break
		}
		if off+h.Size() > size {
			reason = "entry cut short"
			break
		}
		payload := r.peek(off+DataEntryFixed+int64(h.KeyLen), int(h.Length))
		if payload == nil || CRC(payload) != h.CRC {
			reason = "payload checksum mismatch"
			break
		}
		valid = append(valid, validEntry{off: uint32(off), crc: h.CRC, length: h.Length, keyLen: uint8(h.KeyLen)})
		last = uint32(off)
		off += h.Size()
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", path, r.err)
	}
	if off < size {
		ns.log().Warn("dropping torn or corrupt tail of data file", "file", path,
			"offset", off, "dropped_bytes", size-off, "reason", reason)
		if err := f.Truncate(off); err != nil {
			return nil, err
		}
	}
	ns.dataEnd, ns.dataLast = off, last
	return valid, nil
}

// replayIndex applies one index file to the key index. In the active file
// (last), an entry that points at data that did not survive ends the file:
// it and everything after it are truncated.
func (ns *Namespace) replayIndex(id uint32, last bool, valid validData) error {
	path := ns.indexPath(id)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	ns.indexFiles[id] = f
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	// The file is read through a window, so that loading millions of
	// entries needs no more memory than the key index itself.
	sc := newFileScanner(f, 0, size)
	h, err := ParseIndexHeader(sc.peek(0, min(IndexHeaderSize, int(size))))
	if err != nil {
		head := sc.peek(0, int(min(size, 4)))
		if last && size < IndexHeaderSize && bytes.HasPrefix([]byte(IndexMagic), head) {
			ns.log().Warn("torn index file header, rewriting it", "file", path, "size", size)
			if id == 0 {
				h.Mode = ns.eng.defaultMode()
			} else {
				h.Mode = ns.mode
			}
			hb := IndexHeader{Version: IndexVersion, Created: uint64(time.Now().Unix()), FileID: id, Mode: h.Mode}.Marshal()
			if _, err := f.WriteAt(hb, 0); err != nil {
				return err
			}
			if err := f.Truncate(IndexHeaderSize); err != nil {
				return err
			}
			size = IndexHeaderSize
		} else {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if id == ns.firstID() {
		ns.mode = h.Mode
	} else if h.Mode != ns.mode {
		return fmt.Errorf("%s: mode %s differs from the namespace's %s", path, h.Mode, ns.mode)
	}

	off := int64(IndexHeaderSize)
	lastEntry := uint32(0)
	reason := ""
	for off < size {
		fixed := sc.peek(off, IndexEntryFixed)
		if fixed == nil {
			reason = errShort.Error()
			break
		}
		raw := sc.peek(off, IndexEntryFixed+int(fixed[0]))
		if raw == nil {
			reason = errShort.Error()
			break
		}
		e, n, err := ParseIndexEntry(raw)
		if err != nil {
			reason = err.Error()
			break
		}
		if ns.mode == ModeSeq && len(e.Key) != SeqKeyLen {
			reason = "sequential entry with a key of " + strconv.Itoa(len(e.Key)) + " bytes"
			break
		}
		e.DataID = ns.entryDataID(id, e)
		live := e.Flags&FlagDeleted == 0
		if live && e.DataID != ns.cur && !ns.fitsClosedData(id, e) {
			// Points past the end of a closed data file, or at a data file
			// that cannot exist: corrupt. Never served.
			if last {
				reason = "entry points outside its data file"
				break
			}
			ns.log().Warn("ignoring an entry that points outside its data file", "file", path, "offset", off)
			live = false
		}
		if e.DataID == ns.cur && e.Length+uint32(len(e.Key)) > 0 && !valid.has(e.DataOffset, e.CRC, e.Length, len(e.Key)) {
			// The entry points into the active data file at data that did
			// not survive. Entries and their data are appended in the same
			// order, so in the active index file this ends the file ...
			// (A rewritten slot's parent is the copy appended after it;
			// it may have been flagged by an earlier recovery.)
			rewritten := ns.mode == ModeSeq &&
				(e.ParentID > id || e.ParentID == id && int64(e.ParentOffset) > off)
			if last && !rewritten {
				reason = "entry points at data that is missing or corrupt"
				break
			}
			// ... except for a seq slot rewritten in place by an update:
			// keep the slot (it holds an id) but flag it deleted, so that
			// neither GET nor SCAN serves it.
			if live {
				ns.log().Warn("dropping key whose data did not survive", "file", path, "offset", off)
				live = false
				if _, err := f.WriteAt([]byte{e.Flags | FlagDeleted}, off+idxOffFlags); err != nil {
					return fmt.Errorf("%s: flagging a lost slot: %w", path, err)
				}
			}
		}
		// A seq id is its slot's position, and 0-db stores it as the key of
		// live slots. The stored key is what counts: if an older index
		// file lost entries, positions shift but keys do not.
		key := e.Key
		if ns.mode == ModeSeq && live {
			id := binary.LittleEndian.Uint64(e.Key)
			if id != ns.nextID && !ns.seqShifted {
				ns.seqShifted = true
				ns.log().Warn("sequential ids are not at their positions; an index file lost entries", "file", path, "offset", off)
			}
			ns.seqMax = max(ns.seqMax, id+1)
		}
		if ns.mode == ModeUser {
			// A key live in memory has its entry unflagged on disk. A later
			// entry for it means a crash came between appending that entry
			// and flagging the old one: finish that write, so that SCAN
			// does not see the key twice (or a deleted key at all).
			if prev, ok := ns.idx.Get(key); ok {
				pf := ns.indexFiles[prev.IndexID]
				if _, err := pf.WriteAt([]byte{FlagDeleted}, int64(prev.IndexOffset)+idxOffFlags); err != nil {
					return fmt.Errorf("%s: flagging a superseded entry: %w", path, err)
				}
			}
		}
		if live {
			ns.idx.Put(key, location{
				IndexID: id, IndexOffset: uint32(off), DataID: e.DataID, DataOffset: e.DataOffset,
				Length: e.Length, CRC: e.CRC, Timestamp: e.Timestamp,
			})
		} else if ns.mode == ModeUser {
			ns.idx.Delete(key)
		}
		ns.nextID++
		lastEntry = uint32(off)
		off += int64(n)
	}
	if sc.err != nil {
		return fmt.Errorf("%s: %w", path, sc.err)
	}
	if off < size {
		if !last {
			ns.log().Error("index file has an unreadable entry; ignoring the rest of it",
				"file", path, "offset", off, "ignored_bytes", size-off, "reason", reason)
		} else {
			ns.log().Warn("dropping torn or corrupt tail of index file", "file", path,
				"offset", off, "dropped_bytes", size-off, "reason", reason)
			if err := f.Truncate(off); err != nil {
				return err
			}
		}
	}
	ns.fileEnds[id] = fileEnd{end: off, last: lastEntry}
	if lastEntry != 0 {
		ns.idxLast = lastEntry
	}
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
// caller holds mu or owns ns.
func (ns *Namespace) close() {
	if ns.indexFiles != nil {
		if err := ns.commitLocked(); err != nil {
			ns.log().Error("final commit failed", "err", err)
		}
	}
	ns.closeFiles()
}

// closeFiles releases files and memory without writing anything buffered.
func (ns *Namespace) closeFiles() {
	ns.gen++ // a compaction in progress stops
	for _, f := range ns.indexFiles {
		f.Sync()
		f.Close()
	}
	ns.filesMu.Lock()
	for _, f := range ns.dataFiles {
		f.Sync()
		f.Close()
	}
	ns.dataFiles = map[uint32]*os.File{}
	ns.filesMu.Unlock()
	ns.indexFiles = map[uint32]*os.File{}
	if ns.idx != nil {
		ns.idx.Release()
		ns.idx = newKeyIndex()
	}
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
		same, err := ns.payloadEquals(old, len(key), value)
		if err == nil && same {
			return nil, Ticket{}, nil
		}
	}
	if err := ns.maybeJump(len(value)); err != nil {
		return nil, Ticket{}, ErrWrite
	}
	if ns.mode == ModeSeq && !exists {
		key = seqKey(ns.nextID)
	}

	dataOff := ns.appendData(key, value, crc, 0, ts)
	loc := location{DataID: ns.cur, DataOffset: dataOff, Length: uint32(len(value)), CRC: crc, Timestamp: ts}
	if ns.mode == ModeSeq && exists {
		if err := ns.seqUpdate(old, &loc); err != nil {
			return nil, Ticket{}, ErrWrite
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
				return nil, Ticket{}, ErrWrite
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
	if err != nil {
		return err
	}
	cp := prev
	cp.Flags |= FlagDeleted
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
	ns.scratch = AppendDataEntry(ns.scratch[:0], h, key, payload)
	off := ns.bufData(ns.scratch)
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
// data file and the index entry is flagged in place.
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
	ns.appendData(key, nil, 0, FlagDeleted, ts)
	if err := ns.flagDeleted(loc.IndexID, loc.IndexOffset); err != nil {
		return Ticket{}, ErrWrite
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
// not match is never returned: the read fails with ErrInternal.
func (ns *Namespace) Get(key, dst []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		ns.mu.RLock()
		loc, err := ns.lookup(key)
		if err != nil {
			ns.mu.RUnlock()
			return nil, err
		}
		out, err := ns.readPayload(loc, len(key), dst)
		ns.mu.RUnlock()
		if errors.Is(err, errMissingFile) && attempt == 0 {
			// Fetch outside the namespace lock: only readers of this file
			// wait for the missing-data hook.
			ns.fetchMissing(loc.DataID)
			continue
		}
		if err != nil {
			return nil, ErrInternal
		}
		return out, nil
	}
}

// Check verifies key's payload against its CRC: 1 match, 0 mismatch, -1
// unreadable.
func (ns *Namespace) Check(key []byte) (int, error) {
	for attempt := 0; ; attempt++ {
		ns.mu.RLock()
		loc, err := ns.lookup(key)
		if err != nil {
			ns.mu.RUnlock()
			return 0, err
		}
		_, err = ns.readPayload(loc, len(key), nil)
		ns.mu.RUnlock()
		switch {
		case err == nil:
			return 1, nil
		case errors.Is(err, errMissingFile) && attempt == 0:
			ns.fetchMissing(loc.DataID)
			continue
		case errors.Is(err, errChecksum):
			return 0, nil
		default:
			return -1, nil
		}
	}
}

var (
	errMissingFile = errors.New("data file missing")
	errChecksum    = errors.New("payload checksum mismatch")
)

// dataFile returns an open data file, or errMissingFile.
func (ns *Namespace) dataFile(id uint32) (*os.File, error) {
	ns.filesMu.RLock()
	f := ns.dataFiles[id]
	ns.filesMu.RUnlock()
	if f != nil {
		return f, nil
	}
	ns.filesMu.Lock()
	defer ns.filesMu.Unlock()
	if f := ns.dataFiles[id]; f != nil {
		return f, nil
	}
	f, err := os.Open(ns.dataPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errMissingFile
	}
	if err != nil {
		ns.dataIOError(false)
		return nil, err
	}
	ns.dataFiles[id] = f
	return f, nil
}

// readPayload reads and verifies the payload at loc. The caller holds mu.
// keyLen is the length of the key stored in the data entry (the key itself
// in user mode, 8 in seq mode).
func (ns *Namespace) readPayload(loc location, keyLen int, dst []byte) ([]byte, error) {
	start := len(dst)
	at := int64(loc.DataOffset) + DataEntryFixed + int64(keyLen)
	if buf := ns.pendingData(loc.DataID, at); buf != nil {
		dst = append(dst, buf[:loc.Length]...)
		if CRC(dst[start:]) != loc.CRC {
			return nil, errChecksum
		}
		return dst, nil
	}
	f, err := ns.dataFile(loc.DataID)
	if err != nil {
		return nil, err
	}
	dst = grow(dst, int(loc.Length))
	n, err := f.ReadAt(dst[start:], at)
	if n < int(loc.Length) {
		ns.dataIOError(false)
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	ns.eng.stats.dataRead.Add(uint64(loc.Length))
	if CRC(dst[start:]) != loc.CRC {
		ns.dataFaults.Add(1)
		return nil, errChecksum
	}
	return dst, nil
}

func (ns *Namespace) payloadEquals(loc location, keyLen int, value []byte) (bool, error) {
	buf, err := ns.readPayload(loc, keyLen, nil)
	if err != nil {
		return false, err
	}
	return bytes.Equal(buf, value), nil
}

// fetchMissing runs the missing-data hook for data file id once, however
// many readers need it at the same time; the others wait for that run.
func (ns *Namespace) fetchMissing(id uint32) {
	ns.filesMu.Lock()
	if c, ok := ns.fetching[id]; ok {
		ns.filesMu.Unlock()
		<-c.done
		return
	}
	c := &fetchCall{done: make(chan struct{})}
	ns.fetching[id] = c
	ns.filesMu.Unlock()

	ns.eng.hooks.run("missing-data", true, ns.dataPath(id))

	ns.filesMu.Lock()
	delete(ns.fetching, id)
	ns.filesMu.Unlock()
	close(c.done)
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
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return ErrNamespaceGone
	}
	if err := ns.jump(); err != nil {
		return ErrWrite
	}
	return nil
}

// jump closes the active files (synced, so that the closed data file is
// complete when the jump-data hook reports it) and starts id+1.
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
	dirty := ns.dirtyList()
	if code := ns.eng.hooks.run("jump-index", true, ns.indexPath(old), ns.indexPath(ns.cur), dirtyString(dirty)); code == 0 && ns.eng.hooks.enabled() {
		ns.dirty = map[uint32]bool{}
	}
	ns.eng.hooks.run("jump-data", false, ns.dataPath(old), ns.dataPath(ns.cur))
	return nil
}

func (ns *Namespace) dirtyList() []uint32 {
	ids := make([]uint32, 0, len(ns.dirty))
	for id := range ns.dirty {
		ids = append(ids, id)
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
	}
	return ids
}

// rotateIfIdle jumps when the namespace changed and the last jump is older
// than d (--rotate).
func (ns *Namespace) rotateIfOld(d time.Duration) {
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
