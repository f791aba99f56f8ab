package zdb

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CursorSize is the length of a SCAN cursor: u8 keylen | u32 index file |
// u32 payload length | u32 entry offset | u32 crc.
const CursorSize = 17

// ScanItem is one live key found by Scan.
type ScanItem struct {
	Key       []byte
	Length    uint32
	Timestamp uint32
}

type entryPos struct {
	id  uint32
	off uint32
}

func encodeCursor(keyLen int, id, length, off, crc uint32) []byte {
	c := make([]byte, CursorSize)
	c[0] = uint8(keyLen)
	binary.LittleEndian.PutUint32(c[1:], id)
	binary.LittleEndian.PutUint32(c[5:], length)
	binary.LittleEndian.PutUint32(c[9:], off)
	binary.LittleEndian.PutUint32(c[13:], crc)
	return c
}

// readEntry reads the index entry at pos. The caller holds mu.
func (ns *Namespace) readEntry(pos entryPos) (IndexEntry, error) {
	f := ns.indexFiles[pos.id]
	fe, ok := ns.fileEnds[pos.id]
	if f == nil || !ok || int64(pos.off) < IndexHeaderSize || int64(pos.off) >= fe.end {
		return IndexEntry{}, ErrInvalidCursor
	}
	n := min(int64(IndexEntryFixed+MaxKeyLen), fe.end-int64(pos.off))
	buf := make([]byte, n)
	if err := ns.readIndexAt(pos.id, buf, int64(pos.off)); err != nil {
		return IndexEntry{}, withCause(ErrInternal, err)
	}
	e, _, err := ParseIndexEntry(buf)
	if err != nil && (errors.Is(err, errShort) || len(e.Key) == 0) {
		return IndexEntry{}, ErrInvalidCursor
	}
	// A length over the limit: loading kept such an entry as damaged (its
	// extent is right), and SCAN steps over it like any other.
	return e, nil
}

// KeyCursor returns the SCAN cursor positioned on key (KEYCUR).
func (ns *Namespace) KeyCursor(key []byte) ([]byte, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	loc, err := ns.lookup(key)
	if err != nil {
		return nil, err
	}
	return encodeCursor(len(key), loc.IndexID, loc.Length, loc.IndexOffset, loc.CRC), nil
}

// Scan returns up to max live keys after the cursor (from the first entry,
// included, when cursor is nil), walking the index files forward, or
// backward when reverse is set. It also returns the cursor of the last key
// returned.
func (ns *Namespace) Scan(cursor []byte, reverse bool, max int) ([]ScanItem, []byte, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if ns.deleted.Load() {
		return nil, nil, ErrNamespaceGone
	}
	if err := ns.checkAccess(false); err != nil {
		return nil, nil, err
	}
	var pos entryPos
	var ok bool
	if cursor == nil {
		if reverse {
			pos, ok = ns.lastPos(ns.cur)
		} else {
			pos, ok = ns.firstPos(ns.firstID())
		}
		if !ok {
			return nil, nil, ErrNoMoreData
		}
	} else {
		if len(cursor) != CursorSize {
			return nil, nil, ErrInvalidCursor
		}
		pos = entryPos{binary.LittleEndian.Uint32(cursor[1:]), binary.LittleEndian.Uint32(cursor[9:])}
		e, err := ns.readEntry(pos)
		if err != nil {
			return nil, nil, ErrInvalidCursor
		}
		if len(e.Key) != int(cursor[0]) || e.Length != binary.LittleEndian.Uint32(cursor[5:]) ||
			e.CRC != binary.LittleEndian.Uint32(cursor[13:]) {
			return nil, nil, ErrInvalidCursor
		}
		if pos, ok = ns.step(pos, e, reverse); !ok {
			return nil, nil, ErrNoMoreData
		}
	}
	var items []ScanItem
	var last []byte
	deadline := time.Now().Add(50 * time.Millisecond)
	for len(items) < max {
		e, err := ns.readEntry(pos)
		if err != nil {
			return nil, nil, ErrInternal
		}
		if e.Flags&FlagDeleted == 0 && !ns.isHidden(pos) && ns.isLiveAt(e.Key, pos) {
			items = append(items, ScanItem{Key: e.Key, Length: e.Length, Timestamp: e.Timestamp})
			last = encodeCursor(len(e.Key), pos.id, e.Length, pos.off, e.CRC)
			if time.Now().After(deadline) {
				break
			}
		}
		if pos, ok = ns.step(pos, e, reverse); !ok {
			break
		}
	}
	if len(items) == 0 {
		return nil, nil, ErrNoMoreData
	}
	return items, last, nil
}

// isLiveAt reports whether the entry at pos is the live one of key: an
// unflagged entry that the key index does not point at is a stale original
// whose flag a compaction (or a crash) has not written yet.
func (ns *Namespace) isLiveAt(key []byte, pos entryPos) bool {
	loc, ok := ns.idx.Get(key)
	return ok && loc.IndexID == pos.id && loc.IndexOffset == pos.off
}

// compactedAway reports whether pos lies in a closed index file that
// compaction emptied (only its header is left).
func (ns *Namespace) compactedAway(pos entryPos) bool {
	fe, ok := ns.fileEnds[pos.id]
	return ok && pos.id < ns.cur && fe.end == IndexHeaderSize && int64(pos.off) >= IndexHeaderSize
}

func (ns *Namespace) firstPos(from uint32) (entryPos, bool) {
	for id := from; id <= ns.cur; id++ {
		if fe, ok := ns.fileEnds[id]; ok && fe.end > IndexHeaderSize {
			return entryPos{id, IndexHeaderSize}, true
		}
	}
	return entryPos{}, false
}

func (ns *Namespace) lastPos(from uint32) (entryPos, bool) {
	first := ns.firstID()
	for id := int64(from); id >= int64(first); id-- {
		if fe, ok := ns.fileEnds[uint32(id)]; ok && fe.end > IndexHeaderSize {
			return entryPos{uint32(id), fe.last}, true
		}
	}
	return entryPos{}, false
}

// step moves from the entry e at pos to the next (or previous) entry.
func (ns *Namespace) step(pos entryPos, e IndexEntry, reverse bool) (entryPos, bool) {
	if !reverse {
		next := int64(pos.off) + int64(e.Size())
		if next < ns.fileEnds[pos.id].end {
			return entryPos{pos.id, uint32(next)}, true
		}
		return ns.firstPos(pos.id + 1)
	}
	if pos.off <= IndexHeaderSize {
		if pos.id == 0 {
			return entryPos{}, false
		}
		return ns.lastPos(pos.id - 1)
	}
	// Follow the entry's back link when it is consistent, else re-walk
	// the file from its start.
	if e.Previous >= IndexHeaderSize && e.Previous < pos.off {
		if pe, err := ns.readEntry(entryPos{pos.id, e.Previous}); err == nil && e.Previous+uint32(pe.Size()) == pos.off {
			return entryPos{pos.id, e.Previous}, true
		}
	}
	off := uint32(IndexHeaderSize)
	for {
		pe, err := ns.readEntry(entryPos{pos.id, off})
		if err != nil {
			return entryPos{}, false
		}
		next := off + uint32(pe.Size())
		if next >= pos.off {
			return entryPos{pos.id, off}, true
		}
		off = next
	}
}

// HistoryItem is one version of a key.
type HistoryItem struct {
	Parent    []byte // 8-byte key of the previous version, nil for the first
	Timestamp uint32
	Payload   []byte
}

// History returns the live version of key, or with ekey (u32 index file |
// u32 offset) the version that ekey names, with a link to the one before.
// A version in an absent data file is fetched as Get fetches it.
func (ns *Namespace) History(key, ekey []byte) (HistoryItem, error) {
	var e IndexEntry
	retiredData := false
	payload, lookupErr, err := ns.readLive(context.Background(), func() (location, []byte, error) {
		var pos entryPos
		if ekey == nil {
			loc, err := ns.lookup(key)
			if err != nil {
				return location{}, nil, err
			}
			pos = entryPos{loc.IndexID, loc.IndexOffset}
		} else {
			if ns.deleted.Load() {
				return location{}, nil, ErrNamespaceGone
			}
			if err := ns.checkAccess(false); err != nil {
				return location{}, nil, err
			}
			if len(ekey) != 8 {
				return location{}, nil, ErrInvalidArguments
			}
			pos = entryPos{binary.LittleEndian.Uint32(ekey), binary.LittleEndian.Uint32(ekey[4:])}
			if pos.id == 0 && pos.off == 0 {
				return location{}, nil, ErrNoMoreHistory
			}
			if ns.compactedAway(pos) {
				// The version lived in an index file that compaction emptied.
				return location{}, nil, ErrNoMoreHistory
			}
		}
		var err error
		e, err = ns.readEntry(pos)
		if err != nil || string(e.Key) != string(key) && ns.mode == ModeUser {
			return location{}, nil, ErrInvalidArguments
		}
		loc := location{DataID: ns.entryDataID(pos.id, e), DataOffset: e.DataOffset, Length: e.Length, CRC: e.CRC}
		retiredData = loc.DataID < ns.cur && ns.liveData[loc.DataID] == 0
		return loc, e.Key, nil
	}, nil)
	if lookupErr != nil {
		return HistoryItem{}, lookupErr
	}
	if err != nil {
		if ekey != nil && errors.Is(err, fs.ErrNotExist) && retiredData {
			// A seq-mode copy slot whose data file compaction retired.
			return HistoryItem{}, ErrNoMoreHistory
		}
		return HistoryItem{}, withCause(ErrInternal, err)
	}
	item := HistoryItem{Timestamp: e.Timestamp, Payload: payload}
	if e.ParentID != 0 || e.ParentOffset != 0 {
		item.Parent = make([]byte, 8)
		binary.LittleEndian.PutUint32(item.Parent, e.ParentID)
		binary.LittleEndian.PutUint32(item.Parent[4:], e.ParentOffset)
	}
	return item, nil
}

// RawEntry is a data entry as DATA RAW shows it.
type RawEntry struct {
	Key       []byte
	Previous  uint32
	CRC       uint32
	Flags     uint8
	Timestamp uint32
	Payload   []byte
}

// DataRaw reads the data entry at offset in data file id.
func (ns *Namespace) DataRaw(id uint32, offset int64) (RawEntry, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return RawEntry{}, ErrNamespaceGone
	}
	if err := ns.commitLocked(); err != nil {
		return RawEntry{}, err
	}
	f, fh, err := ns.dataFile(id)
	if err != nil {
		return RawEntry{}, withCause(ErrInternal, err)
	}
	defer fh.release()
	size := ns.dataEnd
	if id != ns.cur {
		st, err := f.Stat()
		if err != nil {
			return RawEntry{}, withCause(ErrInternal, err)
		}
		size = st.Size()
	}
	if offset >= size {
		return RawEntry{}, ErrEOF
	}
	if offset < DataHeaderSize {
		return RawEntry{}, ErrInvalidArguments
	}
	hb := make([]byte, DataEntryFixed)
	if _, err := f.ReadAt(hb, offset); err != nil {
		return RawEntry{}, ErrEOF
	}
	h, err := ParseDataEntryHeader(hb)
	if err != nil || offset+h.Size() > size {
		return RawEntry{}, ErrInternal
	}
	body := make([]byte, int(h.KeyLen)+int(h.Length))
	if _, err := f.ReadAt(body, offset+DataEntryFixed); err != nil {
		return RawEntry{}, withCause(ErrInternal, err)
	}
	return RawEntry{Key: body[:h.KeyLen], Previous: h.Previous, CRC: h.CRC, Flags: h.Flags,
		Timestamp: h.Timestamp, Payload: body[h.KeyLen:]}, nil
}

// Info renders NSINFO. Paths are shown to admins only.
func (ns *Namespace) Info(admin bool) string {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var idxSize int64
	for _, fe := range ns.fileEnds {
		idxSize += fe.end
	}
	var b strings.Builder
	w := func(k string, v any) { fmt.Fprintf(&b, "%s: %v\n", k, v) }
	b.WriteString("# namespace\n")
	w("name", ns.name)
	w("entries", ns.idx.Len())
	w("public", yn(ns.desc.Public))
	w("worm", yn(ns.desc.Worm))
	w("locked", yn(ns.lock != unlocked))
	w("password", yn(ns.desc.Password != ""))
	w("data_size_bytes", ns.liveBytes)
	w("data_size_mb", fmt.Sprintf("%.2f", float64(ns.liveBytes)/(1024*1024)))
	w("data_limits_bytes", ns.desc.MaxSize)
	w("index_size_bytes", idxSize)
	w("index_size_kb", fmt.Sprintf("%.2f", float64(idxSize)/1024))
	// 0-db prints its next id byte-swapped as 32 bits.
	// 0-db prints its 64-bit id byte-swapped with 0x%08x: 4 is 0x400000000000000.
	w("next_internal_id", fmt.Sprintf("0x%08x", bits.ReverseBytes64(uint64(ns.nextID))))
	if ns.mode == ModeSeq {
		w("mode", "sequential")
	} else {
		w("mode", "userkey")
	}
	w("stats_index_io_errors", ns.indexErrors.Load())
	w("stats_index_io_error_last", ns.indexErrorLast.Load())
	w("stats_index_faults", ns.rec.indexFaults.Load())
	w("stats_data_io_errors", ns.dataErrors.Load())
	w("stats_data_io_error_last", ns.dataErrorLast.Load())
	w("stats_data_faults", ns.dataFaults.Load())
	if ns.desc.MaxSize > 0 {
		avail := uint64(0)
		if ns.desc.MaxSize > ns.liveBytes {
			avail = ns.desc.MaxSize - ns.liveBytes
		}
		w("space_available", avail)
	}
	ifree, dfree := diskFree(ns.indexDir), diskFree(ns.dataDir)
	w("index_disk_freespace_bytes", ifree)
	w("index_disk_freespace_mb", fmt.Sprintf("%.2f", float64(ifree)/(1024*1024)))
	w("data_disk_freespace_bytes", dfree)
	w("data_disk_freespace_mb", fmt.Sprintf("%.2f", float64(dfree)/(1024*1024)))
	if admin {
		w("data_path", ns.dataDir)
		w("data_active", ns.dataPath(ns.cur))
		w("index_path", ns.indexDir)
		w("index_active", ns.indexPath(ns.cur))
		w("data_current_id", ns.cur)
		w("data_current_offset", ns.dataEnd)
	}
	return b.String()
}

func diskFree(path string) uint64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

// NextID is the number of index slots written (the next seq id).
func (ns *Namespace) NextID() uint64 {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	return ns.nextID
}

// SetProperty changes a setting (NSSET).
func (ns *Namespace) SetProperty(prop, value string) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return ErrNamespaceGone
	}
	isDefault := ns.name == DefaultNamespace
	prop = strings.ToLower(prop)
	switch prop {
	case "mode":
		var m Mode
		switch value {
		case "user":
			m = ModeUser
		case "seq":
			m = ModeSeq
		default:
			return ErrInvalidMode
		}
		if ns.eng.opts.Mode != nil {
			return ErrSingleMode
		}
		if m == ns.mode {
			return nil
		}
		if ns.cur != ns.firstID() || ns.fileEnds[ns.cur].end > IndexHeaderSize {
			return ErrModeUsed
		}
		if _, err := ns.indexFiles[ns.cur].WriteAt([]byte{byte(m)}, 28); err != nil {
			ns.indexIOError(true)
			return withCause(ErrWrite, err)
		}
		ns.mode = m
		return nil
	case "lock":
		on, err := parseBool(value)
		if err != nil {
			return err
		}
		if on {
			ns.lock = locked
		} else {
			ns.lock = unlocked
		}
		return nil
	case "freeze":
		on, err := parseBool(value)
		if err != nil {
			return err
		}
		if on {
			ns.lock = frozen
		} else {
			ns.lock = unlocked
		}
		return nil
	}
	switch prop {
	case "maxsize", "password", "public", "worm":
	default:
		return ErrInvalidProperty
	}
	if isDefault {
		return ErrUpdateDefault
	}
	d := ns.desc
	switch prop {
	case "maxsize":
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return ErrInvalidValue
		}
		d.MaxSize = n
	case "password":
		if value == "*" {
			value = ""
		}
		if len(value) > MaxPasswordLen {
			return Error("Password too long")
		}
		d.Password = value
	case "public":
		on, err := parseBool(value)
		if err != nil {
			return err
		}
		d.Public = on
	case "worm":
		on, err := parseBool(value)
		if err != nil {
			return err
		}
		d.Worm = on
	}
	old := ns.desc
	ns.desc = d
	if err := ns.saveDescriptor(); err != nil {
		ns.desc = old
		return withCause(ErrWrite, err)
	}
	return nil
}

func parseBool(v string) (bool, error) {
	switch v {
	case "1":
		return true, nil
	case "0":
		return false, nil
	}
	return false, ErrInvalidValue
}

// Flush removes every key: the namespace's files are deleted and it starts
// over at file 0, keeping its settings and mode.
func (ns *Namespace) Flush() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return ErrNamespaceGone
	}
	if err := ns.checkAccess(true); err != nil {
		return err
	}
	mode := ns.mode
	ns.close()
	if err := removeSegments(ns.indexDir, 'i'); err != nil {
		return withCause(ErrWrite, err)
	}
	if err := removeSegments(ns.dataDir, 'd'); err != nil {
		return withCause(ErrWrite, err)
	}
	if err := ns.load(true, mode); err != nil {
		ns.log().Error("flush: reopening failed", "err", err)
		return withCause(ErrWrite, err)
	}
	return nil
}

func removeSegments(dir string, prefix byte) error {
	ids, err := listIDs(dir, prefix)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := os.Remove(dir + "/" + string(prefix) + strconv.FormatUint(uint64(id), 10)); err != nil {
			return err
		}
	}
	syncDir(dir)
	return nil
}

// Reload closes the namespace and loads it again from disk (RELOAD).
func (ns *Namespace) Reload() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.deleted.Load() {
		return ErrNamespaceGone
	}
	mode := ns.mode
	ns.close()
	if err := ns.load(false, mode); err != nil {
		ns.log().Error("reload failed", "err", err)
		return withCause(ErrInternal, err)
	}
	return nil
}
