package zdbfs

import (
	"context"
	"sync"
	"syscall"
	"time"
)

// File data: fixed-size blocks keyed by inode and block number, holes are
// missing keys, small files inline in the inode record. Every function
// here is called with the inode's mutex held.

func blocksFor(size uint64) uint64 { return (size + BlockSize - 1) / BlockSize }

// block returns block blk of in, from the cache or the store. Bytes beyond
// the current size are zero (a stale tail left by a crash never shows).
func (f *FS) block(ctx context.Context, in *inode, blk uint64) (*cblock, error) {
	if b := f.cache.get(in.ino, blk); b != nil {
		f.Stats.CacheHits.Add(1)
		return b, nil
	}
	f.Stats.CacheMisses.Add(1)
	b := &cblock{key: bkey{in.ino, blk}, data: make([]byte, BlockSize)}
	b.storedNone()
	start := blk * BlockSize
	if start < in.a.Size {
		switch {
		case in.pa.Inline:
			if blk == 0 {
				copy(b.data, in.pa.Data)
			}
		case blk < in.pa.HWM:
			sb, err := f.readBlocks(ctx, in.ino, in.pa.Paged, []uint64{blk})
			if err != nil {
				return nil, err
			}
			b.assemble(&sb[0])
		}
		if end := in.a.Size - start; end < BlockSize {
			clear(b.data[end:])
		}
	}
	f.cache.putClean(b)
	return b, nil
}

// read returns the file data at off, up to len(dest) bytes: slices of the
// cached blocks themselves (lendBlocks), or dest when it had to read under
// the mutex. Blocks missing from the cache
// are fetched without holding the inode's mutex, all of one request in one
// pipelined GetMany, so that parallel readers (and the kernel's parallel
// readahead requests) overlap their round trips to zdb. A fetch is used
// only if nothing changed the stored blocks meanwhile (in.gen); otherwise
// it is retried, and finally done under the mutex.
func (f *FS) read(ctx context.Context, node *Node, dest []byte, off int64) ([][]byte, error) {
	in := node.in
	if off < 0 {
		return nil, syscall.EINVAL
	}
	for attempt := 0; ; attempt++ {
		in.mu.Lock()
		size := in.a.Size
		if uint64(off) >= size {
			in.mu.Unlock()
			return nil, nil
		}
		n := min(uint64(len(dest)), size-uint64(off))
		first, last := uint64(off)/BlockSize, (uint64(off)+n-1)/BlockSize
		got := make(map[uint64]*cblock, last-first+1)
		var missing []uint64
		for blk := first; blk <= last; blk++ {
			if b := f.cache.get(in.ino, blk); b != nil {
				got[blk] = b
			} else {
				missing = append(missing, blk)
			}
		}
		if len(missing) > 0 && attempt >= 2 {
			// Changes keep racing the fetch: do it under the mutex.
			k, err := f.readLocked(ctx, in, dest, off)
			in.mu.Unlock()
			return [][]byte{dest[:k]}, err
		}
		if len(missing) == 0 {
			f.Stats.CacheHits.Add(last - first + 1)
			vec := lendBlocks(uint64(off), n, got)
			f.readaheadLocked(in, uint64(off), n)
			in.mu.Unlock()
			f.Stats.BytesRead.Add(n)
			return vec, nil
		}
		gen, pa := in.gen, in.pa
		in.mu.Unlock()

		f.Stats.CacheMisses.Add(uint64(len(missing)))
		fetched, err := f.fetchBlocks(ctx, in.ino, pa, size, missing)
		if err != nil {
			return nil, err
		}

		in.mu.Lock()
		if in.gen != gen || in.a.Size < size {
			in.mu.Unlock()
			continue
		}
		for _, b := range fetched {
			if c := f.cache.get(in.ino, b.key.blk); c != nil {
				got[b.key.blk] = c // written meanwhile: the cache is newer
				continue
			}
			f.cache.putClean(b)
			got[b.key.blk] = b
		}
		vec := lendBlocks(uint64(off), n, got)
		push := n < BlockSize && in.writers == 0
		f.readaheadLocked(in, uint64(off), n)
		in.mu.Unlock()
		f.Stats.BytesRead.Add(n)
		if push {
			f.push(node, got, uint64(off), n, gen, size)
		}
		return vec, nil
	}
}

// Sequential readahead: once reads of a file follow each other, the
// blocks ahead of the reader are fetched in the background, raWindow at a
// time (in chunks fetched in parallel) and again when half of them were
// read, so that zdb's round trips overlap the reader instead of adding to
// it.
const (
	raWindow   = 256 // blocks: 16 MiB ahead at most
	raChunk    = 8   // blocks per fetch
	raParallel = 16  // fetches at once (zdb serves them on separate connections)
)

// readaheadLocked notes a read of [off, off+n) and starts background
// fetches when the file is read sequentially. The caller holds in.mu.
func (f *FS) readaheadLocked(in *inode, off, n uint64) {
	if off == in.raNext && off != 0 || off == 0 && n >= BlockSize {
		in.raSeq++
	} else if off != in.raNext {
		in.raSeq, in.raBlk = 0, 0
	}
	in.raNext = off + n
	if in.raSeq < 2 || in.pa.Inline {
		return
	}
	cur := (off + n) / BlockSize
	if in.raBlk > cur+raWindow/2 {
		return // enough ahead already
	}
	end := min(cur+raWindow, blocksFor(in.a.Size))
	for from := max(in.raBlk, cur); from < end && in.raBusy < raParallel; from += raChunk {
		to := min(from+raChunk, end)
		var blks []uint64
		for blk := from; blk < to; blk++ {
			if f.cache.get(in.ino, blk) == nil {
				blks = append(blks, blk)
			}
		}
		in.raBlk = to
		if len(blks) == 0 {
			continue
		}
		in.raBusy++
		gen, pa, size := in.gen, in.pa, in.a.Size
		f.bg.Go(func() {
			ctx, cancel := context.WithTimeout(f.life, 30*time.Second)
			defer cancel()
			fetched, err := f.fetchBlocks(ctx, in.ino, pa, size, blks)
			in.mu.Lock()
			defer in.mu.Unlock()
			in.raBusy--
			if err != nil || in.gen != gen || in.a.Size != size || in.gone {
				in.raBlk = 0
				return
			}
			for _, b := range fetched {
				if f.cache.get(in.ino, b.key.blk) == nil {
					f.cache.putClean(b)
				}
			}
			f.Stats.Prefetched.Add(uint64(len(fetched)))
		})
	}
}

// push hands the rest of the blocks a small read fetched to the kernel's
// page cache (FUSE_NOTIFY_STORE), asynchronously: a 4 KiB random read
// fetches a whole 64 KiB block from zdb, and its 15 other pages then
// serve later reads without a request. It is done only for a file nobody
// has open for writing, and only if nothing changed the file since the
// fetch; whoever could change it (an open for writing, a truncate, a
// fallocate) waits for pushes in progress (inode.gate). The pages of the
// read itself are locked by the kernel until it is answered, so they are
// left out.
func (f *FS) push(node *Node, got map[uint64]*cblock, off, n uint64, gen, size uint64) {
	select {
	case f.pushes <- struct{}{}:
	default:
		return // enough in flight: skip, it is only a cache
	}
	go func() {
		defer func() { <-f.pushes }()
		in := node.in
		in.gate.RLock()
		defer in.gate.RUnlock()
		in.mu.Lock()
		ok := in.gen == gen && in.writers == 0 && in.a.Size == size && !in.gone
		in.mu.Unlock()
		if !ok {
			return
		}
		const page = 4096
		lo, hi := off/page*page, (off+n+page-1)/page*page // pages of the read
		for blk, b := range got {
			start, end := blk*BlockSize, min((blk+1)*BlockSize, size)
			for _, r := range [][2]uint64{{start, min(end, lo)}, {max(start, hi), end}} {
				if r[0] < r[1] {
					if errno := node.WriteCache(int64(r[0]), b.data[r[0]-start:r[1]-start]); errno != 0 {
						f.Stats.PushErrors.Add(1)
						if f.Stats.PushErrors.Load() < 5 {
							f.log.Warn("page push", "err", errno)
						}
					} else {
						f.Stats.Pushes.Add(1)
					}
				}
			}
		}
	}()
}

// lendBlocks returns the n bytes at off as slices of the blocks in bs,
// without copying them, for a READ reply: the kernel gets them with one
// writev. The blocks are marked lent, so that a later change copies a
// block first instead of changing bytes a reply may still be sending. The
// caller holds the inode's mutex.
func lendBlocks(off, n uint64, bs map[uint64]*cblock) [][]byte {
	out := make([][]byte, 0, (n+BlockSize-1)/BlockSize+1)
	for done := uint64(0); done < n; {
		pos := off + done
		b := bs[pos/BlockSize]
		b.lent = true
		s := b.data[pos%BlockSize : min(BlockSize, pos%BlockSize+n-done)]
		out = append(out, s)
		done += uint64(len(s))
	}
	return out
}

// fetchBlocks reads blocks of ino from the store as of the persisted
// attributes pa, for a file of the given size. A full block read from the
// store becomes the cached block as it is (values returned by a Store
// belong to the caller), so a cold read copies each byte once here.
func (f *FS) fetchBlocks(ctx context.Context, ino uint64, pa attrs, size uint64, blks []uint64) ([]*cblock, error) {
	out := make([]*cblock, len(blks))
	var want []uint64
	var idx []int
	for i, blk := range blks {
		out[i] = &cblock{key: bkey{ino, blk}}
		out[i].storedNone()
		switch {
		case blk*BlockSize >= size:
		case pa.Inline:
			if blk == 0 {
				out[i].data = pa.Data
			}
		case blk < pa.HWM:
			want = append(want, blk)
			idx = append(idx, i)
		}
	}
	if len(want) > 0 {
		sbs, err := f.readBlocks(ctx, ino, pa.Paged, want)
		if err != nil {
			return nil, err
		}
		for j, i := range idx {
			b, sb := out[i], &sbs[j]
			if !pa.Paged {
				b.data = sb.base // the value belongs to us: kept as is when whole
				b.slen[0] = int32(len(sb.base))
				continue
			}
			b.data = make([]byte, BlockSize)
			b.assemble(sb)
		}
	}
	for _, b := range out {
		if len(b.data) != BlockSize {
			// Short (trailing zeros are not stored), missing, or the
			// inode's inline bytes (never a whole block): copied.
			full := make([]byte, BlockSize)
			copy(full, b.data)
			b.data = full
		}
		start := b.key.blk * BlockSize
		if start >= size {
			clear(b.data)
		} else if end := size - start; end < BlockSize {
			clear(b.data[end:])
		}
	}
	return out, nil
}

func (f *FS) readLocked(ctx context.Context, in *inode, dest []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	size := in.a.Size
	if uint64(off) >= size {
		return 0, nil
	}
	n := min(uint64(len(dest)), size-uint64(off))
	done := uint64(0)
	for done < n {
		pos := uint64(off) + done
		b, err := f.block(ctx, in, pos/BlockSize)
		if err != nil {
			return 0, err
		}
		done += uint64(copy(dest[done:n], b.data[pos%BlockSize:]))
	}
	f.Stats.BytesRead.Add(n)
	return int(n), nil
}

// growLocked extends the size to newSize, zeroing the tail of the block
// that held the old end of file (it may hold stale bytes in the store).
func (f *FS) growLocked(ctx context.Context, in *inode, newSize uint64) error {
	old := in.a.Size
	if newSize <= old {
		return nil
	}
	if old%BlockSize != 0 || (in.pa.Inline && old > 0) {
		b, err := f.block(ctx, in, old/BlockSize)
		if err != nil {
			return err
		}
		if in.pa.Inline {
			f.cache.markDirty(b)
		} else {
			f.cache.markDirtyRange(b, int(old%BlockSize), BlockSize)
		}
	}
	in.a.Size = newSize
	in.dirty = true
	return nil
}

func (f *FS) writeLocked(ctx context.Context, in *inode, data []byte, off int64) (int, error) {
	if in.werr != nil {
		err := in.werr
		in.werr = nil
		return 0, err
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	end := uint64(off) + uint64(len(data))
	if end > 1<<50 {
		return 0, syscall.EFBIG
	}
	if uint64(off) > in.a.Size {
		if err := f.growLocked(ctx, in, uint64(off)); err != nil {
			return 0, err
		}
	}
	pressure := false
	done := 0
	for done < len(data) {
		pos := uint64(off) + uint64(done)
		blk := pos / BlockSize
		var b *cblock
		lo, hi := 0, BlockSize
		if pos%BlockSize == 0 && len(data)-done >= BlockSize && f.cache.get(in.ino, blk) == nil {
			// A whole block: no need to read (or zero) what it replaces.
			// What zdb holds for it is asked at flush time if it may
			// hold something (blocks.go).
			b = &cblock{key: bkey{in.ino, blk}, data: append([]byte(nil), data[done:done+BlockSize]...)}
			if blk >= in.pa.HWM || in.pa.Inline {
				b.storedNone()
			}
			done += BlockSize
		} else {
			var err error
			if b, err = f.block(ctx, in, blk); err != nil {
				return 0, err
			}
			lo = int(pos % BlockSize)
			n := copy(b.mutable()[lo:], data[done:])
			hi = lo + n
			done += n
		}
		if f.cache.markDirtyRange(b, lo, hi) {
			pressure = true
		}
	}
	if end > in.a.Size {
		in.a.Size = end
	}
	t := nowNs()
	in.a.Mtime, in.a.Ctime = t, t
	in.dirty = true
	f.Stats.BytesWrite.Add(uint64(len(data)))
	if pressure {
		if err := f.relieveLocked(ctx, in); err != nil {
			in.werr = nil
			return 0, err
		}
	}
	return len(data), nil
}

// relieveLocked handles dirty-data pressure from a writer: a file already
// out of inline form is flushed in the background (flushAsync) while the
// writer goes on; the writer waits only when a flush is already running
// and the cache is nearly full of dirty blocks. Anything else is flushed
// at once.
func (f *FS) relieveLocked(ctx context.Context, in *inode) error {
	if in.pa.Inline || in.a.Size <= InlineMax {
		return f.flushLocked(ctx, in)
	}
	if !in.flushing {
		f.flushAsync(in)
		return nil
	}
	for in.flushing && f.cache.dirtyBytes() > f.cache.limit*7/8 {
		in.cond().Wait()
	}
	return nil
}

// cond is in's condition variable on in.mu (flushes in progress).
func (in *inode) cond() *sync.Cond {
	if in.fcond == nil {
		in.fcond = sync.NewCond(&in.mu)
	}
	return in.fcond
}

// quiesce waits until no background flush of in runs. The caller holds
// in.mu; it is released while waiting.
func (in *inode) quiesce() {
	for in.flushing {
		in.cond().Wait()
	}
}

// The crash-order protocol (docs/zdbfs-format.md, "Write protocol and
// crash story"). A file's record claims blocks only below its high-water
// mark, and its size only over blocks that are stored, so a flush of a
// file out of inline form is, in this order:
//
//  1. raiseMark: log the record as last stored with the mark raised over
//     the dirty blocks (the size stays the old one);
//  2. storeBlocks: flush the metadata log if the file's record is still in
//     it (so the raised mark is in zdb first), then write the blocks;
//  3. commitRecord: log the record with the new size and mark.
//
// The flushes below are this sequence, run three ways: flushData runs it
// in a row under in.mu; flushAsync runs step 1 under in.mu, step 2 in the
// background while writers go on, and step 3 under in.mu again;
// raiseMarks runs step 1 for many files and one log flush for all of
// them, so that their flushData finds step 2's log flush done.

// blockFlush is a snapshot of a file's dirty blocks for one flush: what
// to write (plan: whole blocks or page records, blocks.go), the mark those
// writes need and the size they cover.
type blockFlush struct {
	blocks []*cblock
	data   [][]byte // each block's bytes as written (a writer may copy the block meanwhile)
	vers   []uint64 // each block's version as written
	plan   *blockPlan
	need   uint64 // high-water mark covering the blocks
	size   uint64
}

// dirtyMark returns the high-water mark that covers in's stored blocks
// and dirty, in's dirty blocks in order.
func dirtyMark(in *inode, dirty []*cblock) uint64 {
	need := in.pa.HWM
	if len(dirty) > 0 {
		need = max(need, dirty[len(dirty)-1].key.blk+1)
	}
	return need
}

// snapshotBlocks takes in's dirty blocks at its current size and plans
// their writes (planBlocks: a block past the end, or all zeros, is a
// delete). With freeze, the blocks are frozen so that a writer copies one
// before changing it (cblock.mutable) while the flush runs without in.mu:
// the plan's values are slices of the blocks' bytes. The caller holds
// in.mu.
func (f *FS) snapshotBlocks(ctx context.Context, in *inode, freeze bool) (*blockFlush, error) {
	dirty := f.cache.dirtyBlocks(in.ino)
	bf := &blockFlush{blocks: dirty, need: dirtyMark(in, dirty), size: in.a.Size,
		data: make([][]byte, len(dirty)), vers: make([]uint64, len(dirty))}
	if len(dirty) == 0 {
		return bf, nil
	}
	plan, err := f.planBlocks(ctx, in, dirty, bf.size)
	if err != nil {
		return nil, err
	}
	bf.plan = plan
	for i, b := range dirty {
		b.frozen = b.frozen || freeze
		bf.data[i], bf.vers[i] = b.data, b.ver
	}
	return bf, nil
}

// raiseMark is step 1: it logs in's record as last stored with the
// high-water mark raised to need and, when the writes include page
// records, the paged flag set — unless the record says so already. The
// caller holds in.mu.
func (f *FS) raiseMark(ctx context.Context, in *inode, need uint64, paged bool) error {
	if need <= in.pa.HWM && (!paged || in.pa.Paged) {
		return nil
	}
	pre := in.pa
	pre.HWM, pre.Paged = max(pre.HWM, need), pre.Paged || paged
	if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&pre)); err != nil {
		return err
	}
	in.pa = pre
	return nil
}

// storeBlocks is step 2: the file's record — the mark raised by step 1
// here or by raiseMarks, or left in the log by a failed flush — and every
// metadata change before it reach zdb before blocks above the old mark
// do; then the plan's writes are applied (blockPlan.apply: page records a
// whole block replaces are deleted last). It needs no lock: the log and
// the data store order their own writes.
func (f *FS) storeBlocks(ctx context.Context, ino uint64, plan *blockPlan) error {
	if plan == nil || len(plan.ops)+len(plan.after) == 0 {
		return nil
	}
	if f.mlog.logged(inodeKey(ino)) {
		if err := f.mlog.Flush(ctx); err != nil {
			return err
		}
	}
	return plan.apply(ctx, f.data)
}

// commitRecord is step 3: it logs rec, in's record with the size, mark,
// paged flag and stored bytes the stored blocks cover, and makes it the
// persisted view. The caller holds in.mu.
func (f *FS) commitRecord(ctx context.Context, in *inode, rec attrs) error {
	if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&rec)); err != nil {
		return err
	}
	in.pa = rec
	in.a.HWM, in.a.Inline, in.a.Data = rec.HWM, rec.Inline, rec.Data
	in.a.Paged, in.a.Alloc = rec.Paged, rec.Alloc
	in.gen++
	return nil
}

// blockRecord is the record step 3 writes after bf's blocks are stored:
// in's attributes as they are now, but the size the stored blocks cover
// (writes may have gone past it meanwhile), the mark, the paged flag of
// the record last logged and the stored bytes changed by the plan. The
// caller holds in.mu.
func blockRecord(in *inode, bf *blockFlush) attrs {
	rec := in.a
	rec.Size, rec.HWM, rec.Inline, rec.Data = bf.size, max(bf.need, in.pa.HWM), false, nil
	rec.Paged, rec.Alloc = in.pa.Paged, in.pa.Alloc
	if bf.plan != nil {
		rec.Paged = rec.Paged || bf.plan.paged
		rec.Alloc = addAlloc(rec.Alloc, bf.plan.alloc)
	}
	return rec
}

// flushAsync flushes in's dirty blocks in the background while writers
// go on (see the protocol above): the mark is raised now, the blocks are
// written by a goroutine the filesystem tracks (FS.bg, stopped by
// Close), and the record is written when they are stored. A block
// changed meanwhile stays dirty for a later flush. The caller holds
// in.mu; in is not inline.
func (f *FS) flushAsync(in *inode) {
	ctx, cancel := context.WithTimeout(f.life, 2*time.Minute)
	bf, err := f.snapshotBlocks(ctx, in, true)
	if err != nil {
		cancel()
		in.werr = err
		return
	}
	if len(bf.blocks) == 0 {
		cancel()
		return
	}
	in.flushing = true
	in.gen++
	f.Stats.Flushes.Add(1)
	err = f.raiseMark(ctx, in, bf.need, bf.plan.paged)
	f.bg.Go(func() {
		defer cancel()
		if err == nil {
			err = f.storeBlocks(ctx, in.ino, bf.plan)
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		bf.plan.done(err)
		var clean []*cblock
		for i, b := range bf.blocks {
			if &b.data[0] == &bf.data[i][0] {
				b.frozen = false // no writer copied it
			}
			if err == nil && b.ver == bf.vers[i] {
				clean = append(clean, b)
			}
		}
		if err == nil && !in.gone {
			if err = f.commitRecord(ctx, in, blockRecord(in, bf)); err == nil {
				f.cache.markClean(clean)
			}
		}
		if err != nil {
			f.Stats.Errors.Add(1)
			in.werr = err
			f.log.Warn("background flush", "ino", in.ino, "err", err)
		}
		in.flushing = false
		in.cond().Broadcast()
		f.maybeEvict(in)
	})
}

func trimZeros(b []byte) []byte {
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return b[:i]
}

// flushLocked stores in's dirty blocks and then its inode record, in the
// order the crash story needs (flushData). On failure the blocks stay
// dirty, nothing claims them, and the error is kept for the next write,
// fsync or close. The caller holds in.mu.
func (f *FS) flushLocked(ctx context.Context, in *inode) error {
	in.quiesce()
	if f.stale(in) {
		return nil // evicted clean while queued; its number has a newer inode
	}
	if in.gone || !in.isReg() {
		if in.gone || !in.dirty {
			return nil
		}
		if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&in.a)); err != nil {
			return err
		}
		in.pa, in.dirty = in.a, false
		return nil
	}
	err := f.flushData(ctx, in)
	if err != nil {
		f.Stats.Errors.Add(1)
		in.werr = err
	}
	return err
}

// raiseMarks prepares flushes of many files at once: step 1 of the
// protocol for each file with dirty blocks, then one flush of the
// metadata log for all of them instead of one per file (under a stream of
// metadata changes each of those flushes would carry everything logged
// meanwhile). Their flushData then finds the marks in zdb and goes
// straight to the blocks.
func (f *FS) raiseMarks(ctx context.Context, ins []*inode) error {
	flush := false
	for _, in := range ins {
		in.mu.Lock()
		in.quiesce()
		if !in.gone && in.isReg() && in.a.Size > InlineMax && !f.stale(in) && f.cache.hasDirty(in.ino) {
			if err := f.raiseMark(ctx, in, dirtyMark(in, f.cache.dirtyBlocks(in.ino)), false); err != nil {
				in.mu.Unlock()
				return err
			}
			flush = flush || f.mlog.logged(inodeKey(in.ino))
		}
		in.mu.Unlock()
	}
	if !flush {
		return nil
	}
	return f.mlog.Flush(ctx)
}

// stale reports whether in is no longer the inode the table holds for its
// number: it was evicted (clean) while queued for a flush, and whatever is
// dirty under its number now belongs to a newer object. The caller holds
// in.mu (eviction does too).
func (f *FS) stale(in *inode) bool {
	f.tmu.Lock()
	defer f.tmu.Unlock()
	return f.inodes[in.ino] != in
}

// flushData makes in's data and record durable in zdb. The caller holds
// in.mu throughout, so nothing changes under the flush.
//
// A file that stays or becomes inline (at most InlineMax bytes) keeps
// its data in the record: the record with the data is written first and
// the log flushed, and only then are the blocks it had deleted and its
// mark lowered to 0 (a crash in between leaves blocks nothing claims
// above an inline record, which the next flush deletes).
//
// A larger file follows the crash-order protocol above, steps 1 to 3 in a
// row; a file leaving inline form first marks block 0 dirty so that its
// data, until now in the record, reaches the data namespace.
func (f *FS) flushData(ctx context.Context, in *inode) error {
	size := in.a.Size
	if size <= InlineMax {
		return f.flushInline(ctx, in)
	}
	if in.pa.Inline && in.pa.Size > 0 {
		b, err := f.block(ctx, in, 0)
		if err != nil {
			return err
		}
		f.cache.markDirty(b)
	}
	bf, err := f.snapshotBlocks(ctx, in, false)
	if err != nil {
		return err
	}
	if len(bf.blocks) == 0 && !in.dirty {
		return nil
	}
	in.gen++
	f.Stats.Flushes.Add(1)
	if err := f.raiseMark(ctx, in, bf.need, bf.plan != nil && bf.plan.paged); err != nil {
		return err
	}
	err = f.storeBlocks(ctx, in.ino, bf.plan)
	if bf.plan != nil {
		bf.plan.done(err)
	}
	if err != nil {
		return err
	}
	if err := f.commitRecord(ctx, in, blockRecord(in, bf)); err != nil {
		return err
	}
	f.cache.markClean(bf.blocks)
	in.dirty = false
	return nil
}

// flushInline is flushData for a file of at most InlineMax bytes: its
// data goes into the record (see flushData).
func (f *FS) flushInline(ctx context.Context, in *inode) error {
	dirty := f.cache.dirtyBlocks(in.ino)
	if len(dirty) == 0 && !in.dirty {
		return nil
	}
	in.gen++
	f.Stats.Flushes.Add(1)
	rec := in.a
	rec.Inline, rec.Data, rec.HWM = true, nil, in.pa.HWM
	rec.Paged, rec.Alloc = in.pa.Paged, in.pa.Alloc
	if in.a.Size > 0 {
		b, err := f.block(ctx, in, 0)
		if err != nil {
			return err
		}
		rec.Data = append([]byte(nil), b.data[:in.a.Size]...)
	}
	if err := f.commitRecord(ctx, in, rec); err != nil {
		return err
	}
	if rec.HWM > 0 {
		// The inline record must be in zdb before the blocks go.
		if err := f.mlog.Flush(ctx); err != nil {
			return err
		}
		if _, err := f.delBlocks(ctx, in.ino, 0, rec.HWM, rec.Paged, false); err != nil {
			return err
		}
		rec.HWM, rec.Paged, rec.Alloc = 0, false, 0
		if err := f.commitRecord(ctx, in, rec); err != nil {
			return err
		}
	}
	f.cache.markClean(dirty)
	in.dirty = false
	return nil
}

// truncateLocked sets the size. Shrinking deletes the blocks past the new
// end (before the record shrinks, so a crash never leaves a block that a
// later grow would show) and zeroes the tail of the last block.
func (f *FS) truncateLocked(ctx context.Context, in *inode, size uint64) error {
	if size > 1<<50 {
		return syscall.EFBIG
	}
	in.quiesce()
	if size >= in.a.Size {
		return f.growLocked(ctx, in, size)
	}
	in.gen++
	keep := blocksFor(size)
	if size%BlockSize != 0 {
		b, err := f.block(ctx, in, size/BlockSize)
		if err != nil {
			return err
		}
		clear(b.mutable()[size%BlockSize:])
		f.cache.markDirtyRange(b, int(size%BlockSize), BlockSize)
	}
	f.cache.truncate(in.ino, keep)
	if !in.pa.Inline && in.pa.HWM > keep {
		freed, err := f.delBlocks(ctx, in.ino, keep, in.pa.HWM, in.pa.Paged, keep > 0)
		if err != nil {
			return err
		}
		in.pa.HWM = keep // the stored record may say more: that is safe
		in.pa.Alloc = addAlloc(in.pa.Alloc, -int64(freed))
		if keep == 0 {
			in.pa.Alloc = 0
		}
		in.a.Alloc = in.pa.Alloc
	}
	in.a.Size = size
	in.dirty = true
	return nil
}

// punchLocked zeroes [off, off+n) inside the file.
func (f *FS) punchLocked(ctx context.Context, in *inode, off, n uint64) error {
	in.quiesce()
	end := min(off+n, in.a.Size)
	in.gen++
	for pos := off; pos < end; {
		blk := pos / BlockSize
		bend := min((blk+1)*BlockSize, end)
		b, err := f.block(ctx, in, blk)
		if err != nil {
			return err
		}
		clear(b.mutable()[pos%BlockSize : pos%BlockSize+(bend-pos)])
		f.cache.markDirtyRange(b, int(pos%BlockSize), int(pos%BlockSize+(bend-pos)))
		pos = bend
	}
	in.dirty = true
	return nil
}

// blockHasData reports whether block blk holds data (cache or store).
func (f *FS) blockHasData(ctx context.Context, in *inode, blk uint64) (bool, error) {
	if b := f.cache.get(in.ino, blk); b != nil {
		return len(trimZeros(b.data)) > 0 || b.dirty, nil
	}
	if in.pa.Inline {
		return blk == 0 && len(in.pa.Data) > 0, nil
	}
	if blk >= in.pa.HWM {
		return false, nil
	}
	if !in.pa.Paged {
		return f.data.Exists(ctx, blockKey(in.ino, blk))
	}
	ls, err := f.storedOf(ctx, in.ino, true, []uint64{blk})
	if err != nil {
		return false, err
	}
	for _, l := range ls[0] {
		if l > 0 {
			return true, nil
		}
	}
	return false, nil
}

const seekScanMax = 1 << 16

// seekLocked implements SEEK_DATA and SEEK_HOLE at block granularity. For
// files with more blocks to scan than seekScanMax, it answers as a file
// without holes would (allowed by POSIX).
func (f *FS) seekLocked(ctx context.Context, in *inode, off uint64, whence uint32) (uint64, error) {
	size := in.a.Size
	if off >= size {
		return 0, syscall.ENXIO
	}
	const seekData, seekHole = 3, 4
	nb := blocksFor(size)
	if nb-off/BlockSize > seekScanMax {
		if whence == seekData {
			return off, nil
		}
		return size, nil
	}
	for blk := off / BlockSize; blk < nb; blk++ {
		has, err := f.blockHasData(ctx, in, blk)
		if err != nil {
			return 0, err
		}
		pos := max(off, blk*BlockSize)
		if whence == seekData && has {
			return pos, nil
		}
		if whence == seekHole && !has {
			return pos, nil
		}
	}
	if whence == seekData {
		return 0, syscall.ENXIO
	}
	return size, nil
}
