package zdbfs

import (
	"context"
	"encoding/binary"
	"errors"
	"math/bits"

	"qss/internal/resp"
	"qss/zdb"
	"qss/zdb/client"
)

// Block storage and write amplification (format v2).
//
// A block is stored as one record of up to 64 KiB ("b" key, trailing
// zeros not stored). Rewriting a whole block for every small write made
// 4 KiB random writes cost 16 bytes written to zdb per byte written by
// the application, and each rewrite left a dead 64 KiB version behind.
// So the cache tracks which 4 KiB pages of a block are dirty, and a flush
// writes the dirty pages of a block as page records ("c" key: ino, block,
// page) that replace the block's bytes of that page when read — as long
// as the block then has at most pageMax page records and the pages cost
// less than the block. Otherwise the whole block is written, and its page
// records deleted (after the block, so a crash in between shows each
// page as of this flush or the one before, never older: see
// docs/zdbfs-format.md). A block taking a random 4 KiB write per flush
// costs pageMax page records, then one block: (pageMax·4 + 64) KiB for
// pageMax+1 writes of 4 KiB, 3.1× with pageMax = 6, and holds at most
// 64 + 24 KiB of live records for 64 KiB of data.
//
// Only files whose record says Paged (set, and stored, before their first
// page record is written) have page records, and only their reads look
// for them. A block's page mask record ("m" key) lists its page records,
// so that a reader asks for the block and its mask, and then only for the
// pages listed (a second round trip, for blocks that have some) instead
// of 16 keys. The mask is written in the same batch as new page records
// (in any order: a page record not listed yet is not read, which shows
// the page as before this flush) and deleted with the page records after
// a whole block replaces them; it lists every page record written by a
// completed flush, and may list some that are gone (read as absent).
//
// The inode record (v2) counts the bytes stored for the file (Alloc):
// st_blocks, so du, counts what is stored, not holes. The cache knows
// what each block it read has stored (cblock.slen); for a block written
// whole without being read, the lengths are asked for at flush time
// (LENGTH, pipelined).

// pageMax is the number of page records a block may have.
const pageMax = 6

const allPages = 1<<blockPages - 1

// pageSpan returns the mask of the pages of a block that [lo, hi) touches
// (offsets inside the block).
func pageSpan(lo, hi int) uint16 {
	if hi <= lo {
		return 0
	}
	first, last := lo/PageSize, (hi-1)/PageSize
	return uint16((1<<(last+1) - 1) &^ (1<<first - 1))
}

// storedNone marks b as having nothing stored (a block above the file's
// high-water mark or past its end).
func (b *cblock) storedNone() {
	b.slen = [1 + blockPages]int32{}
	b.sknown = true
}

// pagesStored is the mask of b's pages that have a page record.
func (b *cblock) pagesStored() uint16 {
	var m uint16
	for p := 0; p < blockPages; p++ {
		if b.slen[1+p] > 0 {
			m |= 1 << p
		}
	}
	return m
}

// allBlockKeys returns every key block blk of a file may have: the
// block, and for a paged file its mask and the 16 page records.
func allBlockKeys(ino, blk uint64, paged bool) [][]byte {
	if !paged {
		return [][]byte{blockKey(ino, blk)}
	}
	keys := make([][]byte, 2+blockPages)
	keys[0], keys[1] = blockKey(ino, blk), pageMaskKey(ino, blk)
	for p := range blockPages {
		keys[2+p] = pageRecKey(ino, blk, p)
	}
	return keys
}

func decodeMask(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return binary.LittleEndian.Uint16(v)
}

// storedBlock is what zdb holds for one block: the block record and the
// page records its mask lists (nil: none).
type storedBlock struct {
	base  []byte
	pages [blockPages][]byte
}

// readBlocks reads blocks blks of ino: each block record, and for a paged
// file its mask, then the page records the masks list, in a second
// pipeline.
func (f *FS) readBlocks(ctx context.Context, ino uint64, paged bool, blks []uint64) ([]storedBlock, error) {
	out := make([]storedBlock, len(blks))
	per := 1
	if paged {
		per = 2
	}
	keys := make([][]byte, 0, per*len(blks))
	for _, blk := range blks {
		keys = append(keys, blockKey(ino, blk))
		if paged {
			keys = append(keys, pageMaskKey(ino, blk))
		}
	}
	var vs [][]byte
	if len(keys) == 1 {
		v, err := f.data.Get(ctx, keys[0])
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		vs = [][]byte{v}
	} else {
		var err error
		if vs, err = f.data.GetMany(ctx, keys); err != nil {
			return nil, err
		}
	}
	var pkeys [][]byte
	type at struct{ i, p int }
	var where []at
	for i := range blks {
		out[i].base = vs[i*per]
		if !paged {
			continue
		}
		m := decodeMask(vs[i*per+1])
		for p := range blockPages {
			if m&(1<<p) != 0 {
				pkeys = append(pkeys, pageRecKey(ino, blks[i], p))
				where = append(where, at{i, p})
			}
		}
	}
	if len(pkeys) > 0 {
		pvs, err := f.data.GetMany(ctx, pkeys)
		if err != nil {
			return nil, err
		}
		for j, w := range where {
			out[w.i].pages[w.p] = pvs[j]
		}
	}
	return out, nil
}

// assemble builds a block's bytes from what zdb holds for it and records
// that in b. b.data must be BlockSize bytes.
func (b *cblock) assemble(sb *storedBlock) {
	b.slen = [1 + blockPages]int32{}
	b.sknown = true
	copy(b.data, sb.base)
	b.slen[0] = int32(len(sb.base))
	for p, v := range sb.pages {
		if v == nil {
			continue
		}
		pg := b.data[p*PageSize : (p+1)*PageSize]
		clear(pg)
		copy(pg, v)
		b.slen[1+p] = int32(max(len(v), 1))
	}
}

// lengther is a Store that can tell the stored length of keys without
// reading them (-1 for a missing key).
type lengther interface {
	lengths(ctx context.Context, keys [][]byte) ([]int64, error)
}

func (s *ClientStore) lengths(ctx context.Context, keys [][]byte) ([]int64, error) {
	out := make([]int64, 0, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), 512)
		p := s.c.Pipeline()
		for _, k := range keys[:n] {
			p.Do([]byte("LENGTH"), k)
		}
		vs, err := p.Exec(ctx)
		if err != nil {
			return nil, mapClientErr("length", err)
		}
		for _, v := range vs {
			switch {
			case v.Kind == resp.KindInteger:
				out = append(out, v.Int)
			case v.Nil:
				out = append(out, -1)
			default:
				if err := client.AsError(v); err != nil && !errors.Is(err, client.ErrKeyNotFound) && !errors.Is(err, client.ErrNotFound) {
					return nil, mapClientErr("length", err)
				}
				out = append(out, -1)
			}
		}
		keys = keys[n:]
	}
	return out, nil
}

func (s *EngineStore) lengths(_ context.Context, keys [][]byte) ([]int64, error) {
	out := make([]int64, len(keys))
	for i, k := range keys {
		st, err := s.ns.Stat(k)
		switch {
		case errors.Is(err, zdb.ErrNotFound):
			out[i] = -1
		case err != nil:
			return nil, mapEngineErr("length", err)
		default:
			out[i] = int64(st.Length)
		}
	}
	return out, nil
}

func (s spaceStore) lengths(ctx context.Context, keys [][]byte) ([]int64, error) {
	if l, ok := s.Store.(lengther); ok {
		return l.lengths(ctx, keys)
	}
	vs, err := s.GetMany(ctx, keys) // a Store without LENGTH: read them
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(vs))
	for i, v := range vs {
		out[i] = -1
		if v != nil {
			out[i] = int64(len(v))
		}
	}
	return out, nil
}

// storedLengths returns the stored lengths of keys (-1: missing).
func (f *FS) storedLengths(ctx context.Context, keys [][]byte) ([]int64, error) {
	if l, ok := f.data.(lengther); ok {
		return l.lengths(ctx, keys)
	}
	return spaceStore{f.data}.lengths(ctx, keys)
}

// learnStored asks zdb what the blocks whose stored lengths the cache
// does not know have stored: the lengths of their block records, and of
// the page records their masks list.
func (f *FS) learnStored(ctx context.Context, in *inode, bs []*cblock) error {
	var who []*cblock
	for _, b := range bs {
		if b.sknown {
			continue
		}
		if b.key.blk >= in.pa.HWM || in.pa.Inline {
			b.storedNone()
			continue
		}
		who = append(who, b)
	}
	if len(who) == 0 {
		return nil
	}
	blks := make([]uint64, len(who))
	for i, b := range who {
		blks[i] = b.key.blk
	}
	ls, err := f.storedOf(ctx, in.ino, in.pa.Paged, blks)
	if err != nil {
		return err
	}
	for i, b := range who {
		b.slen, b.sknown = ls[i], true
	}
	return nil
}

// storedOf returns the stored lengths of blocks blks of ino: the block
// record, then each page record its mask lists (0: none).
func (f *FS) storedOf(ctx context.Context, ino uint64, paged bool, blks []uint64) ([][1 + blockPages]int32, error) {
	out := make([][1 + blockPages]int32, len(blks))
	keys := make([][]byte, len(blks))
	for i, blk := range blks {
		keys[i] = blockKey(ino, blk)
	}
	ls, err := f.storedLengths(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i, l := range ls {
		out[i][0] = int32(max(l, 0))
	}
	if !paged {
		return out, nil
	}
	for i, blk := range blks {
		keys[i] = pageMaskKey(ino, blk)
	}
	masks, err := f.data.GetMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	var pkeys [][]byte
	type at struct{ i, p int }
	var where []at
	for i, v := range masks {
		m := decodeMask(v)
		for p := range blockPages {
			if m&(1<<p) != 0 {
				pkeys = append(pkeys, pageRecKey(ino, blks[i], p))
				where = append(where, at{i, p})
			}
		}
	}
	if len(pkeys) > 0 {
		pls, err := f.storedLengths(ctx, pkeys)
		if err != nil {
			return nil, err
		}
		for j, w := range where {
			out[w.i][1+w.p] = int32(max(pls[j], 0)) // records are never empty
		}
	}
	return out, nil
}

// blockPlan is what a flush writes for a file's dirty blocks.
type blockPlan struct {
	ops   []Op  // blocks and page records written, blocks deleted: in any order
	after []Op  // page records deleted, once ops are in zdb
	paged bool  // writes page records: the record must say Paged first
	alloc int64 // change of the bytes stored for the file
	slen  [][1 + blockPages]int32
	bs    []*cblock
}

// planBlocks decides, for each dirty block of in (data as in the blocks
// now, for a file of size bytes), whether its dirty pages or the whole
// block are written, and returns the writes. The caller holds in.mu and
// applies the plan with done once the writes are in zdb, or failed.
func (f *FS) planBlocks(ctx context.Context, in *inode, dirty []*cblock, size uint64) (*blockPlan, error) {
	if err := f.learnStored(ctx, in, dirty); err != nil {
		return nil, err
	}
	pl := &blockPlan{bs: dirty, slen: make([][1 + blockPages]int32, len(dirty))}
	for i, b := range dirty {
		old := b.slen
		nl := old
		start := b.key.blk * BlockSize
		var full []byte
		if start < size {
			full = trimZeros(b.data[:min(BlockSize, size-start)])
		}
		stored := b.pagesStored()
		d := b.pdirty
		if d == 0 {
			d = allPages
		}
		cost, usePages := 0, start < size && !f.cfg.WholeBlocks && bits.OnesCount16(stored|d) <= pageMax
		for p := range blockPages {
			if !usePages || d&(1<<p) == 0 {
				continue
			}
			pg := trimZeros(b.data[p*PageSize : (p+1)*PageSize])
			if len(full) <= p*PageSize {
				pg = nil // past the end of the data
			}
			cost += max(len(pg), 1) + 40 // a record's key and header
		}
		if cost >= len(full) {
			usePages = false
		}
		if usePages {
			for p := range blockPages {
				if d&(1<<p) == 0 {
					continue
				}
				pg := trimZeros(b.data[p*PageSize : (p+1)*PageSize])
				if len(pg) == 0 && stored&(1<<p) == 0 && int(old[0]) <= p*PageSize {
					continue // zeros, and nothing stored to hide
				}
				if len(pg) == 0 {
					pg = []byte{0}
				}
				pl.ops = append(pl.ops, Op{Key: pageRecKey(in.ino, b.key.blk, p), Value: pg})
				nl[1+p] = int32(len(pg))
				pl.paged = true
			}
			var now uint16
			for p := range blockPages {
				if nl[1+p] > 0 {
					now |= 1 << p
				}
			}
			if now&^stored != 0 {
				pl.ops = append(pl.ops, Op{Key: pageMaskKey(in.ino, b.key.blk), Value: binary.LittleEndian.AppendUint16(nil, now)})
			}
		} else {
			if len(full) > 0 {
				pl.ops = append(pl.ops, Op{Key: blockKey(in.ino, b.key.blk), Value: full})
			} else if old[0] != 0 || !b.sknown {
				pl.ops = append(pl.ops, Op{Key: blockKey(in.ino, b.key.blk), Del: true})
			}
			nl[0] = int32(len(full))
			// The page records and their mask go after the block (see
			// the top).
			for p := range blockPages {
				if stored&(1<<p) != 0 {
					pl.after = append(pl.after, Op{Key: pageRecKey(in.ino, b.key.blk, p), Del: true})
					nl[1+p] = 0
				}
			}
			if stored != 0 {
				pl.after = append(pl.after, Op{Key: pageMaskKey(in.ino, b.key.blk), Del: true})
			}
		}
		for j := range nl {
			pl.alloc += int64(nl[j]) - int64(old[j])
		}
		pl.slen[i] = nl
	}
	return pl, nil
}

// apply writes the plan to the data namespace: the page records a
// written block replaces are deleted only once every write is in zdb (a
// Store may apply one batch's writes in any order).
func (pl *blockPlan) apply(ctx context.Context, data Store) error {
	err := data.Apply(ctx, pl.ops)
	if err == nil && len(pl.after) > 0 {
		err = data.Apply(ctx, pl.after)
	}
	return err
}

// done records the outcome of the plan's writes in the blocks: what they
// now have stored, or, after a failure, that it is unknown. The caller
// holds in.mu.
func (pl *blockPlan) done(err error) {
	for i, b := range pl.bs {
		if err != nil {
			b.sknown = false
			continue
		}
		b.slen, b.sknown = pl.slen[i], true
	}
}

// addAlloc returns a + d, never below zero.
func addAlloc(a uint64, d int64) uint64 {
	if d < 0 && uint64(-d) > a {
		return 0
	}
	return uint64(int64(a) + d)
}

// delBlocks deletes the records of blocks [from, to) of ino — and their
// page records for a paged file — and returns the bytes they held.
func (f *FS) delBlocks(ctx context.Context, ino, from, to uint64, paged, count bool) (uint64, error) {
	var freed uint64
	var ops []Op
	var keys [][]byte
	flush := func() error {
		if count && len(keys) > 0 {
			ls, err := f.storedLengths(ctx, keys)
			if err != nil {
				return err
			}
			for i, l := range ls {
				if l > 0 && keys[i][0] != 'm' { // masks are not counted in Alloc
					freed += uint64(l)
				}
			}
		}
		err := f.data.Apply(ctx, ops)
		ops, keys = ops[:0], keys[:0]
		return err
	}
	for b := from; b < to; b++ {
		for _, k := range allBlockKeys(ino, b, paged) {
			ops = append(ops, Op{Key: k, Del: true})
			keys = append(keys, k)
		}
		if len(ops) >= 512 {
			if err := flush(); err != nil {
				return freed, err
			}
		}
	}
	if len(ops) > 0 {
		if err := flush(); err != nil {
			return freed, err
		}
	}
	return freed, nil
}
