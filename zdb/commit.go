package zdb

import (
	"errors"
	"os"
)

// Group commit.
//
// Writes are first appended to per-namespace buffers that mirror the tail of
// the active data and index files, and reach the files in one pwrite each
// when a Commit makes them durable (to the page cache, or to the disk with
// --sync). The RESP front commits once per pipelined batch, and concurrent
// clients share a commit, so N writes cost two pwrites (and with --sync two
// fsyncs) instead of 2N.
//
// Invariants:
//   - pend.data holds the bytes of d<cur> from pend.dataBase to dataEnd;
//     pend.index the bytes of i<cur> from pend.indexBase to its end.
//   - In-place rewrites of entries already in a file (deleted flags, seq
//     slots) wait in pend.patches and are written after pend.index, so a
//     crash never leaves an old version flagged without its successor.
//   - Every read of the files goes through readDataAt/readIndexAt, which
//     overlay the buffers, so readers see their own and others' writes.
//   - A write is acknowledged only after the commit that covers it
//     succeeded; a failed commit discards the buffers, reloads the namespace
//     from disk, and bumps the epoch so that every ticket issued before it
//     fails its Commit.

// Ticket identifies a buffered write until Commit.
type Ticket struct {
	epoch, seq uint64
}

type pendingWrites struct {
	data      []byte
	dataBase  int64
	index     []byte
	indexBase int64
	patches   []patch
	seq       uint64 // last ticket issued
	committed uint64 // last ticket made durable
	epoch     uint64
	lost      error // why the last epoch ended (a failed commit)
}

type patch struct {
	id  uint32
	off int64
	b   []byte
}

// commitThreshold makes a writer commit inline once this much is buffered,
// bounding memory.
const commitThreshold = 1 << 20

// bufData appends a whole data entry to d<cur>, encoded by appendEntry
// straight into the buffer (not through a scratch buffer: one copy less of
// every value, up to 8 MiB each), and returns its offset.
func (ns *Namespace) bufData(appendEntry func([]byte) []byte) int64 {
	p := &ns.pend
	if len(p.data) == 0 {
		p.dataBase = ns.dataEnd
	}
	off := ns.dataEnd
	n := len(p.data)
	p.data = appendEntry(p.data)
	ns.dataEnd += int64(len(p.data) - n)
	return off
}

// bufIndex appends a whole index entry to i<cur> and returns its offset.
func (ns *Namespace) bufIndex(b []byte) int64 {
	p := &ns.pend
	fe := ns.fileEnds[ns.cur]
	if len(p.index) == 0 {
		p.indexBase = fe.end
	}
	p.index = append(p.index, b...)
	ns.fileEnds[ns.cur] = fileEnd{end: fe.end + int64(len(b)), last: uint32(fe.end)}
	return fe.end
}

// writeIndexAt rewrites bytes of an existing index entry.
func (ns *Namespace) writeIndexAt(id uint32, off int64, b []byte) {
	// Marked here, not only when the patch is queued: a rewrite of an entry
	// still in the buffer changes the file too (INDEX DIRTY after a RESET).
	ns.dirty[id] = true
	p := &ns.pend
	if id == ns.cur && len(p.index) > 0 && off >= p.indexBase {
		copy(p.index[off-p.indexBase:], b)
		return
	}
	for i := range p.patches {
		if p.patches[i].id == id && p.patches[i].off == off && len(p.patches[i].b) == len(b) {
			copy(p.patches[i].b, b)
			return
		}
	}
	p.patches = append(p.patches, patch{id, off, append([]byte(nil), b...)})
}

// readIndexAt reads an index file as it will be once committed.
func (ns *Namespace) readIndexAt(id uint32, buf []byte, off int64) error {
	p := &ns.pend
	n := len(buf)
	onDisk := buf
	if id == ns.cur && len(p.index) > 0 && off+int64(n) > p.indexBase {
		split := max(p.indexBase-off, 0)
		copy(buf[split:], p.index[off+split-p.indexBase:])
		onDisk = buf[:split]
	}
	if len(onDisk) > 0 {
		f := ns.indexFiles[id]
		if f == nil {
			return errors.New("index file not open")
		}
		if _, err := f.ReadAt(onDisk, off); err != nil {
			ns.indexIOError(false)
			return err
		}
		ns.eng.stats.indexRead.Add(uint64(len(onDisk)))
	}
	for _, pt := range p.patches {
		if pt.id != id || pt.off >= off+int64(n) || pt.off+int64(len(pt.b)) <= off {
			continue
		}
		src, dst := pt.b, buf
		if pt.off < off {
			src = src[off-pt.off:]
		} else {
			dst = dst[pt.off-off:]
		}
		copy(dst, src)
	}
	return nil
}

// pendingData returns the buffered bytes at off in d<id>, or nil when they
// are in the file.
func (ns *Namespace) pendingData(id uint32, off int64) []byte {
	p := &ns.pend
	if id != ns.cur || len(p.data) == 0 || off < p.dataBase {
		return nil
	}
	return p.data[off-p.dataBase:]
}

func (ns *Namespace) ticket() Ticket {
	ns.pend.seq++
	return Ticket{ns.pend.epoch, ns.pend.seq}
}

func (ns *Namespace) pendingBytes() int {
	return len(ns.pend.data) + len(ns.pend.index) + 64*len(ns.pend.patches)
}

// Commit makes the write that t names, and every write buffered before it,
// durable to the configured level. It fails when that write was lost.
func (ns *Namespace) Commit(t Ticket) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if t.epoch != ns.pend.epoch {
		return withCause(ErrWrite, ns.pend.lost)
	}
	if t.seq <= ns.pend.committed {
		return nil
	}
	return ns.commitLocked()
}

// commitLocked writes the buffers out. The caller holds mu.
func (ns *Namespace) commitLocked() error {
	p := &ns.pend
	if len(p.data) == 0 && len(p.index) == 0 && len(p.patches) == 0 {
		p.committed = p.seq
		return nil
	}
	sync := ns.eng.opts.Sync
	if len(p.data) > 0 {
		f := ns.dataFiles[ns.cur]
		if _, err := f.WriteAt(p.data, p.dataBase); err != nil {
			ns.dataIOError(true)
			return ns.failCommit(err)
		}
		if sync {
			if err := fdatasync(f); err != nil {
				ns.dataIOError(true)
				return ns.failCommit(err)
			}
		} else {
			ns.startWriteback(f, p.dataBase+int64(len(p.data)))
		}
		ns.eng.stats.dataWritten.Add(uint64(len(p.data)))
	}
	idx := ns.indexFiles[ns.cur]
	if len(p.index) > 0 {
		if _, err := idx.WriteAt(p.index, p.indexBase); err != nil {
			ns.indexIOError(true)
			return ns.failCommit(err)
		}
		ns.eng.stats.indexWritten.Add(uint64(len(p.index)))
		if sync {
			if err := fdatasync(idx); err != nil {
				ns.indexIOError(true)
				return ns.failCommit(err)
			}
		}
	}
	if len(p.patches) > 0 {
		touched := map[uint32]bool{}
		for _, pt := range p.patches {
			f := ns.indexFiles[pt.id]
			if f == nil {
				return ns.failCommit(errors.New("patched index file not open"))
			}
			if _, err := f.WriteAt(pt.b, pt.off); err != nil {
				ns.indexIOError(true)
				return ns.failCommit(err)
			}
			touched[pt.id] = true
		}
		if sync {
			for id := range touched {
				if err := fdatasync(ns.indexFiles[id]); err != nil {
					ns.indexIOError(true)
					return ns.failCommit(err)
				}
			}
		}
	}
	ns.resetPending()
	p.committed = p.seq
	return nil
}

func (ns *Namespace) resetPending() {
	p := &ns.pend
	p.data = p.data[:0]
	p.index = p.index[:0]
	p.patches = nil
	if cap(p.data) > 4*commitThreshold {
		p.data = nil
	}
}

// failCommit handles a write error: the buffered writes are dropped, the
// namespace is reloaded from disk (which trims whatever part of the batch
// reached the files), and every outstanding ticket fails.
func (ns *Namespace) failCommit(cause error) error {
	ns.log().Error("write failed; reloading the namespace from disk", "err", cause)
	ns.pend.epoch++
	ns.pend.lost = cause
	ns.resetPending()
	mode := ns.mode
	ns.closeFiles()
	if err := ns.load(false, mode); err != nil {
		ns.log().Error("reload after a write failure failed", "err", err)
	}
	return withCause(ErrWrite, cause)
}

// writebackChunk is how much written data a namespace lets pile up in the
// page cache before it asks the kernel to start writing it out.
const writebackChunk = 8 << 20

// flushMark says that d<id> has had its write-out started up to end.
type flushMark struct {
	id  uint32
	end int64
}

// startWriteback starts the kernel's write-out of d<cur> up to end once
// writebackChunk bytes were written since the last start, without waiting
// for it. Why: a rotation fsyncs the full data file under the namespace
// lock; left to the kernel's own timing, a whole file (256 MiB) was still
// dirty then, and the SET that crossed the size waited about 0.7 s for
// the disk (the last shards of a zstor store, every 256 MiB per backend).
// Started early, the disk writes while the data arrives and the fsync has
// only the tail left. Durability is unchanged: nothing waits for it.
func (ns *Namespace) startWriteback(f *os.File, end int64) {
	if ns.flushed.id != ns.cur {
		ns.flushed = flushMark{id: ns.cur}
	}
	if end-ns.flushed.end < writebackChunk {
		return
	}
	startWriteback(f, ns.flushed.end, end-ns.flushed.end)
	ns.flushed.end = end
}

func fdatasync(f *os.File) error {
	return f.Sync()
}
