package zdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Tests of online compaction (compact.go): space comes back, every live key
// and seq id survives, the files stay what 0-db loads, and a kill at any
// point of a compaction loses nothing.

func cpOptions(dir string) Options {
	return Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: MinDataSize, CompactRatio: -1, Logger: quietLogger()}
}

func cpOpen(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// cpModel is what a user-mode namespace must hold.
type cpModel struct {
	live    map[string][]byte
	deleted map[string]bool
}

func cpValue(r *rand.Rand, key string, ver int) []byte {
	v := make([]byte, 500+r.IntN(4000))
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	copy(v, fmt.Sprintf("%s/%d/", key, ver))
	return v
}

// cpChurn writes keys, overwrites them rounds times and deletes some.
func cpChurn(t testing.TB, ns *Namespace, r *rand.Rand, m *cpModel, keys, rounds int) {
	t.Helper()
	for round := 0; round < rounds; round++ {
		for i := 0; i < keys; i++ {
			k := "key-" + strconv.Itoa(i)
			if round > 0 && r.IntN(8) == 0 {
				if _, ok := m.live[k]; ok {
					if err := ns.Del([]byte(k), 0); err != nil {
						t.Fatal(err)
					}
					delete(m.live, k)
					m.deleted[k] = true
				}
				continue
			}
			v := cpValue(r, k, round)
			if _, err := ns.Set([]byte(k), v, 0); err != nil {
				t.Fatal(err)
			}
			m.live[k] = v
			delete(m.deleted, k)
		}
	}
}

// cpCheck verifies GET of every key, the key count, and that SCAN lists
// every live key exactly once.
func cpCheck(t testing.TB, ns *Namespace, m *cpModel) {
	t.Helper()
	for k, want := range m.live {
		got, err := ns.Get([]byte(k), nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("GET %s: err %v, %d bytes, want %d", k, err, len(got), len(want))
		}
	}
	for k := range m.deleted {
		if _, err := ns.Get([]byte(k), nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GET of deleted %s: %v, want not found", k, err)
		}
	}
	if ns.Len() != len(m.live) {
		t.Fatalf("Len = %d, want %d", ns.Len(), len(m.live))
	}
	seen := map[string]bool{}
	var cur []byte
	for {
		items, next, err := ns.Scan(cur, false, 1000)
		if errors.Is(err, ErrNoMoreData) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if seen[string(it.Key)] {
				t.Fatalf("SCAN lists %s twice", it.Key)
			}
			if _, ok := m.live[string(it.Key)]; !ok {
				t.Fatalf("SCAN lists %s, which is not live", it.Key)
			}
			seen[string(it.Key)] = true
		}
		cur = next
	}
	if len(seen) != len(m.live) {
		t.Fatalf("SCAN found %d keys, want %d", len(seen), len(m.live))
	}
}

func cpDirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && e.Name()[0] == 'd' {
			n += fi.Size()
		}
	}
	return n
}

// zeroDBLoad reads a namespace the way 0-db v2 loads it: index files i0,
// i1, … up to the first missing one, every entry applied in order, a
// deleted flag removing the key; in user mode an entry of i<N> points into
// d<N>, in seq mode at its dataid. It returns every live key's payload,
// read and CRC-checked from the data files.
func zeroDBLoad(t testing.TB, dir, ns string, seq bool) map[string][]byte {
	t.Helper()
	type at struct{ file, off, length, crc uint32 }
	live := map[string]at{}
	pos := uint64(0)
	for id := 0; ; id++ {
		raw, err := os.ReadFile(filepath.Join(dir, "index", ns, "i"+strconv.Itoa(id)))
		if errors.Is(err, os.ErrNotExist) {
			if id == 0 {
				t.Fatalf("0-db would find no i0 in %s", ns)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseIndexHeader(raw); err != nil {
			t.Fatalf("i%d: %v", id, err)
		}
		for off := IndexHeaderSize; off < len(raw); {
			e, n, err := ParseIndexEntry(raw[off:])
			if err != nil {
				t.Fatalf("i%d at %d: %v", id, off, err)
			}
			file, key := uint32(id), string(e.Key)
			if seq {
				// A seq id is the slot's position.
				file, key = e.DataID, string(seqKey(pos))
			}
			pos++
			if e.Flags&FlagDeleted != 0 {
				delete(live, key)
			} else {
				live[key] = at{file, e.DataOffset, e.Length, e.CRC}
			}
			off += n
		}
	}
	out := map[string][]byte{}
	for k, a := range live {
		f, err := os.Open(filepath.Join(dir, "data", ns, "d"+strconv.Itoa(int(a.file))))
		if err != nil {
			t.Fatalf("key %x: %v", k, err)
		}
		keyLen := len(k)
		hdr := make([]byte, DataEntryFixed+keyLen)
		if _, err := f.ReadAt(hdr, int64(a.off)); err != nil {
			t.Fatal(err)
		}
		h, err := ParseDataEntryHeader(hdr)
		if err != nil || h.Length != a.length || string(hdr[DataEntryFixed:]) != k {
			t.Fatalf("key %x: data entry at d%d:%d does not match (%v)", k, a.file, a.off, err)
		}
		p := make([]byte, a.length)
		if _, err := f.ReadAt(p, int64(a.off)+int64(len(hdr))); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if CRC(p) != a.crc {
			t.Fatalf("key %x: CRC mismatch", k)
		}
		out[k] = p
	}
	return out
}

func cpCheckZeroDB(t testing.TB, dir string, m *cpModel) {
	t.Helper()
	got := zeroDBLoad(t, dir, DefaultNamespace, false)
	if len(got) != len(m.live) {
		t.Fatalf("0-db's loader finds %d keys, want %d", len(got), len(m.live))
	}
	for k, v := range m.live {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("0-db's loader: key %s differs", k)
		}
	}
}

func TestCompactUserReclaims(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	e := cpOpen(t, opts)
	ns := e.Namespace(DefaultNamespace)
	r := rand.New(rand.NewPCG(1, 2))
	m := &cpModel{live: map[string][]byte{}, deleted: map[string]bool{}}
	cpChurn(t, ns, r, m, 300, 6)
	ns.mu.RLock()
	before := ns.cur
	ns.mu.RUnlock()

	// While it runs, a pass holds at most one victim's copies beside the
	// originals (each victim is retired before the next is copied): the
	// data files never grow by more than one file's worth.
	dataDir := filepath.Join(opts.DataDir, DefaultNamespace)
	start := cpDirBytes(t, dataDir)
	var peak int64
	compactHook = func(string) { peak = max(peak, cpDirBytes(t, dataDir)) }
	st, err := ns.Compact(context.Background())
	compactHook = nil
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("data files %d bytes before, %d at the peak of the pass", start, peak)
	if limit := start + int64(opts.DataSize); peak > limit {
		t.Fatalf("data files reached %d bytes during the pass, more than %d (before + one file)", peak, limit)
	}
	cpCheck(t, ns, m)
	live := ns.Usage().LiveBytes
	got := cpDirBytes(t, dataDir)
	t.Logf("compact: %d victims, %d retired, %d copied; data %d -> %d bytes, live %d",
		len(st.Victims), len(st.Retired), st.BytesCopied, st.BytesBefore, st.BytesAfter, live)
	if len(st.Retired) == 0 || st.Reclaimed() <= 0 {
		t.Fatalf("nothing reclaimed: %+v", st)
	}
	if float64(got) > 1.5*float64(live) {
		t.Fatalf("data files %d bytes after COMPACT, more than 1.5x the %d live bytes", got, live)
	}
	// Ids only grow; index files stay contiguous from i0 (0-db stops at the
	// first missing one); no data file is rewritten under its name.
	ids, _ := listIDs(filepath.Join(opts.IndexDir, DefaultNamespace), 'i')
	for i, id := range ids {
		if id != uint32(i) {
			t.Fatalf("index files not contiguous: %v", ids)
		}
	}
	ns.mu.RLock()
	after := ns.cur
	ns.mu.RUnlock()
	if after <= before {
		t.Fatalf("active file %d after compaction, was %d", after, before)
	}
	dids, _ := listIDs(dataDir, 'd')
	for _, id := range dids {
		if id <= before && id < after {
			for _, v := range st.Retired {
				if v == id {
					t.Fatalf("retired d%d still present", id)
				}
			}
		}
	}
	cpCheckZeroDB(t, dir, m)

	// Writes go on, and everything survives a restart.
	cpChurn(t, ns, r, m, 50, 2)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = cpOpen(t, opts)
	defer e.Close()
	cpCheck(t, e.Namespace(DefaultNamespace), m)
	cpCheckZeroDB(t, dir, m)
}

func TestCompactHistory(t *testing.T) {
	dir := t.TempDir()
	e := cpOpen(t, cpOptions(dir))
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	for v := 0; v < 3; v++ {
		if _, err := ns.Set([]byte("h"), []byte("version "+strconv.Itoa(v)), 0); err != nil {
			t.Fatal(err)
		}
		if err := ns.Jump(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ns.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The live version stays; the chain ends cleanly where compaction
	// dropped the versions before it.
	it, err := ns.History([]byte("h"), nil)
	if err != nil || string(it.Payload) != "version 2" {
		t.Fatalf("HISTORY h: %v %q", err, it.Payload)
	}
	for it.Parent != nil {
		it, err = ns.History([]byte("h"), it.Parent)
		if errors.Is(err, ErrNoMoreHistory) {
			break
		}
		if err != nil {
			t.Fatalf("HISTORY across a compacted version: %v", err)
		}
	}
}

func TestCompactHorizonKeepsRecentFiles(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	opts.CompactHorizon = time.Hour
	e := cpOpen(t, opts)
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	r := rand.New(rand.NewPCG(3, 4))
	m := &cpModel{live: map[string][]byte{}, deleted: map[string]bool{}}
	cpChurn(t, ns, r, m, 100, 4)
	st, err := ns.Compact(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Victims) != 0 || len(st.Retired) != 0 {
		t.Fatalf("files changed within the horizon were compacted: %+v", st)
	}
	cpCheck(t, ns, m)
}

func TestCompactSeqKeepsIDs(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	e := cpOpen(t, opts)
	if err := e.CreateNamespace("s"); err != nil {
		t.Fatal(err)
	}
	ns := e.Namespace("s")
	if err := ns.SetProperty("mode", "seq"); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	live := map[uint64][]byte{}
	var gone []uint64
	for i := 0; i < 400; i++ {
		v := cpValue(r, "s", i)
		k, err := ns.Set(nil, v, 0)
		if err != nil {
			t.Fatal(err)
		}
		live[binary.LittleEndian.Uint64(k)] = v
	}
	for round := 0; round < 4; round++ {
		for id := range live {
			switch r.IntN(6) {
			case 0:
				if err := ns.Del(seqKey(id), 0); err != nil {
					t.Fatal(err)
				}
				delete(live, id)
				gone = append(gone, id)
			default:
				v := cpValue(r, "u", round)
				if _, err := ns.Set(seqKey(id), v, 0); err != nil {
					t.Fatal(err)
				}
				live[id] = v
			}
		}
	}
	next := ns.NextID()
	check := func(ns *Namespace) {
		t.Helper()
		for id, want := range live {
			got, err := ns.Get(seqKey(id), nil)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("GET id %d after compaction: %v", id, err)
			}
		}
		for _, id := range gone {
			if _, err := ns.Get(seqKey(id), nil); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted id %d: %v", id, err)
			}
		}
		if ns.Len() != len(live) {
			t.Fatalf("Len %d, want %d", ns.Len(), len(live))
		}
	}
	st, err := ns.Compact(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Retired) == 0 {
		t.Fatalf("nothing retired: %+v", st)
	}
	check(ns)
	if ns.NextID() != next {
		t.Fatalf("next id moved from %d to %d", next, ns.NextID())
	}
	got := zeroDBLoad(t, dir, "s", true)
	if len(got) != len(live) {
		t.Fatalf("0-db's loader finds %d ids, want %d", len(got), len(live))
	}
	for id, v := range live {
		if !bytes.Equal(got[string(seqKey(id))], v) {
			t.Fatalf("0-db's loader: id %d differs", id)
		}
	}
	k, err := ns.Set(nil, []byte("new"), 0)
	if err != nil || binary.LittleEndian.Uint64(k) != next {
		t.Fatalf("new id %x, want %d (%v)", k, next, err)
	}
	live[next] = []byte("new")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = cpOpen(t, opts)
	defer e.Close()
	check(e.Namespace("s"))
}

// TestCompactConcurrent compacts while writers and readers run; every
// acknowledged write is there afterwards.
func TestCompactConcurrent(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	e := cpOpen(t, opts)
	ns := e.Namespace(DefaultNamespace)
	r := rand.New(rand.NewPCG(7, 8))
	m := &cpModel{live: map[string][]byte{}, deleted: map[string]bool{}}
	cpChurn(t, ns, r, m, 200, 4)

	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := "key-" + strconv.Itoa(r.IntN(250))
				mu.Lock()
				switch r.IntN(10) {
				case 0:
					if err := ns.Del([]byte(k), 0); err == nil {
						delete(m.live, k)
						m.deleted[k] = true
					} else if !errors.Is(err, ErrNotFound) {
						failed.Store(err)
					}
				case 1, 2, 3:
					v := cpValue(r, k, 100+i)
					if _, err := ns.Set([]byte(k), v, 0); err != nil {
						failed.Store(err)
					}
					m.live[k] = v
					delete(m.deleted, k)
				default:
					want, ok := m.live[k]
					got, err := ns.Get([]byte(k), nil)
					if ok && (err != nil || !bytes.Equal(got, want)) {
						failed.Store(fmt.Errorf("GET %s during compaction: %v", k, err))
					}
				}
				mu.Unlock()
			}
		}(w)
	}
	for i := 0; i < 3; i++ {
		if _, err := ns.Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	cpCheck(t, ns, m)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = cpOpen(t, opts)
	defer e.Close()
	cpCheck(t, e.Namespace(DefaultNamespace), m)
	cpCheckZeroDB(t, dir, m)
}

func TestCompactAutomatic(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	opts.CompactRatio = 0.5
	opts.CompactInterval = 50 * time.Millisecond
	e := cpOpen(t, opts)
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	r := rand.New(rand.NewPCG(10, 11))
	m := &cpModel{live: map[string][]byte{}, deleted: map[string]bool{}}
	cpChurn(t, ns, r, m, 200, 8)
	deadline := time.Now().Add(20 * time.Second)
	for {
		u := ns.Usage()
		if u.GarbageRatio <= 0.5 {
			if _, err := os.Stat(ns.dataPath(0)); err == nil {
				t.Fatal("d0 still there")
			}
			t.Logf("garbage ratio %.2f (%d data bytes, %d live)", u.GarbageRatio, u.DataBytes, u.LiveBytes)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("garbage ratio still %.2f", u.GarbageRatio)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cpCheck(t, ns, m)
}

// TestCompactCarriesTombstones: when an older file with dead bytes is kept
// (here: evicted, so absent), the tombstones of a compacted file are
// written again, since they shadow copies in the older file.
func TestCompactCarriesTombstones(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	e := cpOpen(t, opts)
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	for i := 0; i < 10; i++ {
		if _, err := ns.Set([]byte("old-"+strconv.Itoa(i)), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	ns.Jump() // d0 closed: old-* live there
	for i := 0; i < 10; i++ {
		if err := ns.Del([]byte("old-"+strconv.Itoa(i)), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.Set([]byte("new-"+strconv.Itoa(i)), []byte("a"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.Set([]byte("new-"+strconv.Itoa(i)), []byte("b"), 0); err != nil {
			t.Fatal(err)
		}
	}
	ns.Jump() // d1: tombstones of old-*, dead and live new-*
	// d0 is evicted (backed up elsewhere): it cannot be compacted now.
	if err := e.EvictDataFile(DefaultNamespace, 0); err != nil {
		t.Fatal(err)
	}
	st, err := ns.Compact(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Tombstones != 10 {
		t.Fatalf("%d tombstones carried, want 10 (%+v)", st.Tombstones, st)
	}
	for i := 0; i < 10; i++ {
		if got, err := ns.Get([]byte("new-"+strconv.Itoa(i)), nil); err != nil || string(got) != "b" {
			t.Fatalf("new-%d: %q %v", i, got, err)
		}
	}
}

// TestCompactCrash kills a process compacting a namespace at every point
// where the files change (compactHook), one point per round, and checks
// after each kill that the namespace opens, holds every key with its value
// (our loader and 0-db's), and compacts to the end on a second try.
func TestCompactCrash(t *testing.T) {
	// Small batches: many distinct states on disk.
	defer func(b, n int) { compactBatchBytes, compactBatchEntries = b, n }(compactBatchBytes, compactBatchEntries)
	compactBatchBytes, compactBatchEntries = 32<<10, 16
	if point := os.Getenv("ZDB_COMPACT_CRASH_AT"); point != "" {
		cpCrashChild(t, point)
		return
	}
	if testing.Short() {
		t.Skip("kills child processes at every compaction point")
	}
	for _, seq := range []bool{false, true} {
		name := "user"
		if seq {
			name = "seq"
		}
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			want := cpCrashBase(t, base, seq)
			for n := 1; ; n++ {
				dir := t.TempDir()
				ctCopyTree(t, base, dir)
				cmd := exec.Command(os.Args[0], "-test.run", "^TestCompactCrash$", "-test.v")
				cmd.Env = append(os.Environ(), "ZDB_COMPACT_CRASH_AT="+strconv.Itoa(n), "ZDB_COMPACT_DIR="+dir)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
				if err != nil && !killed {
					t.Fatalf("point %d: child failed: %v\n%s", n, err, out)
				}
				cpCrashVerify(t, dir, seq, want, n)
				if !killed {
					if n < 20 {
						t.Fatalf("only %d crash points reached", n)
					}
					t.Logf("%d crash points checked", n-1)
					return
				}
			}
		})
	}
}

// cpCrashBase builds a namespace with dead bytes in several closed files
// and returns what it must hold (keys as strings, seq ids as 8-byte keys).
func cpCrashBase(t *testing.T, dir string, seq bool) map[string][]byte {
	return cpCrashBaseN(t, dir, seq, 120)
}

func cpCrashBaseN(t *testing.T, dir string, seq bool, keys int) map[string][]byte {
	e := cpOpen(t, cpOptions(dir))
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	if seq {
		if err := ns.SetProperty("mode", "seq"); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(12, 13))
	want := map[string][]byte{}
	var written [][]byte
	for i := 0; i < keys; i++ {
		k := []byte("k" + strconv.Itoa(i))
		if seq {
			k = nil
		}
		v := cpValue(r, "k", i)
		got, err := ns.Set(k, v, 0)
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, got)
		want[string(got)] = v
	}
	for round := 0; round < 5; round++ {
		for _, k := range written {
			if _, ok := want[string(k)]; !ok {
				continue
			}
			if r.IntN(10) == 0 {
				if err := ns.Del(k, 0); err != nil {
					t.Fatal(err)
				}
				delete(want, string(k))
				continue
			}
			v := cpValue(r, "r", round)
			if _, err := ns.Set(k, v, 0); err != nil {
				t.Fatal(err)
			}
			want[string(k)] = v
		}
	}
	return want
}

func cpCrashChild(t *testing.T, point string) {
	n, _ := strconv.Atoi(point)
	dir := os.Getenv("ZDB_COMPACT_DIR")
	e := cpOpen(t, cpOptions(dir))
	count := 0
	compactHook = func(string) {
		count++
		if count == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	if _, err := e.Namespace(DefaultNamespace).Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	compactHook = nil
	e.Close()
}

func cpCrashVerify(t *testing.T, dir string, seq bool, want map[string][]byte, n int) {
	t.Helper()
	check := func(stage string) {
		e := cpOpen(t, cpOptions(dir))
		ns := e.Namespace(DefaultNamespace)
		for k, v := range want {
			got, err := ns.Get([]byte(k), nil)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("point %d, %s: key %x: %v", n, stage, k, err)
			}
		}
		if ns.Len() != len(want) {
			t.Fatalf("point %d, %s: %d keys, want %d", n, stage, ns.Len(), len(want))
		}
		if stage == "after the kill" {
			if _, err := ns.Compact(context.Background()); err != nil {
				t.Fatalf("point %d: compacting again: %v", n, err)
			}
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		got := zeroDBLoad(t, dir, DefaultNamespace, seq)
		if len(got) != len(want) {
			t.Fatalf("point %d, %s: 0-db's loader finds %d keys, want %d", n, stage, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("point %d, %s: 0-db's loader: key %x differs", n, stage, k)
			}
		}
	}
	check("after the kill")
	check("after compacting again")
}

// TestCompactFixture compacts every namespace of the data written by 0-db
// v2.0.7 and finds exactly the manifest's contents afterwards, after a
// restart, and through 0-db's own loading rule.
func TestCompactFixture(t *testing.T) {
	dir := copyFixture(t)
	m := readManifest(t)
	opts := Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: 1 << 20, CompactRatio: -1, Logger: quietLogger()}
	e := cpOpen(t, opts)
	retired := 0
	for name := range m.Namespaces {
		st, err := e.Namespace(name).Compact(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d victims, %d retired, %d bytes reclaimed", name, len(st.Victims), len(st.Retired), st.Reclaimed())
		retired += len(st.Retired)
	}
	if retired == 0 {
		t.Fatal("the fixture has overwrites and deletes, yet nothing was retired")
	}
	checkFixture(t, e, m)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = cpOpen(t, opts)
	checkFixture(t, e, m)
	e.Close()
	for name, want := range m.Namespaces {
		got := zeroDBLoad(t, dir, name, want.Mode == "seq" || want.Mode == "sequential")
		if len(got) != len(want.Live) {
			t.Fatalf("%s: 0-db's loader finds %d keys, want %d", name, len(got), len(want.Live))
		}
	}
}

// TestCompactReportsFiles: an embedding backup layer learns from events
// which files compaction closed (to store) and retired (to forget or
// replace), and a hook may use the namespace while it runs.
func TestCompactReportsFiles(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	var mu sync.Mutex
	var events []Event
	var ns *Namespace
	opts.Hooks = HookFunc(func(ctx context.Context, ev Event) error {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		if ns != nil {
			ns.Len() // would deadlock if called under the namespace lock
		}
		return nil
	})
	e := cpOpen(t, opts)
	defer e.Close()
	ns = e.Namespace(DefaultNamespace)
	r := rand.New(rand.NewPCG(14, 15))
	m := &cpModel{live: map[string][]byte{}, deleted: map[string]bool{}}
	cpChurn(t, ns, r, m, 200, 5)
	mu.Lock()
	events = nil
	mu.Unlock()
	st, err := ns.Compact(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	retired := map[string]bool{}
	closed := 0
	for _, ev := range events {
		switch ev.Kind {
		case EventFileRetired:
			retired[ev.Path] = true
		case EventFileClosed:
			closed++
		}
	}
	for _, v := range st.Retired {
		if !retired[ns.dataPath(v)] || !retired[ns.indexPath(v)] {
			t.Errorf("retired d%d/i%d not both reported: %v", v, v, retired)
		}
	}
	if closed == 0 {
		t.Error("no file-closed event for the files compaction filled")
	}
	if len(retired) != 2*len(st.Retired) {
		t.Errorf("%d retired events for %d files", len(retired), len(st.Retired))
	}
	cpCheck(t, ns, m)
}

// TestCompactCopiesAcrossRotation: when the copies of one batch straddle a
// rotation, a crash before the originals are flagged leaves a live copy in
// a closed index file beside its live original. Recovery must take the
// copy (same length, CRC and timestamp) and not call the key damaged. The
// state a kill -9 leaves at each point is the files as they are then (every
// write is a pwrite), so the directory is copied at every point.
func TestCompactCopiesAcrossRotation(t *testing.T) {
	defer func(b, n int) { compactBatchBytes, compactBatchEntries = b, n }(compactBatchBytes, compactBatchEntries)
	compactBatchBytes, compactBatchEntries = 64<<10, 32
	base := t.TempDir()
	want := cpCrashBaseN(t, base, false, 500) // about 1 MiB live: copies fill two data files
	e := cpOpen(t, cpOptions(base))
	ns := e.Namespace(DefaultNamespace)
	ns.mu.RLock()
	start := ns.cur
	ns.mu.RUnlock()
	var snaps []string
	compactHook = func(point string) {
		if point != "copies written" && point != "copies durable" {
			return
		}
		ns.mu.RLock()
		rotated := ns.cur > start+1 // past the rotation COMPACT starts with
		ns.mu.RUnlock()
		if rotated && len(snaps) < 6 {
			dir := t.TempDir()
			ctCopyTree(t, base, dir)
			snaps = append(snaps, dir)
		}
	}
	_, err := ns.Compact(context.Background())
	compactHook = nil
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if len(snaps) == 0 {
		t.Fatal("the copies never crossed a rotation")
	}
	for i, dir := range snaps {
		e := cpOpen(t, cpOptions(dir))
		ns := e.Namespace(DefaultNamespace)
		for k, v := range want {
			got, err := ns.Get([]byte(k), nil)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("snapshot %d: key %s: %v", i, k, err)
			}
		}
		if ns.Len() != len(want) {
			t.Fatalf("snapshot %d: %d keys, want %d", i, ns.Len(), len(want))
		}
		e.Close()
	}
}

// MergeFiles retires small files that hold no dead bytes: their entries
// move to the active file and stay readable, also after a restart (and
// for 0-db's loader).
func TestMergeFilesRetiresSmallLiveFiles(t *testing.T) {
	dir := t.TempDir()
	opts := cpOptions(dir)
	e := cpOpen(t, opts)
	ns := e.Namespace(DefaultNamespace)
	m := &cpModel{live: map[string][]byte{}, deleted: map[string]bool{}}
	var small []uint32
	for f := range 8 {
		for k := range 10 {
			key := fmt.Sprintf("f%d-k%d", f, k)
			v := bytes.Repeat([]byte(key), 50)
			if _, err := ns.Set([]byte(key), v, 0); err != nil {
				t.Fatal(err)
			}
			m.live[key] = v
		}
		small = append(small, ns.ActiveFileID())
		if err := ns.Jump(); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ns.MergeFiles(context.Background(), small)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Retired) != len(small) {
		t.Fatalf("retired %v of %v", st.Retired, small)
	}
	for _, id := range small {
		if _, err := os.Stat(filepath.Join(opts.DataDir, DefaultNamespace, fmt.Sprintf("d%d", id))); err == nil {
			t.Fatalf("d%d still there", id)
		}
	}
	cpCheck(t, ns, m)
	e.Close()
	e = cpOpen(t, opts)
	cpCheck(t, e.Namespace(DefaultNamespace), m)
	e.Close()
	cpCheckZeroDB(t, dir, m)
}
