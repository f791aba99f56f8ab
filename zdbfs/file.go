package zdbfs

import (
	"context"
	"errors"
	"syscall"
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
	start := blk * BlockSize
	if start < in.a.Size {
		switch {
		case in.pa.Inline:
			if blk == 0 {
				copy(b.data, in.pa.Data)
			}
		case blk < in.pa.HWM:
			v, err := f.data.Get(ctx, blockKey(in.ino, blk))
			if err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			copy(b.data, v)
		}
		if end := in.a.Size - start; end < BlockSize {
			clear(b.data[end:])
		}
	}
	f.cache.putClean(b)
	return b, nil
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
		f.cache.markDirty(b)
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
		b, err := f.block(ctx, in, pos/BlockSize)
		if err != nil {
			return 0, err
		}
		done += copy(b.data[pos%BlockSize:], data[done:])
		if f.cache.markDirty(b) {
			pressure = true
		}
	}
	if end > in.a.Size {
		in.a.Size = end
	}
	t := nowNs()
	in.a.Mtime, in.a.Ctime = t, t
	in.a.Mode &^= syscall.S_ISUID // a write drops set-user-id
	in.dirty = true
	f.Stats.BytesWrite.Add(uint64(len(data)))
	if pressure {
		if err := f.flushLocked(ctx, in); err != nil {
			in.werr = nil
			return 0, err
		}
	}
	return len(data), nil
}

func trimZeros(b []byte) []byte {
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return b[:i]
}

// flushLocked stores in's dirty blocks and then its inode record, in the
// order the crash story needs (docs/zdbfs-format.md): first the record
// with a raised block high-water mark (old size), then the blocks, then
// the record with the new size. On failure the blocks stay dirty, nothing
// claims them, and the error is kept for the next write, fsync or close.
func (f *FS) flushLocked(ctx context.Context, in *inode) error {
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

func (f *FS) flushData(ctx context.Context, in *inode) error {
	size := in.a.Size
	inline := size <= InlineMax
	if in.pa.Inline && !inline && in.pa.Size > 0 {
		// Leaving inline: block 0 must reach the data namespace.
		b, err := f.block(ctx, in, 0)
		if err != nil {
			return err
		}
		f.cache.markDirty(b)
	}
	dirty := f.cache.dirtyBlocks(in.ino)
	if len(dirty) == 0 && !in.dirty {
		return nil
	}
	f.Stats.Flushes.Add(1)
	na := in.a
	if inline {
		na.Inline, na.Data = true, nil
		if size > 0 {
			b, err := f.block(ctx, in, 0)
			if err != nil {
				return err
			}
			na.Data = append([]byte(nil), b.data[:size]...)
		}
		na.HWM = in.pa.HWM
		if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&na)); err != nil {
			return err
		}
		in.pa = na
		if na.HWM > 0 {
			if err := f.delBlocks(ctx, in.ino, 0, na.HWM); err != nil {
				return err
			}
			na.HWM = 0
			if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&na)); err != nil {
				return err
			}
			in.pa = na
		}
	} else {
		na.Inline, na.Data = false, nil
		need := in.pa.HWM
		if len(dirty) > 0 {
			need = max(need, dirty[len(dirty)-1].key.blk+1)
		}
		if need > in.pa.HWM {
			pre := in.pa
			pre.HWM = need
			if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&pre)); err != nil {
				return err
			}
			in.pa = pre
		}
		ops := make([]Op, 0, len(dirty))
		for _, b := range dirty {
			start := b.key.blk * BlockSize
			if start >= size {
				ops = append(ops, Op{Key: blockKey(in.ino, b.key.blk), Del: true})
				continue
			}
			v := trimZeros(b.data[:min(BlockSize, size-start)])
			if len(v) == 0 {
				ops = append(ops, Op{Key: blockKey(in.ino, b.key.blk), Del: true})
			} else {
				ops = append(ops, Op{Key: blockKey(in.ino, b.key.blk), Value: v})
			}
		}
		if err := f.data.Apply(ctx, ops); err != nil {
			return err
		}
		na.HWM = need
		if err := f.meta.Set(ctx, inodeKey(in.ino), encodeInode(&na)); err != nil {
			return err
		}
		in.pa = na
	}
	in.a.HWM, in.a.Inline, in.a.Data = na.HWM, na.Inline, na.Data
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
	if size >= in.a.Size {
		return f.growLocked(ctx, in, size)
	}
	keep := blocksFor(size)
	if size%BlockSize != 0 {
		b, err := f.block(ctx, in, size/BlockSize)
		if err != nil {
			return err
		}
		clear(b.data[size%BlockSize:])
		f.cache.markDirty(b)
	}
	f.cache.truncate(in.ino, keep)
	if !in.pa.Inline && in.pa.HWM > keep {
		if err := f.delBlocks(ctx, in.ino, keep, in.pa.HWM); err != nil {
			return err
		}
		in.pa.HWM = keep // the stored record may say more: that is safe
	}
	in.a.Size = size
	in.dirty = true
	return nil
}

// punchLocked zeroes [off, off+n) inside the file.
func (f *FS) punchLocked(ctx context.Context, in *inode, off, n uint64) error {
	end := min(off+n, in.a.Size)
	for pos := off; pos < end; {
		blk := pos / BlockSize
		bend := min((blk+1)*BlockSize, end)
		b, err := f.block(ctx, in, blk)
		if err != nil {
			return err
		}
		clear(b.data[pos%BlockSize : pos%BlockSize+(bend-pos)])
		f.cache.markDirty(b)
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
	return f.data.Exists(ctx, blockKey(in.ino, blk))
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
