package zdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// Online compaction.
//
// Overwrites and deletes leave dead entries behind in the data files: the
// format is append-only. Compaction reclaims them while clients keep
// reading and writing, without leaving 0-db v2's format:
//
//   - A victim is a closed data file d<v> holding dead bytes. Its live
//     entries are re-appended to the active files through the ordinary
//     write path (data before index, group commit), keeping their key,
//     payload, CRC and timestamp. Nothing is ever rewritten under the name
//     of a closed data file, and file ids only grow: the copies land in
//     d<cur> and whatever rotation starts after it.
//   - Order of a batch (the crash story, docs/zdb-format.md): the copies
//     (user mode: data and index entries; seq mode: data only) are written
//     and fsync'ed first; only then are the old entries flagged (user mode)
//     or the seq slots rewritten in place to point at the copies. A crash
//     before the fsync leaves the old entries live and the copies torn or
//     unreferenced; a crash after it leaves both, and the later one wins on
//     replay (the earlier one is flagged by recovery).
//   - A victim is retired once nothing live points into it (counted per
//     data file in liveData): in user mode its index file is replaced by a
//     header-only file of the same id (0-db loads i0, i1, … and stops at the
//     first missing id, so index ids must stay contiguous), then d<v> is
//     removed. In seq mode index slots are ids and are never removed; only
//     d<v> goes. Retirement is reported as events so that a backup layer
//     stores the new files and forgets the old ones.
//   - Seq ids stay valid: a slot is only ever rewritten in place.
//   - HISTORY: a copy keeps the parent link of the entry it replaces, so a
//     chain reaches every version whose file was not compacted. Versions
//     that lived only in a retired file are gone: HISTORY reaching them
//     answers "No more history". Closed files changed within the horizon
//     (Options.CompactHorizon) are never compacted.
//   - Deleted keys: a data tombstone in a victim is carried forward only
//     while an older file that is kept (not compacted in the same pass)
//     still holds dead bytes, which may include a copy the tombstone
//     shadows for a data-file rebuild. Otherwise it is dropped with the
//     file.
//   - Throttling: work is done in batches of at most compactBatchBytes,
//     each lock hold bounded, with a pause after each batch as long as the
//     batch took (a 50% duty cycle), so foreground requests interleave.

// CompactStats says what one compaction did.
type CompactStats struct {
	Victims       []uint32 // data files chosen
	Retired       []uint32 // data files removed
	EntriesCopied int
	BytesCopied   int64 // data entry bytes rewritten
	Tombstones    int   // tombstones carried forward
	Skipped       int   // live entries that could not be read (their file is kept)
	BytesBefore   int64 // local data file bytes before
	BytesAfter    int64 // and after
	LiveBytes     int64 // data entry bytes of live keys after
}

// Reclaimed is the local data file space compaction gave back.
func (s CompactStats) Reclaimed() int64 { return s.BytesBefore - s.BytesAfter }

// The most one batch copies: each batch holds the namespace lock twice,
// briefly, and fsyncs once (variables so that tests can make batches
// small).
var (
	compactBatchBytes   = 256 << 10
	compactBatchEntries = 256
)

const (
	// DefaultCompactRatio is the garbage ratio above which a namespace is
	// compacted automatically.
	DefaultCompactRatio = 0.5
	// compactMinGarbage keeps automatic compaction off tiny namespaces.
	compactMinGarbage = 1 << 20
)

// entrySize is the size of a data entry holding a payload of length bytes.
func entrySize(keyLen int, length uint32) int64 {
	return DataEntryFixed + int64(keyLen) + int64(length)
}

// dataKeyLen is the length of the key stored in data entries for key.
func (ns *Namespace) dataKeyLen(key []byte) int {
	if ns.mode == ModeSeq {
		return SeqKeyLen
	}
	return len(key)
}

// liveAdd and liveSub keep liveData, the data entry bytes of live keys per
// data file. The caller holds mu.
func (ns *Namespace) liveAdd(keyLen int, loc location) {
	ns.liveData[loc.DataID] += entrySize(keyLen, loc.Length)
}

func (ns *Namespace) liveSub(keyLen int, loc location) {
	ns.liveData[loc.DataID] -= entrySize(keyLen, loc.Length)
	if ns.liveData[loc.DataID] <= 0 {
		delete(ns.liveData, loc.DataID)
	}
}

// SpaceUsage describes a namespace's data files.
type SpaceUsage struct {
	DataBytes    int64 // local data files, active included
	LiveBytes    int64 // data entry bytes of live keys
	Reclaimable  int64 // dead bytes in closed, local files older than the horizon
	GarbageRatio float64
}

// fileUsage is one data file's size and live bytes.
type fileUsage struct {
	id         uint32
	size, live int64
	present    bool
	emptyIndex bool // its index file holds no entry (user mode: retired or never used)
	mtime      time.Time
}

// usage reads the data files' sizes. The caller holds mu (read).
func (ns *Namespace) usage() ([]fileUsage, SpaceUsage) {
	var files []fileUsage
	var u SpaceUsage
	ids := make([]uint32, 0, len(ns.indexFiles))
	for id := range ns.indexFiles {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	horizon := time.Now().Add(-ns.eng.opts.CompactHorizon)
	for _, id := range ids {
		fu := fileUsage{id: id, live: ns.liveData[id], emptyIndex: ns.fileEnds[id].end <= IndexHeaderSize}
		if id == ns.cur {
			fu.size, fu.present, fu.mtime = ns.dataEnd, true, time.Now()
		} else if st, err := os.Stat(ns.dataPath(id)); err == nil {
			fu.size, fu.present, fu.mtime = st.Size(), true, st.ModTime()
		}
		files = append(files, fu)
		u.LiveBytes += fu.live
		if fu.present {
			u.DataBytes += fu.size
			if id != ns.cur && fu.mtime.Before(horizon) {
				u.Reclaimable += max(fu.size-DataHeaderSize-fu.live, 0)
			}
		}
	}
	if u.DataBytes > 0 {
		u.GarbageRatio = float64(max(u.DataBytes-u.LiveBytes, 0)) / float64(u.DataBytes)
	}
	return files, u
}

// Usage reports the namespace's data file space.
func (ns *Namespace) Usage() SpaceUsage {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	_, u := ns.usage()
	return u
}

// Compact reclaims the space of overwritten and deleted entries (COMPACT):
// the active files are rotated when they hold dead bytes, then every closed
// data file older than the horizon with dead bytes is compacted. It returns
// once done.
func (ns *Namespace) Compact(ctx context.Context) (CompactStats, error) {
	return ns.compact(ctx, true)
}

// autoCompact compacts when the garbage ratio passes the engine's
// threshold.
func (ns *Namespace) autoCompact(ctx context.Context) {
	ratio := ns.eng.opts.CompactRatio
	if ratio <= 0 {
		return
	}
	ns.mu.RLock()
	if ns.deleted.Load() || ns.indexFiles == nil {
		ns.mu.RUnlock()
		return
	}
	_, u := ns.usage()
	ns.mu.RUnlock()
	if u.GarbageRatio <= ratio || u.Reclaimable < min(compactMinGarbage, ns.eng.opts.DataSize/2) {
		return
	}
	st, err := ns.compact(ctx, false)
	if err != nil && !errors.Is(err, context.Canceled) {
		ns.log().Error("automatic compaction failed", "err", err)
		return
	}
	ns.log().Info("automatic compaction", "garbage_ratio", fmt.Sprintf("%.2f", u.GarbageRatio),
		"retired", len(st.Retired), "reclaimed_bytes", st.Reclaimed(), "copied_bytes", st.BytesCopied)
}

var errCompactAborted = errors.New("compaction aborted: the namespace was reloaded or removed")

// compact runs one pass. With all, the active files are rotated first and
// every closed file with dead bytes is a victim; otherwise only files whose
// own garbage ratio passes the threshold (or that hold nothing live).
// CompactFile compacts closed data file id alone, if it is local and holds
// dead bytes (an embedding program that fetched an evicted file back to
// reclaim it: qsfs).
func (ns *Namespace) CompactFile(ctx context.Context, id uint32) (CompactStats, error) {
	return ns.compactVictims(ctx, false, map[uint32]bool{id: true}, false)
}

// MergeFiles copies the live entries of the given closed, local data files
// to the active file and retires them, dead bytes or not: a program that
// rotates often (qsfs cuts a recovery point every rpo/2) merges the small
// files that leaves behind, so that their number stays bounded.
func (ns *Namespace) MergeFiles(ctx context.Context, ids []uint32) (CompactStats, error) {
	only := map[uint32]bool{}
	for _, id := range ids {
		only[id] = true
	}
	return ns.compactVictims(ctx, true, only, true)
}

func (ns *Namespace) compact(ctx context.Context, all bool) (CompactStats, error) {
	return ns.compactVictims(ctx, all, nil, false)
}

// compactVictims is compact; only, when set, limits the victims to those
// ids (chosen as with all), and force takes them even without dead bytes.
func (ns *Namespace) compactVictims(ctx context.Context, all bool, only map[uint32]bool, force bool) (CompactStats, error) {
	ns.compactMu.Lock()
	defer ns.compactMu.Unlock()
	// Rotations raise events under the lock; they go out after it.
	defer ns.deliverEvents()
	var st CompactStats

	ns.mu.Lock()
	if ns.deleted.Load() {
		ns.mu.Unlock()
		return st, ErrNamespaceGone
	}
	gen := ns.gen
	files, u := ns.usage()
	st.BytesBefore = u.DataBytes
	if all && only == nil && ns.dataEnd > DataHeaderSize && ns.dataEnd-DataHeaderSize > ns.liveData[ns.cur] {
		// The active file holds dead bytes: close it so that it can be
		// compacted too.
		if err := ns.jump(); err != nil {
			ns.mu.Unlock()
			return st, ErrWrite
		}
		files, _ = ns.usage()
	}
	cur := ns.cur
	mode := ns.mode
	ns.mu.Unlock()

	horizon := time.Now().Add(-ns.eng.opts.CompactHorizon)
	threshold := ns.eng.opts.CompactRatio
	victims := map[uint32]bool{}
	for _, f := range files {
		if f.id >= cur || !f.present || !f.mtime.Before(horizon) {
			continue
		}
		if filter := ns.eng.opts.CompactFilter; filter != nil && !filter(ns.name, f.id) {
			continue
		}
		if only != nil {
			if !only[f.id] {
				continue
			}
			all = true
		}
		dead := f.size - DataHeaderSize - f.live
		if dead <= 0 && !force {
			continue
		}
		if all || f.live == 0 || float64(dead)/float64(f.size) >= threshold {
			victims[f.id] = true
			st.Victims = append(st.Victims, f.id)
		}
	}
	// keepTombstones[v]: an older file is kept with dead bytes in it.
	keepTombstones := map[uint32]bool{}
	olderKept := false
	for _, f := range files {
		if victims[f.id] {
			keepTombstones[f.id] = olderKept
		} else if f.id < cur && !(mode == ModeUser && f.emptyIndex) && (!f.present || f.size-DataHeaderSize > f.live) {
			olderKept = true
		}
	}

	var err error
	if mode == ModeSeq {
		// Seq mode copies every victim in one pass (compactSeq), then
		// retires them.
		err = ns.compactSeq(ctx, gen, victims, &st)
		for _, v := range st.Victims {
			if err != nil {
				break
			}
			err = ns.retire(gen, v, mode, &st)
		}
	} else {
		// User mode retires each victim as soon as its live entries are
		// copied, so that a pass over many files never holds more than one
		// file's copies beside the originals (under a stream of
		// overwrites, holding them all until the end let the data files
		// grow well past the garbage ratio while compaction ran).
		for _, v := range st.Victims {
			if err = ns.compactUserFile(ctx, gen, v, keepTombstones[v], &st); err != nil {
				break
			}
			if err = ns.retire(gen, v, mode, &st); err != nil {
				break
			}
		}
	}

	ns.mu.RLock()
	_, u = ns.usage()
	ns.mu.RUnlock()
	st.BytesAfter, st.LiveBytes = u.DataBytes, u.LiveBytes
	return st, err
}

// compactRef names an index entry whose data lies in a victim.
type compactRef struct {
	indexID, off uint32
	key          []byte
	parentID     uint32
	parentOff    uint32
	dataOff      uint32
}

// compactItem is a live entry read for copying.
type compactItem struct {
	ref     compactRef
	old     location
	payload []byte
}

// readIndexRefs parses index file id from disk (its own handle, no lock):
// every entry, with match deciding which to keep.
func (ns *Namespace) readIndexRefs(id uint32, match func(e IndexEntry) bool) ([]compactRef, error) {
	f, err := os.Open(ns.indexPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sc := newFileScanner(f, 0, fi.Size())
	var refs []compactRef
	for off := int64(IndexHeaderSize); off < fi.Size(); {
		fixed := sc.peek(off, IndexEntryFixed)
		if fixed == nil {
			break
		}
		raw := sc.peek(off, IndexEntryFixed+int(fixed[0]))
		if raw == nil {
			break
		}
		e, n, err := ParseIndexEntry(raw)
		if err != nil {
			break
		}
		if match(e) {
			refs = append(refs, compactRef{indexID: id, off: uint32(off), key: append([]byte(nil), e.Key...),
				parentID: e.ParentID, parentOff: e.ParentOffset, dataOff: e.DataOffset})
		}
		off += int64(n)
	}
	return refs, sc.err
}

// compactUserFile copies the live entries of victim v (user mode: they are
// all in i<v>) to the active files.
func (ns *Namespace) compactUserFile(ctx context.Context, gen uint64, v uint32, keepTombstones bool, st *CompactStats) error {
	refs, err := ns.readIndexRefs(v, func(e IndexEntry) bool { return e.Flags&FlagDeleted == 0 })
	if err != nil {
		return fmt.Errorf("reading %s: %w", ns.indexPath(v), err)
	}
	if err := ns.copyLive(ctx, gen, v, refs, st); err != nil {
		return err
	}
	if keepTombstones {
		return ns.carryTombstones(ctx, gen, v, st)
	}
	return nil
}

// compactSeq copies the live slots whose data lies in a victim. A slot of
// index file j points into a data file ≥ j, so index files up to the
// newest victim are read.
func (ns *Namespace) compactSeq(ctx context.Context, gen uint64, victims map[uint32]bool, st *CompactStats) error {
	if len(victims) == 0 {
		return nil
	}
	newest := uint32(0)
	for v := range victims {
		newest = max(newest, v)
	}
	ns.mu.RLock()
	var ids []uint32
	for id := range ns.indexFiles {
		if id <= newest {
			ids = append(ids, id)
		}
	}
	ns.mu.RUnlock()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		byVictim := map[uint32][]compactRef{}
		refs, err := ns.readIndexRefs(id, func(e IndexEntry) bool {
			return e.Flags&FlagDeleted == 0 && victims[e.DataID]
		})
		if err != nil {
			return fmt.Errorf("reading %s: %w", ns.indexPath(id), err)
		}
		ns.mu.RLock()
		for _, r := range refs {
			if loc, ok := ns.idx.Get(r.key); ok && loc.IndexID == r.indexID && loc.IndexOffset == r.off {
				byVictim[loc.DataID] = append(byVictim[loc.DataID], r)
			}
		}
		ns.mu.RUnlock()
		for v, refs := range byVictim {
			if err := ns.copyLive(ctx, gen, v, refs, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyLive moves the entries refs of victim v that are still live, batch
// by batch.
func (ns *Namespace) copyLive(ctx context.Context, gen uint64, v uint32, refs []compactRef, st *CompactStats) error {
	var batch []compactItem
	size := 0
	for _, r := range refs {
		if err := ctx.Err(); err != nil {
			return err
		}
		it, ok, err := ns.readForCopy(gen, v, r)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if it.payload == nil {
			st.Skipped++
			continue
		}
		batch = append(batch, it)
		size += len(it.payload) + len(it.ref.key)
		if size >= compactBatchBytes || len(batch) >= compactBatchEntries {
			if err := ns.moveBatch(ctx, gen, batch, st); err != nil {
				return err
			}
			batch, size = batch[:0], 0
		}
	}
	if len(batch) > 0 {
		return ns.moveBatch(ctx, gen, batch, st)
	}
	return nil
}

// readForCopy reads r's payload when r is still the live entry of its key in
// victim v. A payload that cannot be read (a damaged entry, an absent file)
// comes back nil: the entry stays where it is, and so does its file.
func (ns *Namespace) readForCopy(gen uint64, v uint32, r compactRef) (compactItem, bool, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if ns.gen != gen || ns.deleted.Load() {
		return compactItem{}, false, errCompactAborted
	}
	loc, ok := ns.idx.Get(r.key)
	if !ok || loc.IndexID != r.indexID || loc.IndexOffset != r.off || loc.DataID != v {
		return compactItem{}, false, nil
	}
	it := compactItem{ref: r, old: loc}
	payload, err := ns.readPayload(loc, r.key, nil)
	if err != nil {
		ns.log().Warn("compaction: cannot read a live entry; its file is kept", "file", ns.dataPath(v),
			"offset", loc.DataOffset, "err", err)
		return it, true, nil
	}
	if payload == nil {
		payload = []byte{}
	}
	it.payload = payload
	return it, true, nil
}

// moveBatch writes copies of the batch and switches the keys to them, in
// the order the crash story needs: copies durable first, then the old
// entries flagged or the seq slots rewritten.
func (ns *Namespace) moveBatch(ctx context.Context, gen uint64, batch []compactItem, st *CompactStats) error {
	start := time.Now()
	defer ns.deliverEvents() // rotations (maybeJump) queue events
	type moved struct {
		it  *compactItem
		loc location
	}
	var done []moved
	written := map[uint32]bool{}

	ns.mu.Lock()
	if ns.gen != gen || ns.deleted.Load() {
		ns.mu.Unlock()
		return errCompactAborted
	}
	for i := range batch {
		it := &batch[i]
		if loc, ok := ns.idx.Get(it.ref.key); !ok || loc != it.old {
			continue // rewritten or deleted since it was read
		}
		if err := ns.maybeJump(len(it.payload)); err != nil {
			ns.mu.Unlock()
			return ErrWrite
		}
		keyLen := ns.dataKeyLen(it.ref.key)
		dataKey := it.ref.key
		off := ns.appendData(dataKey, it.payload, it.old.CRC, 0, it.old.Timestamp)
		loc := location{DataID: ns.cur, DataOffset: off, Length: it.old.Length, CRC: it.old.CRC, Timestamp: it.old.Timestamp}
		written[ns.cur] = true
		if ns.mode == ModeUser {
			e := IndexEntry{DataOffset: off, Length: loc.Length, DataID: ns.cur, Timestamp: loc.Timestamp, CRC: loc.CRC,
				Key: it.ref.key, ParentID: it.ref.parentID, ParentOffset: it.ref.parentOff}
			loc.IndexID = ns.cur
			loc.IndexOffset = ns.appendIndex(&e)
			ns.liveSub(keyLen, it.old)
			ns.liveAdd(keyLen, loc)
			ns.idx.Put(it.ref.key, loc)
		}
		ns.changed = true
		done = append(done, moved{it, loc})
		st.EntriesCopied++
		st.BytesCopied += entrySize(keyLen, loc.Length)
	}
	if err := ns.commitLocked(); err != nil {
		ns.mu.Unlock()
		return err
	}
	user := ns.mode == ModeUser
	ns.mu.Unlock()
	compactPoint("copies written")

	// The copies reach the disk before anything stops pointing at the
	// originals.
	for id := range written {
		if err := fsyncPath(ns.dataPath(id)); err != nil {
			return err
		}
		if user {
			if err := fsyncPath(ns.indexPath(id)); err != nil {
				return err
			}
		}
	}
	compactPoint("copies durable")

	ns.mu.Lock()
	if ns.gen != gen || ns.deleted.Load() {
		ns.mu.Unlock()
		return errCompactAborted
	}
	for _, m := range done {
		if user {
			// Flag the original whatever happened since: it is superseded
			// by the copy or by a later write.
			if err := ns.flagDeleted(m.it.old.IndexID, m.it.old.IndexOffset); err != nil {
				ns.mu.Unlock()
				return ErrWrite
			}
			continue
		}
		// Seq: rewrite the slot in place when it still holds the original.
		if loc, ok := ns.idx.Get(m.it.ref.key); !ok || loc != m.it.old {
			continue
		}
		slot := make([]byte, SeqEntrySize)
		if err := ns.readIndexAt(m.it.old.IndexID, slot, int64(m.it.old.IndexOffset)); err != nil {
			ns.mu.Unlock()
			return ErrWrite
		}
		e, _, err := ParseIndexEntry(slot)
		if err != nil {
			ns.mu.Unlock()
			return ErrWrite
		}
		e.DataID, e.DataOffset = m.loc.DataID, m.loc.DataOffset
		ns.writeIndexAt(m.it.old.IndexID, int64(m.it.old.IndexOffset), e.Append(nil))
		loc := m.loc
		loc.IndexID, loc.IndexOffset = m.it.old.IndexID, m.it.old.IndexOffset
		ns.liveSub(SeqKeyLen, m.it.old)
		ns.liveAdd(SeqKeyLen, loc)
		ns.idx.Put(m.it.ref.key, loc)
	}
	err := ns.commitLocked()
	ns.mu.Unlock()
	if err != nil {
		return err
	}
	compactPoint("originals released")
	return throttle(ctx, time.Since(start))
}

// carryTombstones re-appends the tombstones of victim v whose key is not
// live (an older kept file may hold a copy they shadow): the data tombstone,
// and its index entry naming the same deleted version (see
// appendTombstoneEntry), so that replay still applies the deletion.
func (ns *Namespace) carryTombstones(ctx context.Context, gen uint64, v uint32, st *CompactStats) error {
	entries, err := ns.readIndexRefs(v, func(e IndexEntry) bool { return e.Flags&FlagDeleted != 0 && e.Length == 0 })
	if err != nil {
		return err
	}
	parents := map[uint32]location{}
	for _, r := range entries {
		parents[r.dataOff] = location{IndexID: r.parentID, IndexOffset: r.parentOff}
	}
	f, err := os.Open(ns.dataPath(v))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	defer ns.deliverEvents() // rotations (maybeJump) queue events
	sc := newFileScanner(f, DataHeaderSize, fi.Size())
	var keys [][]byte
	var stamps []uint32
	var offs []uint32
	for off := int64(DataHeaderSize); off < fi.Size(); {
		h, err := ParseDataEntryHeader(sc.peek(off, DataEntryFixed))
		if err != nil || off+h.Size() > fi.Size() {
			break
		}
		if h.Flags&FlagDeleted != 0 && h.KeyLen > 0 {
			keys = append(keys, append([]byte(nil), sc.peek(off+DataEntryFixed, int(h.KeyLen))...))
			stamps = append(stamps, h.Timestamp)
			offs = append(offs, uint32(off))
		}
		off += h.Size()
	}
	if sc.err != nil {
		return sc.err
	}
	for i := 0; i < len(keys); i += compactBatchEntries {
		if err := ctx.Err(); err != nil {
			return err
		}
		ns.mu.Lock()
		if ns.gen != gen || ns.deleted.Load() {
			ns.mu.Unlock()
			return errCompactAborted
		}
		for j := i; j < min(i+compactBatchEntries, len(keys)); j++ {
			if _, live := ns.idx.Get(keys[j]); live {
				continue
			}
			if err := ns.maybeJump(0); err != nil {
				ns.mu.Unlock()
				return ErrWrite
			}
			off := ns.appendData(keys[j], nil, 0, FlagDeleted, stamps[j])
			ns.appendTombstoneEntry(keys[j], off, stamps[j], parents[offs[j]])
			st.Tombstones++
		}
		err := ns.commitLocked()
		ns.mu.Unlock()
		if err != nil {
			return err
		}
		compactPoint("tombstones written")
	}
	return nil
}

// retire removes victim v once nothing live points into it.
func (ns *Namespace) retire(gen uint64, v uint32, mode Mode, st *CompactStats) error {
	ns.mu.Lock()
	if ns.gen != gen || ns.deleted.Load() {
		ns.mu.Unlock()
		return errCompactAborted
	}
	if ns.liveData[v] > 0 {
		ns.mu.Unlock()
		ns.log().Warn("compaction: data file still holds live entries; kept", "file", ns.dataPath(v))
		return nil
	}
	// Everything that pointed into d<v> was moved by batches whose copies
	// are durable; commit what is still buffered (flags, slots) and make
	// the index files durable, so that no entry on disk points into d<v>.
	if err := ns.commitLocked(); err != nil {
		ns.mu.Unlock()
		return err
	}
	var patched []uint32
	if mode == ModeSeq {
		for id := range ns.indexFiles {
			if id <= v {
				patched = append(patched, id)
			}
		}
	}
	emptied := false
	if mode == ModeUser {
		if fe := ns.fileEnds[v]; fe.end > IndexHeaderSize {
			if err := ns.emptyIndexFile(v); err != nil {
				ns.mu.Unlock()
				return fmt.Errorf("emptying %s: %w", ns.indexPath(v), err)
			}
			emptied = true
		}
	}
	ns.mu.Unlock()
	for _, id := range patched {
		if err := fsyncPath(ns.indexPath(id)); err != nil {
			return err
		}
	}
	if emptied {
		syncDir(ns.indexDir)
	}

	compactPoint("index emptied")
	// No reader can reopen d<v> between closing its handle and removing
	// it (removeDataFile); the read lock keeps RELOAD and FLUSH away.
	ns.mu.RLock()
	err := ns.removeDataFile(v)
	ns.mu.RUnlock()
	if err != nil {
		return err
	}
	syncDir(ns.dataDir)
	compactPoint("data file removed")
	st.Retired = append(st.Retired, v)
	ns.log().Info("compaction retired a data file", "file", ns.dataPath(v))
	// A backup layer stores the emptied index file and forgets the data
	// file.
	if emptied {
		ns.eng.emit(Event{Kind: EventFileRetired, Namespace: ns.name, FileID: v, Path: ns.indexPath(v), Index: true})
	}
	ns.eng.emit(Event{Kind: EventFileRetired, Namespace: ns.name, FileID: v, Path: ns.dataPath(v)})
	return nil
}

// emptyIndexFile replaces closed index file v, whose entries are all dead,
// by a file holding only its header (same id, creation time and mode). The
// new file is written aside and renamed over the old one, so a crash leaves
// one or the other. The caller holds mu.
func (ns *Namespace) emptyIndexFile(v uint32) error {
	hdr := make([]byte, IndexHeaderSize)
	if err := ns.readIndexAt(v, hdr, 0); err != nil {
		return err
	}
	if _, err := ParseIndexHeader(hdr); err != nil {
		return err
	}
	path := ns.indexPath(v)
	tmp := path + ".compact"
	if err := writeNewFile(tmp, hdr); err != nil {
		os.Remove(tmp)
		return err
	}
	// Patches for v were committed by the caller; none may be left to land
	// in the new file.
	for _, pt := range ns.pend.patches {
		if pt.id == v {
			os.Remove(tmp)
			return errors.New("pending writes to an index file being emptied")
		}
	}
	compactPoint("empty index written")
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	compactPoint("empty index renamed")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if old := ns.indexFiles[v]; old != nil {
		old.Close()
	}
	ns.indexFiles[v] = f
	ns.fileEnds[v] = fileEnd{end: IndexHeaderSize}
	ns.dirty[v] = true
	return nil
}

// fsyncPath makes a file's written data durable through a handle of its
// own, so that no namespace lock is held while the disk works.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// throttle pauses as long as the batch took (a 50% duty cycle).
func throttle(ctx context.Context, took time.Duration) error {
	t := time.NewTimer(took)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// compactHook, when set (by tests), is called at each point of a
// compaction where a crash leaves a distinct state on disk.
var compactHook func(point string)

func compactPoint(point string) {
	if compactHook != nil {
		compactHook(point)
	}
}
