package zdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// backupFetcher is a Fetcher over copies of data files kept in dir
// (dir/<namespace>/d<N>), as a backup layer would keep them remotely.
type backupFetcher struct {
	dir       string
	wholeOnly bool          // FetchRange answers errors.ErrUnsupported
	gate      chan struct{} // when set, fetches wait until it is closed
	fail      error         // when set, every fetch fails with it

	mu     sync.Mutex
	ranges []string // "ns id off len" of each FetchRange call that fetched
	files  []string // "ns id path" of each FetchFile call
}

func (b *backupFetcher) backup(t *testing.T, e *Engine, ns string, id uint32) {
	t.Helper()
	raw, err := os.ReadFile(e.Namespace(ns).dataPath(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(b.dir, ns), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, ns, fmt.Sprintf("d%d", id)), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (b *backupFetcher) wait(ctx context.Context) error {
	if b.gate == nil {
		return nil
	}
	select {
	case <-b.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *backupFetcher) FetchRange(ctx context.Context, ns string, id uint32, off int64, p []byte) error {
	if b.wholeOnly {
		return fmt.Errorf("ranges: %w", errors.ErrUnsupported)
	}
	b.mu.Lock()
	b.ranges = append(b.ranges, fmt.Sprintf("%s %d %d %d", ns, id, off, len(p)))
	b.mu.Unlock()
	if err := b.wait(ctx); err != nil {
		return err
	}
	if b.fail != nil {
		return b.fail
	}
	f, err := os.Open(filepath.Join(b.dir, ns, fmt.Sprintf("d%d", id)))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(p, off)
	return err
}

func (b *backupFetcher) FetchFile(ctx context.Context, ns string, id uint32, path string) error {
	b.mu.Lock()
	b.files = append(b.files, fmt.Sprintf("%s %d %s", ns, id, path))
	b.mu.Unlock()
	if err := b.wait(ctx); err != nil {
		return err
	}
	if b.fail != nil {
		return b.fail
	}
	return restoreFile(filepath.Join(b.dir, ns, fmt.Sprintf("d%d", id)), path)
}

// restoreFile copies src to dst through a temporary file and a rename, so
// that dst is complete when it appears.
func restoreFile(src, dst string) error {
	raw, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst+".part", raw, 0o600); err != nil {
		return err
	}
	return os.Rename(dst+".part", dst)
}

func (b *backupFetcher) calls() (ranges, files []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.ranges...), append([]string(nil), b.files...)
}

func value(key string, n int) []byte {
	return bytes.Repeat([]byte(key+"."), n/(len(key)+1)+1)[:n]
}

// mustSet stores key = value(key, n).
func mustSet(t *testing.T, ns *Namespace, key string, n int) {
	t.Helper()
	if _, err := ns.Set([]byte(key), value(key, n), 0); err != nil {
		t.Fatal(err)
	}
}

func mustJump(t *testing.T, ns *Namespace) {
	t.Helper()
	if err := ns.Jump(); err != nil {
		t.Fatal(err)
	}
}

// expectGet checks GET key = value(key, n).
func expectGet(t *testing.T, ns *Namespace, key string, n int) {
	t.Helper()
	v, err := ns.Get([]byte(key), nil)
	if err != nil || !bytes.Equal(v, value(key, n)) {
		t.Errorf("GET %s: %d bytes, %v", key, len(v), err)
	}
}

// payloadAt is where key's payload lies: "ns id offset length", as the
// fetcher records a range.
func payloadAt(ns *Namespace, key string) string {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	loc, _ := ns.idx.Get([]byte(key))
	return fmt.Sprintf("%s %d %d %d", ns.name, loc.DataID, int64(loc.DataOffset)+DataEntryFixed+int64(len(key)), loc.Length)
}

// TestEvictFreesSpaceAndFetchesRanges: evicting a closed data file that a
// read had opened gives its space back to the filesystem at once (the
// handle is closed), and later reads of it (GET, CHECK, HISTORY) are
// served by the Fetcher with exactly their payload's range, without
// bringing the file back. The active file is refused.
func TestEvictFreesSpaceAndFetchesRanges(t *testing.T) {
	dir := mountTmpfs(t, "8m")
	bf := &backupFetcher{dir: t.TempDir()}
	e := openWith(t, dir, func(o *Options) { o.DataSize = 1 << 20; o.Fetcher = bf })
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	const n = 300 << 10
	for _, k := range []string{"a0", "a1", "a2"} {
		mustSet(t, ns, k, n)
	}
	mustJump(t, ns)
	mustSet(t, ns, "b", 10)
	bf.backup(t, e, DefaultNamespace, 0)
	expectGet(t, ns, "a1", n) // d0 is open now

	before := diskFree(dir)
	if err := e.EvictDataFile(DefaultNamespace, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ns.dataPath(0)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("d0 still there: %v", err)
	}
	if freed := int64(diskFree(dir)) - int64(before); freed < 3*n {
		t.Errorf("evicting d0 freed %d bytes, want at least %d", freed, 3*n)
	}

	want := []string{payloadAt(ns, "a1"), payloadAt(ns, "a2"), payloadAt(ns, "a0")}
	expectGet(t, ns, "a1", n)
	if c, err := ns.Check([]byte("a2")); c != 1 || err != nil {
		t.Errorf("CHECK a2 = %d, %v", c, err)
	}
	h, err := ns.History([]byte("a0"), nil)
	if err != nil || !bytes.Equal(h.Payload, value("a0", n)) {
		t.Errorf("HISTORY a0: %d bytes, %v", len(h.Payload), err)
	}
	ranges, files := bf.calls()
	if strings.Join(ranges, ",") != strings.Join(want, ",") || len(files) != 0 {
		t.Errorf("fetched ranges %q files %q, want ranges %q", ranges, files, want)
	}
	if _, err := os.Stat(ns.dataPath(0)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a range fetch brought d0 back: %v", err)
	}

	if err := e.EvictDataFile(DefaultNamespace, 1); !errors.Is(err, ErrActiveDataFile) {
		t.Errorf("evicting the active file: %v", err)
	}
	if err := e.EvictDataFile(DefaultNamespace, 7); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("evicting a file that does not exist yet: %v", err)
	}
	if err := e.EvictDataFile("nope", 0); !errors.Is(err, ErrNamespaceNotFound) {
		t.Errorf("evicting in an unknown namespace: %v", err)
	}
	if err := e.EvictDataFile(DefaultNamespace, 0); err != nil {
		t.Errorf("evicting an absent file again: %v", err)
	}
	expectGet(t, ns, "b", 10)
}

// evictedEngine has a default namespace with a0, a1 (and an older a0
// version) in d0, b in closed d1, c in the active d2, and namespace
// "other" with o; d0 is backed up in bf and evicted.
func evictedEngine(t *testing.T, bf *backupFetcher, set func(*Options)) (*Engine, *Namespace) {
	t.Helper()
	e := openWith(t, t.TempDir(), func(o *Options) {
		if bf != nil {
			o.Fetcher = bf
		}
		if set != nil {
			set(o)
		}
	})
	closeLater(t, e)
	ns := e.Namespace(DefaultNamespace)
	mustSet(t, ns, "a0", 1000)
	mustSet(t, ns, "a1", 2000)
	mustJump(t, ns)
	mustSet(t, ns, "b", 3000)
	mustJump(t, ns)
	mustSet(t, ns, "c", 4000)
	if err := e.CreateNamespace("other"); err != nil {
		t.Fatal(err)
	}
	mustSet(t, e.Namespace("other"), "o", 5000)
	if bf != nil {
		bf.backup(t, e, DefaultNamespace, 0)
	}
	if err := e.EvictDataFile(DefaultNamespace, 0); err != nil {
		t.Fatal(err)
	}
	return e, ns
}

// waitWaiters waits until the fetch call of the range or file that find
// names has n readers waiting.
func waitWaiters(t *testing.T, ns *Namespace, what string, n int, find func() *fetchCall) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ns.filesMu.Lock()
		c := find()
		got := 0
		if c != nil {
			got = c.waiters
		}
		ns.filesMu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d readers waiting, want %d", what, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rangeOf(ns *Namespace, key string) rangeKey {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	loc, _ := ns.idx.Get([]byte(key))
	return rangeKey{loc.DataID, int64(loc.DataOffset) + DataEntryFixed + int64(len(key)), int(loc.Length)}
}

// TestFetchBlocksOnlyItsReaders: while the Fetcher is stuck on a range of
// an evicted file, the readers of that range (and of another range of the
// same file) wait and share one fetch per range, and every other request
// goes on: a key in a present closed file, in the active file, in another
// namespace, a SET. A reader whose context ends stops waiting without
// ending the fetch for the others.
func TestFetchBlocksOnlyItsReaders(t *testing.T) {
	bf := &backupFetcher{dir: t.TempDir(), gate: make(chan struct{})}
	e, ns := evictedEngine(t, bf, nil)
	type result struct {
		key string
		v   []byte
		err error
	}
	results := make(chan result, 8)
	get := func(key string) {
		v, err := ns.Get([]byte(key), nil)
		results <- result{key, v, err}
	}
	for i := 0; i < 5; i++ {
		go get("a0")
	}
	go get("a1")
	ra0, ra1 := rangeOf(ns, "a0"), rangeOf(ns, "a1")
	waitWaiters(t, ns, "range of a0", 5, func() *fetchCall { return ns.ranges[ra0] })
	waitWaiters(t, ns, "range of a1", 1, func() *fetchCall { return ns.ranges[ra1] })

	quick := func(what string, fn func() error) {
		t.Helper()
		start := time.Now()
		within(t, 5*time.Second, what, func() {
			if err := fn(); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v while a fetch was stuck", what, d)
		}
	}
	expect := func(ns *Namespace, key string, n int) func() error {
		return func() error {
			v, err := ns.Get([]byte(key), nil)
			if err != nil || !bytes.Equal(v, value(key, n)) {
				return fmt.Errorf("GET %s: %d bytes, %v", key, len(v), err)
			}
			return nil
		}
	}
	quick("GET of a key in a present closed file", expect(ns, "b", 3000))
	quick("GET of a key in the active file", expect(ns, "c", 4000))
	quick("GET in another namespace", expect(e.Namespace("other"), "o", 5000))
	quick("SET in the same namespace", func() error { _, err := ns.Set([]byte("d"), []byte("v"), 0); return err })
	quick("CHECK of a present key", func() error {
		if c, err := ns.Check([]byte("b")); c != 1 || err != nil {
			return fmt.Errorf("CHECK b = %d, %v", c, err)
		}
		return nil
	})

	// A reader that gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := ns.GetContext(ctx, []byte("a0"), nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrInternal) {
		t.Errorf("GET a0 with a deadline: %v", err)
	}
	select {
	case r := <-results:
		t.Fatalf("GET %s returned while its fetch was stuck: %v", r.key, r.err)
	default:
	}

	close(bf.gate)
	for i := 0; i < 6; i++ {
		r := <-results
		n := map[string]int{"a0": 1000, "a1": 2000}[r.key]
		if r.err != nil || !bytes.Equal(r.v, value(r.key, n)) {
			t.Errorf("GET %s: %d bytes, %v", r.key, len(r.v), r.err)
		}
	}
	ranges, _ := bf.calls()
	if len(ranges) != 2 {
		t.Errorf("%d range fetches for two ranges: %q", len(ranges), ranges)
	}
}

// TestFetchFileWhenRangesUnsupported: a Fetcher that can only restore
// whole files gets one FetchFile for all the concurrent readers of the
// file; the file is back afterwards and served locally.
func TestFetchFileWhenRangesUnsupported(t *testing.T) {
	bf := &backupFetcher{dir: t.TempDir(), wholeOnly: true, gate: make(chan struct{})}
	_, ns := evictedEngine(t, bf, nil)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		key := []string{"a0", "a1"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			expectGet(t, ns, key, map[string]int{"a0": 1000, "a1": 2000}[key])
		}()
	}
	waitWaiters(t, ns, "file d0", 4, func() *fetchCall { return ns.fetching[0] })
	close(bf.gate)
	within(t, 10*time.Second, "readers of the restored file", wg.Wait)
	_, files := bf.calls()
	if want := "default 0 " + ns.dataPath(0); len(files) != 1 || files[0] != want {
		t.Errorf("FetchFile calls %q, want [%q]", files, want)
	}
	if _, err := os.Stat(ns.dataPath(0)); err != nil {
		t.Errorf("d0 not restored: %v", err)
	}
	expectGet(t, ns, "a0", 1000)
	if _, files := bf.calls(); len(files) != 1 {
		t.Errorf("a read after the restore fetched again: %q", files)
	}
}

// TestMissingDataFailures: an absent file that nothing brings back (no
// Fetcher, no hook; or a failing Fetcher) answers ErrInternal to GET and
// -1 to CHECK, and the error keeps its causes (the absent file, the
// fetcher's error).
func TestMissingDataFailures(t *testing.T) {
	t.Run("nothing-fetches", func(t *testing.T) {
		_, ns := evictedEngine(t, nil, nil)
		_, err := ns.Get([]byte("a0"), nil)
		var code Error
		if !errors.Is(err, ErrInternal) || !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &code) || code != ErrInternal {
			t.Errorf("GET a0: %v", err)
		}
		if c, err := ns.Check([]byte("a0")); c != -1 || err != nil {
			t.Errorf("CHECK a0 = %d, %v", c, err)
		}
		expectGet(t, ns, "b", 3000)
	})
	t.Run("fetcher-fails", func(t *testing.T) {
		boom := errors.New("backend unreachable")
		bf := &backupFetcher{dir: t.TempDir(), fail: boom}
		_, ns := evictedEngine(t, bf, nil)
		_, err := ns.Get([]byte("a1"), nil)
		if !errors.Is(err, ErrInternal) || !errors.Is(err, boom) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("GET a1: %v", err)
		}
		if c, err := ns.Check([]byte("a1")); c != -1 || err != nil {
			t.Errorf("CHECK a1 = %d, %v", c, err)
		}
	})
	t.Run("fetcher-returns-other-bytes", func(t *testing.T) {
		bf := &backupFetcher{dir: t.TempDir()}
		_, ns := evictedEngine(t, bf, nil)
		// The backup of d0 is corrupt: the CRC catches it.
		path := filepath.Join(bf.dir, DefaultNamespace, "d0")
		raw, _ := os.ReadFile(path)
		for i := DataHeaderSize; i < len(raw); i++ {
			raw[i] ^= 0xff
		}
		os.WriteFile(path, raw, 0o600)
		if _, err := ns.Get([]byte("a0"), nil); !errors.Is(err, ErrInternal) {
			t.Errorf("GET a0 from a corrupt backup: %v", err)
		}
		if c, _ := ns.Check([]byte("a0")); c != 0 {
			t.Errorf("CHECK a0 from a corrupt backup = %d, want 0", c)
		}
	})
}

// TestMissingDataHook: without a Fetcher, an in-process hook receives
// EventMissingData (namespace, file id, path) and restores the file; the
// read is retried and served. A hook that fails makes the read fail.
func TestMissingDataHook(t *testing.T) {
	backup := filepath.Join(t.TempDir(), "d0")
	var log eventLog
	var fail atomic.Bool
	_, ns := evictedEngine(t, nil, func(o *Options) {
		o.Hooks = HookFunc(func(ctx context.Context, ev Event) error {
			if ev.Kind != EventMissingData {
				if ev.Kind == EventFileClosed && ev.FileID == 0 {
					// The upload point: keep a copy of d0.
					raw, err := os.ReadFile(ev.Path)
					if err != nil {
						return err
					}
					return os.WriteFile(backup, raw, 0o600)
				}
				return nil
			}
			log.add(ev)
			if fail.Load() {
				return errors.New("cannot restore")
			}
			return restoreFile(backup, ev.Path)
		})
	})
	fail.Store(true)
	if _, err := ns.Get([]byte("a0"), nil); !errors.Is(err, ErrInternal) {
		t.Errorf("GET a0 with a failing hook: %v", err)
	}
	fail.Store(false)
	expectGet(t, ns, "a0", 1000)
	evs := log.list()
	want := Event{Kind: EventMissingData, Namespace: DefaultNamespace, FileID: 0, Path: ns.dataPath(0)}
	if len(evs) != 2 || fmt.Sprint(evs[0]) != fmt.Sprint(want) || fmt.Sprint(evs[1]) != fmt.Sprint(want) {
		t.Errorf("missing-data events %+v, want twice %+v", evs, want)
	}
	expectGet(t, ns, "a1", 2000)
	if len(log.list()) != 2 {
		t.Errorf("the restored file was fetched again")
	}
}

// openDataFDs counts this process's descriptors open on files of dir.
func openDataFDs(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ent := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", ent.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(os.PathSeparator)) {
			n++
		}
	}
	return n
}

// TestDataFileLRU: at most MaxOpenDataFiles closed data files stay open;
// a handle pushed out of the LRU while a read holds it stays usable until
// released, then is closed; closeDataFile closes and forgets a handle.
func TestDataFileLRU(t *testing.T) {
	dir := t.TempDir()
	e := openWith(t, dir, func(o *Options) { o.MaxOpenDataFiles = 2 })
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	for i := 0; i < 5; i++ {
		mustSet(t, ns, fmt.Sprintf("k%d", i), 100+i)
		mustJump(t, ns)
	}
	dataDir := filepath.Join(dir, "data", DefaultNamespace)
	for i := 0; i < 5; i++ {
		expectGet(t, ns, fmt.Sprintf("k%d", i), 100+i)
	}
	if n := openDataFDs(t, dataDir); n != 3 { // two closed files and the active one
		t.Errorf("%d data files open, want 2 closed + the active one", n)
	}
	ns.filesMu.RLock()
	_, has3 := ns.open.files[3]
	_, has4 := ns.open.files[4]
	ns.filesMu.RUnlock()
	if !has3 || !has4 {
		t.Errorf("the two most recently read files are not the open ones")
	}

	// A reader holds d0 while reads of other files push it out.
	f, h, err := ns.dataFile(0)
	if err != nil {
		t.Fatal(err)
	}
	expectGet(t, ns, "k1", 101)
	expectGet(t, ns, "k2", 102)
	ns.filesMu.RLock()
	_, has0 := ns.open.files[0]
	ns.filesMu.RUnlock()
	if has0 {
		t.Fatal("d0 still in the LRU")
	}
	hdr := make([]byte, DataHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr[:4]) != DataMagic {
		t.Fatalf("reading a held handle pushed out of the LRU: %v", err)
	}
	h.release()
	if _, err := f.ReadAt(hdr, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("after the last release the handle is not closed: %v", err)
	}

	ns.closeDataFile(2)
	ns.closeDataFile(9) // not open: nothing to do
	if n := openDataFDs(t, dataDir); n != 2 {
		t.Errorf("after closeDataFile(2): %d data files open, want 2", n)
	}
	expectGet(t, ns, "k2", 102) // opened again
}

// TestCloseReportsFailures: Engine.Close returns the first failure to
// write, sync or close a file instead of nil.
func TestCloseReportsFailures(t *testing.T) {
	t.Run("final-commit-on-a-full-disk", func(t *testing.T) {
		dir := mountTmpfs(t, "1m")
		e := openWith(t, dir, nil)
		ns := e.Namespace(DefaultNamespace)
		// Buffered, not yet written: Close must write it.
		if _, _, err := ns.SetDeferred([]byte("k"), make([]byte, 64<<10), 0); err != nil {
			t.Fatal(err)
		}
		fill, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 4096)
		for {
			if _, err := fill.Write(chunk); err != nil {
				break
			}
		}
		fill.Close()
		err = e.Close()
		if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("Close on a full disk: %v", err)
		}
	})
	t.Run("file-closed-under-it", func(t *testing.T) {
		e := openWith(t, t.TempDir(), nil)
		ns := e.Namespace(DefaultNamespace)
		mustSet(t, ns, "k", 10)
		ns.mu.Lock()
		ns.indexFiles[ns.cur].Close()
		ns.mu.Unlock()
		if err := e.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Close with its index file closed under it: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestCloseCancelsFetches: Engine.Close cancels the context of a fetch in
// flight, waits for it, and the reader waiting for it gets the error.
func TestCloseCancelsFetches(t *testing.T) {
	bf := &backupFetcher{dir: t.TempDir(), gate: make(chan struct{})} // never opened
	e, ns := evictedEngine(t, bf, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := ns.Get([]byte("a0"), nil)
		errc <- err
	}()
	ra0 := rangeOf(ns, "a0")
	waitWaiters(t, ns, "range of a0", 1, func() *fetchCall { return ns.ranges[ra0] })
	within(t, 10*time.Second, "Close with a fetch in flight", func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := <-errc; !errors.Is(err, ErrInternal) || !errors.Is(err, context.Canceled) {
		t.Errorf("GET a0 cut by Close: %v", err)
	}
	if _, err := ns.fetchRange(context.Background(), 0, ra0.off, ra0.n); !errors.Is(err, errEngineClosed) {
		t.Errorf("a fetch after Close: %v", err)
	}
}
