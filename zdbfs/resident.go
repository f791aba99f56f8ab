package zdbfs

import (
	"context"
	"fmt"
)

// DataKeys returns up to max keys of inode ino's data blocks, spread over
// the file (the first block, the last, and evenly between), for a program
// that asks where a file's data is: qsfs shows a file whose data was
// evicted as remote-only. A file held inline in its inode, an empty file
// and anything but a regular file have none. Keys of blocks that are
// holes are included; the caller skips keys that are not stored.
func (f *FS) DataKeys(ctx context.Context, ino uint64, max int) ([][]byte, error) {
	if max < 1 {
		return nil, fmt.Errorf("zdbfs: DataKeys: max %d < 1", max)
	}
	in, err := f.loadInode(ctx, ino)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	reg, inline, paged, size := in.isReg(), in.a.Inline, in.a.Paged, in.a.Size
	in.mu.Unlock()
	if !reg || inline || size == 0 {
		return nil, nil
	}
	blocks := (size + BlockSize - 1) / BlockSize
	var keys [][]byte
	add := func(blk uint64) {
		if paged {
			keys = append(keys, pageMaskKey(ino, blk))
		}
		keys = append(keys, blockKey(ino, blk))
	}
	if blocks <= uint64(max) {
		for b := range blocks {
			add(b)
		}
		return keys, nil
	}
	prev := uint64(1<<64 - 1)
	for i := range uint64(max) {
		b := i * (blocks - 1) / uint64(max-1)
		if max == 1 {
			b = 0
		}
		if b != prev {
			add(b)
			prev = b
		}
	}
	return keys, nil
}
