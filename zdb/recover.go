package zdb

// Loading the files of a namespace after a crash or with damage in them
// (docs/zdb-format.md, "Startup and recovery").
//
// The active data file is read whole: its entries carry a CRC of their
// payload and, in their header, the offset of the entry before them, so a
// damaged entry is stepped over by finding the entry that names it as its
// predecessor, or the next entry an index entry points at. Only a tail
// after which nothing valid follows is torn, and cut.
//
// Index files are read entry by entry; every entry names the one before it
// (the previous field), which finds the true length of an entry whose key
// length byte is damaged (the byte is repaired in place). In the active
// index file every entry is compared with the data entry it points at
// (offset, key, length, CRC, tombstone); one that does not agree is kept
// but never served (reads fail), unless it lies in the torn tail: after
// the last entry that agrees with data written after everything before it
// (a tail whose entries point past the end of the data file).

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
)

// recoveryState is what loading found wrong, for the readers.
type recoveryState struct {
	// damaged holds the live entries that are not served: a read of the
	// key fails (ErrInternal). The location is the one in the key index,
	// so a later write of the key (a new location) is not affected.
	damaged map[entryPos]location
	// hidden holds unflagged entries that the key index does not use (a
	// later, unlinked entry for the same key took over and nothing was
	// written to disk): SCAN skips them.
	hidden      map[entryPos]bool
	indexFaults atomic.Uint64 // damaged index entries found (NSINFO stats_index_faults)
	lastWarn    atomic.Int64  // unix time of the last read fault logged
}

func (r *recoveryState) reset() {
	r.damaged, r.hidden = nil, nil
	r.indexFaults.Store(0)
}

// isDamaged reports whether loc is a location recovery found damaged.
func (ns *Namespace) isDamaged(loc location) bool {
	if len(ns.rec.damaged) == 0 {
		return false
	}
	d, ok := ns.rec.damaged[entryPos{loc.IndexID, loc.IndexOffset}]
	return ok && d == loc
}

// isHidden reports whether SCAN must skip the unflagged entry at pos.
func (ns *Namespace) isHidden(pos entryPos) bool {
	return len(ns.rec.hidden) > 0 && ns.rec.hidden[pos]
}

// ---------------------------------------------------------------------------
// the active data file

// dataScan is what the read of the active data file found.
type dataScan struct {
	valid   []validEntry // sorted by offset
	damaged []dataSpan   // damaged entries stepped over, sorted
	end     int64        // where the file ends after recovery
}

// validEntry is a data entry whose payload matches its CRC: what an index
// entry pointing at it must agree with.
type validEntry struct {
	off, length, crc uint32
	keySum           uint32 // CRC of the key
	keyLen, flags    uint8
}

// dataSpan is a damaged region [start, end) of the data file, from the
// start of a damaged entry to the next valid one.
type dataSpan struct{ start, end int64 }

// dataClass is how an index entry relates to the active data file.
type dataClass uint8

const (
	dataMatch    dataClass = iota // a valid entry that agrees with it
	dataDamaged                   // a damaged entry stepped over
	dataMismatch                  // a valid entry that disagrees, or no entry starts there
	dataBeyond                    // past the end of the file
)

var dataClassText = [...]string{"", "its data entry is damaged", "it does not match the data entry it points at",
	"it points past the end of the data file"}

// classify compares index entry e with the data entry it points at.
func (s *dataScan) classify(e *IndexEntry) dataClass {
	off := int64(e.DataOffset)
	i := sort.Search(len(s.valid), func(i int) bool { return int64(s.valid[i].off) >= off })
	if i < len(s.valid) && int64(s.valid[i].off) == off {
		v := s.valid[i]
		if int(v.keyLen) == len(e.Key) && v.length == e.Length && v.crc == e.CRC && v.keySum == CRC(e.Key) &&
			(e.Flags&FlagDeleted != 0 || v.flags&FlagDeleted == 0) {
			return dataMatch
		}
		return dataMismatch
	}
	j := sort.Search(len(s.damaged), func(j int) bool { return s.damaged[j].end > off })
	if j < len(s.damaged) && s.damaged[j].start <= off {
		return dataDamaged
	}
	if off >= s.end {
		return dataBeyond
	}
	return dataMismatch
}

// keyOf returns the key length and key CRC of the valid data entry at off
// when its length and CRC are length and crc (used to repair the key length
// byte of the last active index entry).
func (s *dataScan) keyOf(off, length, crc uint32) (int, uint32) {
	i := sort.Search(len(s.valid), func(i int) bool { return s.valid[i].off >= off })
	if i < len(s.valid) && s.valid[i].off == off && s.valid[i].length == length && s.valid[i].crc == crc {
		return int(s.valid[i].keyLen), s.valid[i].keySum
	}
	return 0, 0
}

// claimedBy returns the offset of a valid data entry after the offset
// after with e's key that agrees with e on its offset, or on its length and
// CRC; -1 if there is none.
func (s *dataScan) claimedBy(e *IndexEntry, after int64) int64 {
	sum := CRC(e.Key)
	i := sort.Search(len(s.valid), func(i int) bool { return int64(s.valid[i].off) > after })
	for ; i < len(s.valid); i++ {
		v := s.valid[i]
		if int(v.keyLen) == len(e.Key) && v.keySum == sum &&
			(v.off == e.DataOffset || v.length == e.Length && v.crc == e.CRC) {
			return int64(v.off)
		}
	}
	return -1
}

// dataHint is where an entry of the active index file says a data entry
// is, for stepping over a damaged one.
type dataHint struct {
	off, length, crc, keySum uint32
	keyLen                   uint8
}

// recoverDataTail reads the active data file entry by entry and checks each
// CRC. A damaged entry is stepped over when a valid entry follows it (see
// resyncData); a tail after which nothing valid follows is cut.
func (ns *Namespace) recoverDataTail() (*dataScan, error) {
	path := ns.dataPath(ns.cur)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// A crash between creating i<N> and d<N>.
		ns.log().Warn("active data file missing, creating it", "file", path)
		if err := writeNewFile(path, DataHeader{Version: DataVersion, Created: uint64(time.Now().Unix()), FileID: ns.cur}.Marshal()); err != nil {
			return nil, err
		}
		ns.dataEnd, ns.dataLast = DataHeaderSize, 0
		return &dataScan{end: DataHeaderSize}, nil
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
		return &dataScan{end: DataHeaderSize}, nil
	}
	if _, err := ParseDataHeader(hdr); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	scan := &dataScan{}
	r := newFileScanner(f, DataHeaderSize, size)
	var hints []dataHint
	hinted := false
	off := int64(DataHeaderSize)
	last := uint32(0)
	for off < size {
		v, n, why := dataEntryAt(r, off, size)
		if why == "" {
			scan.valid = append(scan.valid, v)
			last = uint32(off)
			off += n
			continue
		}
		if !hinted {
			hints, hinted = ns.activeIndexHints(), true
		}
		next, how := resyncData(r, off, size, hints)
		if r.err != nil {
			break
		}
		if next < 0 {
			ns.log().Warn("dropping torn or corrupt tail of data file", "file", path,
				"offset", off, "dropped_bytes", size-off, "reason", why)
			if err := f.Truncate(off); err != nil {
				return nil, err
			}
			break
		}
		ns.log().Warn("damaged data entry: its key is not served; the entries after it are", "file", path,
			"offset", off, "bytes", next-off, "reason", why, "next_entry_found_by", how)
		scan.damaged = append(scan.damaged, dataSpan{off, next})
		off = next
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", path, r.err)
	}
	scan.end = off
	ns.dataEnd, ns.dataLast = off, last
	return scan, nil
}

// dataEntryAt checks the data entry at off. It returns the entry and its
// size, or why it is not a whole valid entry.
func dataEntryAt(r *fileScanner, off, size int64) (validEntry, int64, string) {
	h, err := ParseDataEntryHeader(r.peek(off, DataEntryFixed))
	if errors.Is(err, errShort) {
		return validEntry{}, 0, "entry cut short"
	}
	if err != nil {
		return validEntry{}, 0, "entry header: " + err.Error()
	}
	if h.KeyLen == 0 && h.Flags&FlagDeleted == 0 {
		return validEntry{}, 0, "entry without a key"
	}
	if off+h.Size() > size {
		return validEntry{}, 0, "entry cut short"
	}
	body := r.peek(off+DataEntryFixed, int(h.KeyLen)+int(h.Length))
	if body == nil {
		return validEntry{}, 0, "entry cut short"
	}
	if CRC(body[h.KeyLen:]) != h.CRC {
		return validEntry{}, 0, "payload checksum mismatch"
	}
	return validEntry{off: uint32(off), length: h.Length, crc: h.CRC, keySum: CRC(body[:h.KeyLen]),
		keyLen: h.KeyLen, flags: h.Flags}, h.Size(), ""
}

// resyncData finds where the valid entries resume after the damaged entry
// at off, or returns -1 when none does (a torn tail). Two witnesses, the
// nearer wins:
//   - the entry written right after it names it (its previous field is
//     off) and is valid; it lies within the largest entry size. An empty
//     payload has a trivial CRC, so such an entry must also be named by
//     the one after it (or end the file);
//   - an entry of the active index file points at a valid data entry
//     after off that agrees with it (key, length, CRC).
func resyncData(r *fileScanner, off, size int64, hints []dataHint) (int64, string) {
	best, how := int64(-1), ""
	limit := min(size, off+DataEntryFixed+MaxKeyLen+MaxPayload+1)
	var pat [4]byte
	binary.LittleEndian.PutUint32(pat[:], uint32(off))
	for c := off + DataEntryFixed + 5; c+4 <= size && c < limit+5; {
		n := min(int64(1<<20), size-c)
		buf := r.peek(c, int(n))
		if buf == nil {
			break
		}
		i := bytes.Index(buf, pat[:])
		if i < 0 {
			if n <= 3 {
				break
			}
			c += n - 3
			continue
		}
		p := c + int64(i) - 5
		if p >= limit {
			break
		}
		c += int64(i) + 1
		if v, vn, why := dataEntryAt(r, p, size); why == "" && (v.length > 0 || dataLinked(r, p, p+vn, size)) {
			best, how = p, "back link"
			break
		}
	}
	i := sort.Search(len(hints), func(i int) bool { return int64(hints[i].off) >= off+DataEntryFixed })
	for ; i < len(hints) && (best < 0 || int64(hints[i].off) < best); i++ {
		h := hints[i]
		v, _, why := dataEntryAt(r, int64(h.off), size)
		if why == "" && v.keyLen == h.keyLen && v.length == h.length && v.crc == h.crc && v.keySum == h.keySum {
			best, how = int64(h.off), "index"
			break
		}
	}
	return best, how
}

// dataLinked reports whether the data entry at next (or the end of the
// file) follows the entry at p.
func dataLinked(r *fileScanner, p, next, size int64) bool {
	if next == size || next+DataEntryFixed > size {
		return true
	}
	b := r.peek(next+5, 4)
	return b != nil && int64(binary.LittleEndian.Uint32(b)) == p
}

// activeIndexHints lists where the entries of the active index file say
// data entries of the active data file are, sorted by offset. It only
// reads; the file is replayed later.
func (ns *Namespace) activeIndexHints() []dataHint {
	f, err := os.Open(ns.indexPath(ns.cur))
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	sc := newFileScanner(f, 0, st.Size())
	h, err := ParseIndexHeader(sc.peek(0, IndexHeaderSize))
	if err != nil {
		return nil
	}
	w := &indexWalker{sc: sc, size: st.Size(), seq: h.Mode == ModeSeq, off: IndexHeaderSize, prev: -1}
	var hints []dataHint
	for {
		we, ok := w.next()
		if !ok {
			break
		}
		if we.bad != "" || (h.Mode == ModeSeq && we.e.DataID != ns.cur) {
			continue
		}
		e := we.e
		hints = append(hints, dataHint{off: e.DataOffset, length: e.Length, crc: e.CRC, keySum: CRC(e.Key), keyLen: uint8(len(e.Key))})
	}
	sort.Slice(hints, func(i, j int) bool { return hints[i].off < hints[j].off })
	return hints
}

// ---------------------------------------------------------------------------
// walking an index file

// indexWalker reads the entries of an index file in order. Each entry names
// the entry before it (previous field), except the first of a file; an
// entry is taken when it parses, names the one before it, and is named by
// the one after it (or ends the file). When that fails, the key length
// byte is suspected: the true length is the one after which an entry names
// this one (in seq mode, 8; for the last entry of a closed file, which the
// first entry of the next file names, the one that ends the file; for the
// active file, the key length of the data entry it points at, if the key's
// CRC agrees).
type indexWalker struct {
	sc     *fileScanner
	size   int64
	seq    bool
	closed bool // a closed file ends exactly after its last entry
	// lastOff (closed file): the offset of its last entry, as the first
	// entry of the next file names it; -1 if unknown.
	lastOff int64
	// keyOf (active file) gives the key length and key CRC of the valid
	// data entry at off with that length and CRC.
	keyOf   func(off, length, crc uint32) (int, uint32)
	off     int64
	prev    int64  // offset of the last entry returned, -1 before the first
	stop    string // why the walk ended before the end of the file
	scratch [IndexEntryFixed + MaxKeyLen]byte
}

// walkedEntry is one entry found by the walker.
type walkedEntry struct {
	off int64
	e   IndexEntry // the key aliases the walker's scratch buffer
	n   int
	bad string // a field out of range: the entry's extent is known, its content is not
	fix int    // > 0: the key length byte is wrong and this is the right one
}

// parse decodes the entry at off as if its key length were kl.
func (w *indexWalker) parse(off int64, kl int) (IndexEntry, int, error) {
	raw := w.sc.peek(off, IndexEntryFixed+kl)
	if raw == nil {
		return IndexEntry{}, 0, errShort
	}
	b := w.scratch[:len(raw)]
	copy(b, raw)
	b[0] = byte(kl)
	return ParseIndexEntry(b)
}

// whole reports whether a whole entry, named by the entry after it, is at
// off.
func (w *indexWalker) whole(off int64) bool {
	fixed := w.sc.peek(off, IndexEntryFixed)
	if fixed == nil {
		return false
	}
	_, n, err := w.parse(off, int(fixed[0]))
	return err == nil && w.followed(off, n)
}

func (w *indexWalker) linked(e *IndexEntry) bool {
	return w.prev < 0 || int64(e.Previous) == w.prev
}

// followed reports whether the entry at off, n bytes long, is named by the
// next one or ends the file. A next entry cut before its previous field
// counts as following in the active file (a torn tail), not in a closed one.
func (w *indexWalker) followed(off int64, n int) bool {
	next := off + int64(n)
	if next == w.size {
		return true
	}
	if next > w.size {
		return false
	}
	b := w.sc.peek(next+9, 4)
	if b == nil {
		return !w.closed
	}
	return int64(binary.LittleEndian.Uint32(b)) == off
}

// next returns the next entry, or false at the end of the file or where
// the walk cannot go on (w.stop says why).
func (w *indexWalker) next() (walkedEntry, bool) {
	off := w.off
	if off >= w.size {
		return walkedEntry{}, false
	}
	fixed := w.sc.peek(off, IndexEntryFixed)
	if fixed == nil {
		w.stop = errShort.Error()
		return walkedEntry{}, false
	}
	kl := int(fixed[0])
	e, n, err := w.parse(off, kl)
	if err == nil && w.seq && kl != SeqKeyLen {
		err = errors.New("sequential entry with a key of " + strconv.Itoa(kl) + " bytes")
	}
	if err == nil && w.linked(&e) && w.followed(off, n) {
		return w.take(off, e, n, "", 0), true
	}
	if k := w.keyLength(off, kl); k > 0 {
		e, n, _ = w.parse(off, k)
		return w.take(off, e, n, "", k), true
	}
	// keyLength parsed other entries into the scratch buffer.
	e, n, _ = w.parse(off, kl)
	switch {
	case err == nil && w.followed(off, n):
		// Named by the next entry: only its own back link is damaged.
		return w.take(off, e, n, "", 0), true
	case err == nil && w.linked(&e) && w.whole(off+int64(n)):
		// The next entry is whole and named by the one after it: only
		// its back link is damaged. (Taking this entry on its link alone
		// would swallow the entries after it if its key length is wrong.)
		e, n, _ = w.parse(off, kl)
		return w.take(off, e, n, "", 0), true
	case err != nil && !errors.Is(err, errShort) && kl > 0 && (!w.seq || kl == SeqKeyLen) && w.followed(off, n):
		// A field out of range (a length over the limit): its extent is
		// right, the entry is damaged.
		return w.take(off, e, n, err.Error(), 0), true
	case err != nil:
		w.stop = err.Error()
	default:
		w.stop = "entry does not link to the entries around it"
	}
	return walkedEntry{}, false
}

func (w *indexWalker) take(off int64, e IndexEntry, n int, bad string, fix int) walkedEntry {
	w.prev = off
	w.off = off + int64(n)
	return walkedEntry{off: off, e: e, n: n, bad: bad, fix: fix}
}

// keyLength returns the key length k != kl that makes the entry at off
// whole, linked and followed, or 0.
func (w *indexWalker) keyLength(off int64, kl int) int {
	ok := func(k int, strict bool) bool {
		if k == kl || k < 1 || k > MaxKeyLen || (w.seq && k != SeqKeyLen) {
			return false
		}
		e, n, err := w.parse(off, k)
		if err != nil || !w.linked(&e) {
			return false
		}
		next := off + int64(n)
		if strict {
			// The entry found must be whole and named by its own successor
			// too: a parent offset field can hold off as well.
			if next >= w.size || !w.followed(off, n) {
				return false
			}
			fixed := w.sc.peek(next, IndexEntryFixed)
			if fixed == nil {
				return false
			}
			_, nn, err := w.parse(next, int(fixed[0]))
			return err == nil && w.followed(next, nn)
		}
		return next == w.size || w.followed(off, n)
	}
	if w.seq {
		if ok(SeqKeyLen, true) {
			return SeqKeyLen
		}
	} else {
		// The entry after it names it.
		for k := 1; k <= MaxKeyLen; k++ {
			p := off + IndexEntryFixed + int64(k)
			if p+13 > w.size {
				break
			}
			b := w.sc.peek(p+9, 4)
			if b != nil && int64(binary.LittleEndian.Uint32(b)) == off && ok(k, true) {
				return k
			}
		}
	}
	// The last entry of a closed file ends it.
	if w.closed && off == w.lastOff {
		if k := int(w.size - off - IndexEntryFixed); ok(k, false) {
			return k
		}
	}
	// The data entry it points at has the key.
	if w.keyOf != nil {
		if fixed := w.sc.peek(off, IndexEntryFixed); fixed != nil {
			dataOff := binary.LittleEndian.Uint32(fixed[1:])
			length := binary.LittleEndian.Uint32(fixed[5:])
			crc := binary.LittleEndian.Uint32(fixed[22:])
			if k, sum := w.keyOf(dataOff, length, crc); ok(k, false) {
				if e, _, err := w.parse(off, k); err == nil && CRC(e.Key) == sum {
					return k
				}
			}
		}
	}
	return 0
}

// namedLast returns the offset the first entry of index file id+1 names as
// the entry before it (the last of file id), or -1.
func (ns *Namespace) namedLast(id uint32) int64 {
	f, err := os.Open(ns.indexPath(id + 1))
	if err != nil {
		return -1
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], IndexHeaderSize+9); err != nil {
		return -1
	}
	return int64(binary.LittleEndian.Uint32(b[:]))
}

// ---------------------------------------------------------------------------
// replaying an index file

// replayIndex applies one index file to the key index. last is the active
// file, checked entry by entry against scan (see the top of this file).
func (ns *Namespace) replayIndex(id uint32, last bool, scan *dataScan) error {
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
			sc = newFileScanner(f, 0, size)
		} else {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if id == ns.firstID() {
		ns.mode = h.Mode
	} else if h.Mode != ns.mode {
		return fmt.Errorf("%s: mode %s differs from the namespace's %s", path, h.Mode, ns.mode)
	}

	w := &indexWalker{sc: sc, size: size, seq: ns.mode == ModeSeq, closed: !last, off: IndexHeaderSize, prev: -1, lastOff: -1}
	if last {
		w.keyOf = scan.keyOf
	} else {
		w.lastOff = ns.namedLast(id)
	}
	rp := &replay{ns: ns, id: id, f: f, path: path, last: last, scan: scan, anchorData: -1}
	for {
		we, ok := w.next()
		if !ok {
			break
		}
		if we.fix > 0 {
			ns.log().Warn("repairing the key length of a damaged index entry", "file", path,
				"offset", we.off, "was", sc.peek(we.off, 1)[0], "now", we.fix)
			if _, err := f.WriteAt([]byte{byte(we.fix)}, we.off); err != nil {
				return fmt.Errorf("%s: repairing an entry: %w", path, err)
			}
			sc.buf = sc.buf[:0] // the window holds the old byte
		}
		if err := rp.entry(we); err != nil {
			return err
		}
	}
	if sc.err != nil {
		return fmt.Errorf("%s: %w", path, sc.err)
	}
	end, reason := w.off, w.stop
	if last {
		if cut, why, err := rp.finish(); err != nil {
			return err
		} else if cut >= 0 {
			end, reason = cut, why
		}
	}
	if end < size {
		if !last {
			ns.log().Error("index file has an unreadable entry; ignoring the rest of it",
				"file", path, "offset", end, "ignored_bytes", size-end, "reason", reason)
		} else {
			if err := ns.dropIndexTail(f, path, sc, end, size, scan); err != nil {
				return err
			}
			ns.log().Warn("dropping torn or corrupt tail of index file", "file", path,
				"offset", end, "dropped_bytes", size-end, "reason", reason)
			if err := f.Truncate(end); err != nil {
				return err
			}
		}
	}
	ns.fileEnds[id] = fileEnd{end: end, last: rp.lastEntry}
	if rp.lastEntry != 0 {
		ns.idxLast = rp.lastEntry
	}
	return nil
}

// replay applies the entries of one index file. In the active file, the
// entries after the last anchor (an entry whose data entry, written in the
// same operation, is there and after every earlier anchor's) are held back
// until the next anchor: if none comes, the first of them whose data lies
// past the end of the data file starts the torn tail.
type replay struct {
	ns         *Namespace
	id         uint32
	f          *os.File
	path       string
	last       bool
	scan       *dataScan
	held       []heldEntry
	anchorData int64
	lastEntry  uint32
}

type heldEntry struct {
	we  walkedEntry // key copied
	cls dataClass
	bad bool // its data lies past the end of the data file: a cut point
}

func (rp *replay) entry(we walkedEntry) error {
	ns := rp.ns
	e := we.e
	e.DataID = ns.entryDataID(rp.id, e)
	cls := dataMatch
	if e.DataID == ns.cur && we.bad == "" {
		cls = rp.scan.classify(&e)
	}
	if !rp.last {
		return rp.apply(we, cls)
	}
	rewritten := rp.rewritten(we)
	copied := ns.mode == ModeSeq && e.Flags&FlagDeleted != 0 &&
		binary.LittleEndian.Uint64(e.Key) < ns.nextID+uint64(len(rp.held))
	if we.bad == "" && e.DataID == ns.cur && (cls == dataMatch || cls == dataDamaged) &&
		!rewritten && !copied && int64(e.DataOffset) > rp.anchorData {
		for _, h := range rp.held {
			if err := rp.apply(h.we, h.cls); err != nil {
				return err
			}
		}
		rp.held = rp.held[:0]
		rp.anchorData = int64(e.DataOffset)
		return rp.apply(we, cls)
	}
	// Only an entry whose data lies past the end of the data file starts
	// a torn tail: data is written before the entries that point at it,
	// and recovery cuts a damaged data tail at the damaged entry's start.
	// An entry that points below the end at data that disagrees is
	// damaged, wherever it is.
	we.e.Key = bytes.Clone(we.e.Key)
	bad := !rewritten && e.DataID == ns.cur && cls == dataBeyond
	rp.held = append(rp.held, heldEntry{we: we, cls: cls, bad: bad})
	return nil
}

// finish applies the held entries of the active file up to the first whose
// data lies past the end of the data file, and returns where the torn tail
// starts (-1: the walk's end). Such an entry whose own data entry is there
// after all (same key, after the last anchor's, agreeing on the offset or
// on length and CRC) is damaged, not torn: a torn write never has its data
// entry whole, since data is written first.
func (rp *replay) finish() (int64, string, error) {
	for _, h := range rp.held {
		if h.bad {
			if d := rp.scan.claimedBy(&h.we.e, rp.anchorData); d >= 0 {
				rp.anchorData = d
				h.bad = false
			}
		}
		if h.bad {
			why := h.we.bad
			if why == "" {
				why = dataClassText[h.cls]
			}
			return h.we.off, "entry points at data that is missing or corrupt: " + why, nil
		}
		if err := rp.apply(h.we, h.cls); err != nil {
			return 0, "", err
		}
	}
	return -1, "", nil
}

// rewritten reports whether an entry is a seq slot rewritten in place by an
// update: its parent is the copy appended after it.
func (rp *replay) rewritten(we walkedEntry) bool {
	e := &we.e
	return rp.ns.mode == ModeSeq && (e.ParentID > rp.id || e.ParentID == rp.id && int64(e.ParentOffset) > we.off)
}

// apply applies one entry to the key index.
func (rp *replay) apply(we walkedEntry, cls dataClass) error {
	ns := rp.ns
	e := we.e
	off := we.off
	e.DataID = ns.entryDataID(rp.id, e)
	live := e.Flags&FlagDeleted == 0
	// damaged: the entry disagrees with its data, or a field is out of
	// range. A damaged live entry is kept but not served; a damaged entry
	// never causes a write.
	damaged := we.bad
	switch {
	case damaged != "":
	case e.DataID == ns.cur && cls == dataBeyond && rp.rewritten(we) && rp.scan.claimedBy(&e, -1) < 0:
		// A seq slot rewritten in place by an update whose data did not
		// survive (no valid data entry of its id agrees with it): keep the
		// slot (it holds an id) but flag it, so that neither GET nor SCAN
		// serves it.
		if live {
			ns.log().Warn("dropping key whose data did not survive", "file", rp.path, "offset", off)
			live = false
			if _, err := rp.f.WriteAt([]byte{e.Flags | FlagDeleted}, off+idxOffFlags); err != nil {
				return fmt.Errorf("%s: flagging a lost slot: %w", rp.path, err)
			}
		}
	case e.DataID == ns.cur:
		if cls != dataMatch {
			damaged = dataClassText[cls]
		}
	case live && !ns.fitsClosedData(rp.id, e):
		// Points past the end of a closed data file, or at a data file
		// that cannot exist.
		damaged = "it points outside its data file"
	}
	key := e.Key
	// A seq id is its slot's position, and 0-db stores it as the key of
	// live slots. The stored key is what counts: if an older index file
	// lost entries, positions shift but keys do not.
	if ns.mode == ModeSeq && live && damaged == "" {
		sid := binary.LittleEndian.Uint64(key)
		if sid != ns.nextID && !ns.seqShifted {
			ns.seqShifted = true
			ns.log().Warn("sequential ids are not at their positions; an index file lost entries", "file", rp.path, "offset", off)
		}
		ns.seqMax = max(ns.seqMax, sid+1)
	}
	pos := entryPos{rp.id, uint32(off)}
	if prev, ok := ns.idx.Get(key); ok && (live || ns.mode == ModeUser) {
		names := e.ParentID == prev.IndexID && e.ParentOffset == prev.IndexOffset
		// A compaction copy (compact.go) keeps its original's parent, and
		// its length, CRC and timestamp: either holds the same payload.
		copyOf := live && e.Length == prev.Length && e.CRC == prev.CRC && e.Timestamp == prev.Timestamp
		switch {
		case ns.mode == ModeUser && damaged == "" && (names || rp.last || copyOf):
			// A key live in memory has its entry unflagged on disk. A
			// later entry for it means a crash came between appending that
			// entry and flagging the old one: finish that write, so that
			// SCAN does not see the key twice (or a deleted key at all).
			pf := ns.indexFiles[prev.IndexID]
			if _, err := pf.WriteAt([]byte{FlagDeleted}, int64(prev.IndexOffset)+idxOffFlags); err != nil {
				return fmt.Errorf("%s: flagging a superseded entry: %w", rp.path, err)
			}
		case !live:
			// A deletion that does not name the live version, or a
			// damaged one: the key stays as it is.
			ns.nextID++
			rp.lastEntry = uint32(off)
			return nil
		case ns.mode == ModeSeq && binary.LittleEndian.Uint64(key) != ns.nextID:
			// A second live slot for an id, away from the id's position:
			// a copy whose deleted flag is damaged, or a damaged key. The
			// slot already live keeps the id; SCAN skips this one.
			ns.log().Warn("ignoring a second live entry for a sequential id", "file", rp.path, "offset", off,
				"key", hex.EncodeToString(key))
			ns.rec.indexFaults.Add(1)
			ns.hide(pos)
			ns.nextID++
			rp.lastEntry = uint32(off)
			return nil
		case ns.mode == ModeSeq && damaged == "":
			// At the id's position: the entry live before was not the
			// slot of the id.
			ns.hide(entryPos{prev.IndexID, prev.IndexOffset})
		default:
			// Two live versions that do not link (one is damaged, and
			// nothing says which), or a damaged one after a good one:
			// nothing is written; the key fails and SCAN lists it once.
			if damaged == "" {
				damaged = "a live entry for the same key precedes it without being its parent"
			}
			ns.hide(entryPos{prev.IndexID, prev.IndexOffset})
		}
	}
	if live {
		loc := location{
			IndexID: rp.id, IndexOffset: uint32(off), DataID: e.DataID, DataOffset: e.DataOffset,
			Length: e.Length, CRC: e.CRC, Timestamp: e.Timestamp,
		}
		if damaged != "" {
			if loc.Length > MaxPayload {
				loc.Length = 0
			}
			ns.markDamaged(pos, loc, rp.path, key, damaged)
		}
		ns.idx.Put(key, loc)
	} else if ns.mode == ModeUser {
		ns.idx.Delete(key)
	}
	ns.nextID++
	rp.lastEntry = uint32(off)
	return nil
}

// hide makes SCAN skip the unflagged entry at pos, which the key index does
// not use.
func (ns *Namespace) hide(pos entryPos) {
	if ns.rec.hidden == nil {
		ns.rec.hidden = map[entryPos]bool{}
	}
	ns.rec.hidden[pos] = true
}

func (ns *Namespace) markDamaged(pos entryPos, loc location, path string, key []byte, why string) {
	if ns.rec.damaged == nil {
		ns.rec.damaged = map[entryPos]location{}
	}
	ns.rec.damaged[pos] = loc
	ns.rec.indexFaults.Add(1)
	ns.log().Error("key not served: its entry is damaged or disagrees with its data; reads fail until the key is written again",
		"file", path, "offset", pos.off, "key", hex.EncodeToString(key), "reason", why)
}

// dropIndexTail runs before the active index file is cut at end. When the
// bytes dropped hold an entry that agrees with the data file (two damaged
// entries in a row, say, rather than a torn tail), they are saved beside
// the file first, as i<N>.dropped-<offset>, so that nothing valid is
// destroyed.
func (ns *Namespace) dropIndexTail(f *os.File, path string, sc *fileScanner, end, size int64, scan *dataScan) error {
	found := false
	for p := end + 1; p+IndexEntryFixed <= size && !found; p++ {
		fixed := sc.peek(p, IndexEntryFixed)
		if fixed == nil || fixed[0] == 0 {
			continue
		}
		raw := sc.peek(p, IndexEntryFixed+int(fixed[0]))
		if raw == nil {
			continue
		}
		e, _, err := ParseIndexEntry(raw)
		if err == nil && ns.entryDataID(ns.cur, e) == ns.cur && scan.classify(&e) == dataMatch {
			found = true
		}
	}
	if !found {
		return nil
	}
	tail := make([]byte, size-end)
	if _, err := f.ReadAt(tail, end); err != nil {
		return err
	}
	side := path + ".dropped-" + strconv.FormatInt(end, 10)
	if err := writeNewFile(side, tail); err != nil {
		return err
	}
	ns.log().Error("index entries that agree with the data file follow an unreadable region; they are saved before the file is cut",
		"file", path, "offset", end, "saved_in", side)
	return nil
}
