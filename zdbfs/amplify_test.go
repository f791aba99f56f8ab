package zdbfs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingStore counts the bytes written through a Store (keys and
// values of sets, keys of deletes): what zdb is asked to append.
type countingStore struct {
	Store
	bytes, writes atomic.Int64
}

func (s *countingStore) count(ops []Op) {
	for _, op := range ops {
		s.bytes.Add(int64(len(op.Key) + len(op.Value)))
	}
	s.writes.Add(int64(len(ops)))
}

func (s *countingStore) Set(ctx context.Context, key, value []byte) error {
	s.count([]Op{{Key: key, Value: value}})
	return s.Store.Set(ctx, key, value)
}

func (s *countingStore) Del(ctx context.Context, key []byte) error {
	s.count([]Op{{Key: key, Del: true}})
	return s.Store.Del(ctx, key)
}

func (s *countingStore) Apply(ctx context.Context, ops []Op) error {
	s.count(ops)
	return s.Store.Apply(ctx, ops)
}

// randomWrites makes n random 4 KiB writes, each at a 4 KiB-aligned
// offset of f (of size bytes), into f and model; with sync, each is
// fsync'ed.
func randomWrites(t *testing.T, f *os.File, model []byte, rng *rand.Rand, n int, sync bool) {
	t.Helper()
	buf := make([]byte, 4096)
	for range n {
		off := rng.IntN(len(model)/4096) * 4096
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if rng.IntN(8) == 0 {
			clear(buf[rng.IntN(4096):]) // some pages end in zeros
		}
		if _, err := f.WriteAt(buf, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], buf)
		if sync {
			must(t, f.Sync())
		}
	}
}

// TestWriteAmplification: 4 KiB random writes over a 16 MiB file, each
// fsync'ed (the worst case: nothing coalesces in the cache), 16 per
// block on average (past the point where blocks are rewritten whole),
// write at most 4 bytes to zdb (both namespaces) per byte written; the
// file reads back right, before and after a remount. (bench/zdbfsamp
// measures the 64 MiB case of the issue.)
func TestWriteAmplification(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			b := newBackend(t, kind)
			meta, data := &countingStore{Store: b.meta}, &countingStore{Store: b.data}
			b.meta, b.data = meta, data
			mt := mountOn(t, b, Config{})
			const size = 16 << 20
			model := make([]byte, size)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range model {
				model[i] = byte(i*31 + i>>12)
			}
			f, err := os.OpenFile(mt.path("big"), os.O_CREATE|os.O_RDWR, 0o644)
			must(t, err)
			_, err = f.Write(model)
			must(t, err)
			must(t, f.Sync())
			before := meta.bytes.Load() + data.bytes.Load()
			const n = 4096
			randomWrites(t, f, model, rng, n, true)
			written := meta.bytes.Load() + data.bytes.Load() - before
			amp := float64(written) / float64(n*4096)
			t.Logf("%d random 4 KiB writes, each fsync'ed: %d bytes to zdb, %.2f× (data %d B)", n, written, amp, data.bytes.Load())
			if amp > 4 {
				t.Errorf("write amplification %.2f×, want ≤ 4×", amp)
			}
			got := make([]byte, size)
			_, err = f.ReadAt(got, 0)
			must(t, err)
			must(t, f.Close())
			if !bytes.Equal(got, model) {
				t.Fatal("the file differs from what was written")
			}
			var st syscall.Stat_t
			must(t, syscall.Stat(mt.path("big"), &st))
			mt.unmount()
			mt = mountOn(t, b, Config{})
			got, err = os.ReadFile(mt.path("big"))
			must(t, err)
			if !bytes.Equal(got, model) {
				t.Fatal("after remount, the file differs from what was written")
			}
			var st2 syscall.Stat_t
			must(t, syscall.Stat(mt.path("big"), &st2))
			if st2.Blocks != st.Blocks || st.Blocks*512 < size/2 {
				t.Errorf("st_blocks %d before the remount, %d after, for %d bytes", st.Blocks, st2.Blocks, size)
			}
			mt.unmount()
		})
	}
}

// TestPagesMerge: a block written a page at a time, again and again
// (more page records than a block may have, overwrites of pages, zero
// pages, a truncation into the block and a grow past it), always reads
// back as written, before and after a remount.
func TestPagesMerge(t *testing.T) {
	b := newBackend(t, "engine")
	mt := mountOn(t, b, Config{})
	const size = 4 * BlockSize
	model := make([]byte, size)
	for i := range model {
		model[i] = byte(i*7 + 1)
	}
	p := mt.path("f")
	must(t, os.WriteFile(p, model, 0o644))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	check := func(what string) {
		t.Helper()
		got, err := os.ReadFile(p)
		must(t, err)
		if !bytes.Equal(got, model) {
			t.Fatalf("%s: the file differs from what was written", what)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 40 {
		page := rng.IntN(2 * blockPages) // the first two blocks
		buf := make([]byte, PageSize)
		if round%5 != 0 {
			for j := range buf {
				buf[j] = byte(rng.Uint32() | 1)
			}
		}
		_, err := f.WriteAt(buf, int64(page*PageSize))
		must(t, err)
		copy(model[page*PageSize:], buf)
		must(t, f.Sync())
		check(fmt.Sprintf("round %d", round))
	}
	// Truncate into block 1, then grow: zeros past the cut.
	cut := BlockSize + 3*PageSize + 100
	must(t, f.Truncate(int64(cut)))
	must(t, f.Truncate(size))
	clear(model[cut:])
	must(t, f.Sync())
	check("truncate and grow")
	must(t, f.Close())
	mt.unmount()
	mt = mountOn(t, b, Config{})
	p = mt.path("f")
	check("after remount")
	mt.unmount()
}

// TestDu: st_blocks counts what is stored, not holes, as on the local
// disk: a 5 GiB file made by truncate takes nothing, 1 MiB written in the
// middle of it takes 1 MiB — before and after fsync and a remount.
func TestDu(t *testing.T) {
	b := newBackend(t, "engine")
	mt := mountOn(t, b, Config{})
	local, err := os.MkdirTemp("/var/tmp", "zdbfs-du")
	if err != nil {
		local = t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(local) })
	blocks := func(p string) int64 {
		t.Helper()
		var st syscall.Stat_t
		must(t, syscall.Stat(p, &st))
		return st.Blocks * 512
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i | 1)
	}
	type du struct{ sparse, written, synced int64 }
	run := func(dir string) du {
		var d du
		p := dir + "/sparse"
		must(t, os.WriteFile(p, nil, 0o644))
		must(t, os.Truncate(p, 5<<30))
		d.sparse = blocks(p)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		must(t, err)
		_, err = f.WriteAt(data, 2<<30)
		must(t, err)
		d.written = blocks(p)
		must(t, f.Sync())
		must(t, f.Close())
		d.synced = blocks(p)
		return d
	}
	want, got := run(local), run(mt.Dir)
	near := func(a, b int64) bool { return a >= b-64<<10 && a <= b+64<<10 }
	if !near(got.sparse, want.sparse) || !near(got.written, want.written) || !near(got.synced, want.synced) {
		t.Errorf("allocated bytes: zdbfs %+v, the local disk %+v", got, want)
	}
	mt.unmount()
	mt = mountOn(t, b, Config{})
	if n := blocks(mt.path("sparse")); !near(n, want.synced) {
		t.Errorf("after remount: %d bytes allocated, the local disk %d", n, want.synced)
	}
	mt.unmount()
}

// encodeInodeV1 is an inode record as format v1 wrote it.
func encodeInodeV1(a *attrs) []byte {
	b := encodeInode(a)
	b[0] = recordV1
	b = b[:len(b)-8]                   // no Alloc
	b[1+4*4+8*4+4+8+8+4] &^= flagPaged // the flags byte
	return b
}

// TestFormatV1: a namespace written by format v1 (v1 superblock and
// inode records) mounts, reads back, is marked v2, and takes writes.
func TestFormatV1(t *testing.T) {
	b := newBackend(t, "engine")
	mt := mountOn(t, b, Config{})
	big := make([]byte, 3*BlockSize+123)
	for i := range big {
		big[i] = byte(i*5 + 3)
	}
	files := map[string][]byte{"small": []byte("inline content"), "d/big": big}
	must(t, os.Mkdir(mt.path("d"), 0o750))
	var inos []uint64
	for name, data := range files {
		must(t, os.WriteFile(mt.path(name), data, 0o640))
	}
	for _, name := range []string{"small", "d", "d/big"} {
		var st syscall.Stat_t
		must(t, syscall.Stat(mt.path(name), &st))
		inos = append(inos, st.Ino)
	}
	must(t, os.Symlink("d/big", mt.path("link")))
	var st syscall.Stat_t
	must(t, syscall.Lstat(mt.path("link"), &st))
	inos = append(inos, st.Ino, RootIno)
	mt.unmount()

	// Rewrite as v1.
	ctx := context.Background()
	for _, ino := range inos {
		v, err := b.meta.Get(ctx, inodeKey(ino))
		must(t, err)
		a, err := decodeInode(v)
		must(t, err)
		if a.Paged {
			t.Fatalf("inode %d is paged: v1 had no page records", ino)
		}
		must(t, b.meta.Set(ctx, inodeKey(ino), encodeInodeV1(a)))
	}
	v, err := b.meta.Get(ctx, keySuper)
	must(t, err)
	s, err := decodeSuper(v)
	must(t, err)
	s.Version = 1
	must(t, b.meta.Set(ctx, keySuper, encodeSuper(s)))

	mt = mountOn(t, b, Config{})
	for name, data := range files {
		got, err := os.ReadFile(mt.path(name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s from a v1 namespace: %d bytes, %v", name, len(got), err)
		}
	}
	if target, err := os.Readlink(mt.path("link")); err != nil || target != "d/big" {
		t.Fatalf("symlink from a v1 namespace: %q, %v", target, err)
	}
	fi, err := os.Stat(mt.path("d"))
	must(t, err)
	if fi.Mode().Perm() != 0o750 || !fi.IsDir() {
		t.Fatalf("directory from a v1 namespace: %v", fi.Mode())
	}
	v, err = b.meta.Get(ctx, keySuper)
	must(t, err)
	if s, err := decodeSuper(v); err != nil || s.Version != FormatVersion {
		t.Fatalf("superblock after mounting a v1 namespace: %+v, %v", s, err)
	}
	// Writes on a v1 file: small random ones (page records), read back.
	f, err := os.OpenFile(mt.path("d/big"), os.O_RDWR, 0)
	must(t, err)
	randomWrites(t, f, big, rand.New(rand.NewPCG(5, 6)), 20, true)
	must(t, f.Close())
	mt.unmount()
	mt = mountOn(t, b, Config{})
	if got, err := os.ReadFile(mt.path("d/big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("v1 file after page writes and a remount: %d bytes, %v", len(got), err)
	}
	mt.unmount()
}

// pageDelFails is a data Store whose batches deleting page records fail
// while fail is set: a crash between a flush's block write and the
// deletion of the page records that block replaces.
type pageDelFails struct {
	Store
	fail atomic.Bool
}

func (s *pageDelFails) Apply(ctx context.Context, ops []Op) error {
	if s.fail.Load() {
		for _, op := range ops {
			if op.Del && op.Key[0] == 'c' {
				return &StoreError{Op: "apply", Err: fmt.Errorf("injected failure")}
			}
		}
	}
	return s.Store.Apply(ctx, ops)
}

// TestPagesCrashBetweenBlockAndPages: when a flush writes a whole block
// and dies before deleting the page records it replaces, a remount shows
// every page of the block as of that flush or as of the fsync before it,
// never older, and the file keeps its fsync'ed size.
func TestPagesCrashBetweenBlockAndPages(t *testing.T) {
	b := newBackend(t, "engine")
	pd := &pageDelFails{Store: b.data}
	b.data = pd
	mt := mountOn(t, b, Config{FlushAge: time.Hour})
	fill := func(buf []byte, seed byte) {
		for i := range buf {
			buf[i] = seed + byte(i%251)
		}
	}
	s0 := make([]byte, BlockSize)
	fill(s0, 1)
	f, err := os.Create(mt.path("f"))
	must(t, err)
	_, err = f.Write(s0)
	must(t, err)
	must(t, f.Sync()) // S0: the block record
	s1 := bytes.Clone(s0)
	for _, p := range []int{1, 2, 3} { // S1: three page records
		fill(s1[p*PageSize:(p+1)*PageSize], byte(10+p))
		_, err := f.WriteAt(s1[p*PageSize:(p+1)*PageSize], int64(p*PageSize))
		must(t, err)
	}
	must(t, f.Sync())
	s2 := bytes.Clone(s1)
	for p := 2; p < 12; p++ { // S2: ten pages, over two of the records: a whole block
		fill(s2[p*PageSize:(p+1)*PageSize], byte(40+p))
		_, err := f.WriteAt(s2[p*PageSize:(p+1)*PageSize], int64(p*PageSize))
		must(t, err)
	}
	pd.fail.Store(true)
	if err := f.Sync(); err == nil {
		t.Fatal("fsync succeeded with the page records' deletion failing")
	}
	f.Close()
	mt.forceUnmount() // the crash: nothing more reaches zdb
	pd.fail.Store(false)
	mt = mountOn(t, b, Config{})
	got, err := os.ReadFile(mt.path("f"))
	must(t, err)
	if len(got) != BlockSize {
		t.Fatalf("size %d after the crash, %d was fsync'ed", len(got), BlockSize)
	}
	for p := range blockPages {
		pg := got[p*PageSize : (p+1)*PageSize]
		if !bytes.Equal(pg, s1[p*PageSize:(p+1)*PageSize]) && !bytes.Equal(pg, s2[p*PageSize:(p+1)*PageSize]) {
			t.Errorf("page %d is neither as fsync'ed nor as last written", p)
		}
	}
	// Page 2 was rewritten by S2 but its S1 record survived: it shows S1.
	if !bytes.Equal(got[2*PageSize:3*PageSize], s1[2*PageSize:3*PageSize]) {
		t.Errorf("page 2: the surviving page record should show S1")
	}
	// The next flush of the block cleans up: everything reads as written.
	f, err = os.OpenFile(mt.path("f"), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt(s2, 0)
	must(t, err)
	must(t, f.Sync())
	must(t, f.Close())
	mt.unmount()
	mt = mountOn(t, b, Config{})
	if got, err := os.ReadFile(mt.path("f")); err != nil || !bytes.Equal(got, s2) {
		t.Fatalf("after rewriting the block: %d bytes, %v", len(got), err)
	}
	mt.unmount()
}

// TestPagesUnderPressure: random small writes to a file larger than a
// small cache, with no fsync, so that background flushes (page records
// and whole blocks) run while the writer goes on; the file reads back as
// written, before and after a remount, over both Store implementations.
func TestPagesUnderPressure(t *testing.T) {
	for _, kind := range backends {
		t.Run(kind, func(t *testing.T) {
			b := newBackend(t, kind)
			cfg := Config{CacheBytes: 4 << 20, MaxInodes: 64, FlushAge: 50 * time.Millisecond}
			mt := mountOn(t, b, cfg)
			const size = 8 << 20
			model := make([]byte, size)
			for i := range model {
				model[i] = byte(i*3 + 7)
			}
			must(t, os.WriteFile(mt.path("f"), model, 0o644))
			f, err := os.OpenFile(mt.path("f"), os.O_RDWR, 0)
			must(t, err)
			rng := rand.New(rand.NewPCG(7, 8))
			buf := make([]byte, 3*PageSize)
			for i := range 6000 {
				n := 1 + rng.IntN(len(buf))
				off := rng.IntN(size - n)
				for j := range buf[:n] {
					buf[j] = byte(rng.Uint32())
				}
				_, err := f.WriteAt(buf[:n], int64(off))
				must(t, err)
				copy(model[off:], buf[:n])
				if i%1000 == 999 {
					got := make([]byte, size)
					_, err := f.ReadAt(got, 0)
					must(t, err)
					if !bytes.Equal(got, model) {
						t.Fatalf("after %d writes the file differs from what was written", i+1)
					}
				}
			}
			must(t, f.Close())
			mt.unmount()
			mt = mountOn(t, b, cfg)
			got, err := os.ReadFile(mt.path("f"))
			must(t, err)
			if !bytes.Equal(got, model) {
				t.Fatal("after remount the file differs from what was written")
			}
			var st syscall.Stat_t
			must(t, syscall.Stat(mt.path("f"), &st))
			v, err := b.meta.Get(context.Background(), inodeKey(st.Ino))
			must(t, err)
			if a, err := decodeInode(v); err != nil || !a.Paged {
				t.Errorf("the file's record: %+v, %v: no page records were written", a, err)
			}
			mt.unmount()
		})
	}
}
