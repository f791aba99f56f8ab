package qsfs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/config"
	"qss/zstor/zstortest"
)

// testRemote starts six data backends and four metadata backends (real
// zdb processes) and returns a zstor Remote over them.
func testRemote(t *testing.T) (*zstortest.Cluster, *ZstorRemote) {
	t.Helper()
	cl := zstortest.New(t, 6)
	return cl, remoteFor(t, cl)
}

func remoteFor(t *testing.T, cl *zstortest.Cluster) *ZstorRemote {
	t.Helper()
	cfg, err := config.Parse([]byte(cl.ConfigTOML(zstortest.TestKey, "")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := zstor.Open(context.Background(), cfg, zstor.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewZstorRemote(c)
}

func quietLogger() *slog.Logger {
	if os.Getenv("QSFS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func testOptions(dir string, r Remote) Options {
	return Options{Dir: dir, CacheSize: 64 << 20, RPO: 2 * time.Second, DataFileSize: 1 << 20,
		GCGrace: time.Hour, BackpressureWait: 5 * time.Second, Remote: r, Logger: quietLogger()}
}

func value(i, size int) []byte {
	b := bytes.Repeat([]byte(fmt.Sprintf("value-%06d|", i)), size/12+1)
	return b[:size]
}

func writeKeys(t *testing.T, n *Node, from, to, size int) {
	t.Helper()
	ns := n.Engine().Namespace(DataNamespace)
	for i := from; i < to; i++ {
		if _, err := ns.Set([]byte(fmt.Sprintf("key-%06d", i)), value(i, size), 0); err != nil {
			t.Fatal(err)
		}
	}
	n.noteWrite()
}

func checkKeys(t *testing.T, n *Node, from, to, size int) {
	t.Helper()
	ns := n.Engine().Namespace(DataNamespace)
	for i := from; i < to; i++ {
		got, err := ns.GetContext(context.Background(), []byte(fmt.Sprintf("key-%06d", i)), nil)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if !bytes.Equal(got, value(i, size)) {
			t.Fatalf("key %d: wrong bytes", i)
		}
	}
}

// checkKeysShuffled is checkKeys in a random order (no sequential run:
// range reads only).
func checkKeysShuffled(t *testing.T, n *Node, from, to, size int) {
	t.Helper()
	ns := n.Engine().Namespace(DataNamespace)
	for _, i := range rand.Perm(to - from) {
		i += from
		got, err := ns.GetContext(context.Background(), []byte(fmt.Sprintf("key-%06d", i)), nil)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if !bytes.Equal(got, value(i, size)) {
			t.Fatalf("key %d: wrong bytes", i)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// A synced node lost with its disk comes back from the backends alone.
func TestSyncThenRestoreOnAnEmptyDirectory(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	dir := t.TempDir()
	n, err := Open(ctx, testOptions(dir, r))
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, n, 0, 300, 16<<10)
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if rpo := n.RPO(); rpo != 0 {
		t.Fatalf("RPO after sync: %v, want 0", rpo)
	}
	n.crash()
	n.eng.Close()

	dir2 := t.TempDir()
	res, err := Restore(ctx, testOptions(dir2, r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.DataFiles == 0 {
		t.Fatalf("restore: %+v", res)
	}
	n2, err := Open(ctx, testOptions(dir2, r))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close(ctx)
	checkKeysShuffled(t, n2, 0, 300, 16<<10)
	if n2.Stats().Fetches.Load() == 0 {
		t.Fatal("no data was fetched: the restore brought data files back eagerly?")
	}
	// Range reads: the evicted files were read in place.
	if n2.Stats().FetchBytes.Load() == 0 {
		t.Fatal("no range reads")
	}
	// Writes go on after a restore, and reach the backends.
	writeKeys(t, n2, 300, 320, 16<<10)
	if err := n2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// A fresh directory refuses backends that hold a filesystem.
func TestOpenRefusesBackendsHoldingAFilesystem(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	n, err := Open(ctx, testOptions(t.TempDir(), r))
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, n, 0, 10, 1000)
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	n.Close(ctx)
	if _, err := Open(ctx, testOptions(t.TempDir(), r)); err == nil {
		t.Fatal("a new filesystem was opened over backends holding one")
	}
}

// Local use stays within the cap (plus one data file) after writing four
// times the cap, and everything reads back.
func TestCacheCapHolds(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	dir := t.TempDir()
	o := testOptions(dir, r)
	o.CacheSize = 8 << 20
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	const size = 64 << 10
	count := int(4 * o.CacheSize / size)
	ns := n.Engine().Namespace(DataNamespace)
	peak := int64(0)
	for i := range count {
		if err := n.admit(ctx, size); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.Set([]byte(fmt.Sprintf("key-%06d", i)), value(i, size), 0); err != nil {
			t.Fatal(err)
		}
		n.noteWrite()
		if i%16 == 0 {
			peak = max(peak, duDir(t, dir))
		}
	}
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	peak = max(peak, duDir(t, dir))
	if limit := o.CacheSize + o.DataFileSize; peak > limit {
		t.Fatalf("local use peaked at %d bytes, cap %d + one data file", peak, o.CacheSize)
	}
	if n.Stats().Evictions.Load() == 0 {
		t.Fatal("nothing was evicted")
	}
	checkKeys(t, n, 0, count, size)
	t.Logf("peak %d bytes for cap %d; %d evictions, %d fetches", peak, o.CacheSize, n.Stats().Evictions.Load(), n.Stats().Fetches.Load())
}

func duDir(t *testing.T, dir string) int64 {
	var total int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return nil
	})
	return total
}

// Overwrites keep local and remote space bounded: compaction reclaims
// local files (evicted ones are fetched back when mostly dead), and the
// objects no stored point needs are deleted after the grace period.
func TestOverwritesKeepSpaceBounded(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	dir := t.TempDir()
	o := testOptions(dir, r)
	o.CacheSize = 6 << 20
	o.GCGrace = 300 * time.Millisecond
	o.CompactInterval = 100 * time.Millisecond
	reclaimEvery = 100 * time.Millisecond
	defer func() { reclaimEvery = 10 * time.Second }()
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	const keys, size, rounds = 128, 64 << 10, 6
	live := int64(keys * size)
	ns := n.Engine().Namespace(DataNamespace)
	for round := range rounds {
		for i := range keys {
			if err := n.admit(ctx, size); err != nil {
				t.Fatal(err)
			}
			if _, err := ns.Set([]byte(fmt.Sprintf("key-%06d", i)), value(i*1000+round, size), 0); err != nil {
				t.Fatal(err)
			}
			n.noteWrite()
		}
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Everything written is 6x the live data; wait for compaction and gc
	// to bring the remote under 4x (it settles near 2.8x; without the
	// reclaim of evicted files it stays near 5.8x).
	var remote int64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		n.collect()
		_, remote, _ = n.st.totals()
		if remote <= 4*live {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("live %d, remote %d bytes after %d rounds; local %d", live, remote, rounds, n.scanUsage())
	if remote > 4*live {
		t.Fatalf("remote holds %d bytes for %d live after %d overwrites of everything", remote, live, rounds)
	}
	for i := range keys {
		got, err := ns.GetContext(ctx, []byte(fmt.Sprintf("key-%06d", i)), nil)
		if err != nil || !bytes.Equal(got, value(i*1000+rounds-1, size)) {
			t.Fatalf("key %d: %v", i, err)
		}
	}
}

// With n−k data backends lost every key still reads (evicted data comes
// from the remaining k), and repair brings every object back to n shards
// once a replacement backend (empty, at a lost one's address) is there.
func TestLoseTwoBackendsThenRepair(t *testing.T) {
	cl, r := testRemote(t)
	ctx := ctxT(t)
	o := testOptions(t.TempDir(), r)
	o.CacheSize = 4 << 20
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	const keys, size = 160, 64 << 10 // 10 MiB: most of it evicted
	for i := range keys {
		if err := n.admit(ctx, size); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Engine().Namespace(DataNamespace).Set([]byte(fmt.Sprintf("key-%06d", i)), value(i, size), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Stats().Evictions.Load() == 0 {
		t.Fatal("nothing evicted")
	}
	before, err := r.Census(ctx)
	if err != nil || before.Objects == 0 || before.Lowest != before.Expected || before.LossesSurvivable() != before.Expected-before.Needed {
		t.Fatalf("census with every backend up: %+v (%v)", before, err)
	}
	cl.Data[1].Stop()
	cl.Data[4].Stop()
	var after Redundancy
	for range 50 { // the clients see the loss at their next request
		if after, err = r.Census(ctx); err == nil && after.Lowest < before.Expected {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := max(before.LossesSurvivable()-2, 0); err != nil || after.LossesSurvivable() != want || after.ByShards[fmt.Sprint(before.Expected-2)] == 0 {
		t.Fatalf("census with two backends down: %+v (%v), want %d losses survivable", after, err, want)
	}
	checkKeys(t, n, 0, keys, size)
	if n.Stats().Fetches.Load() == 0 {
		t.Fatal("no fetch from the remaining backends")
	}
	st := n.Status(ctx)
	if len(st.AtRisk) == 0 {
		t.Fatalf("two backends down and nothing at risk: %+v", st)
	}
	// A replacement: an empty zdb at the address of backend 1.
	os.RemoveAll(cl.Data[1].Dir)
	os.MkdirAll(cl.Data[1].Dir, 0o700)
	cl.Data[1].RestartSamePort()
	zstortest.CreateNS(t, cl.Data[1].Addr(), zstortest.DataNS, zstortest.DataPass, "")
	cl.Data[4].RestartSamePort()
	// Until every backend is usable again (their clients back off for a
	// second after a failure), a repair may leave some objects short.
	var rs RepairState
	repaired := 0
	low, exp := 0, 0
	for range 30 {
		rs = n.Repair(ctx, r)
		repaired += rs.Repaired
		low, exp, err = r.Redundancy(ctx)
		// Done once a pass finds nothing left to repair.
		if err == nil && rs.Error == "" && low == exp && rs.Repaired == 0 && repaired > 0 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if repaired == 0 || low != exp {
		t.Fatalf("after repair (%d objects; last %+v) the lowest redundancy is %d of %d (%v)", repaired, rs, low, exp, err)
	}
	// Backends 2 and 3 go: still readable through the repaired shards.
	cl.Data[2].Stop()
	cl.Data[3].Stop()
	for _, ns := range namespaces {
		for id := uint32(0); id < n.Engine().Namespace(ns).ActiveFileID(); id++ {
			n.Engine().EvictDataFile(ns, id)
		}
	}
	checkKeys(t, n, 0, keys, size)
}

// A slow writer (a cut after every few writes) leaves small files; they
// are merged so that their number stays bounded, and nothing is lost.
func TestSmallFilesAreMerged(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	dir := t.TempDir()
	o := testOptions(dir, r)
	o.CacheSize = 16 << 20
	reclaimEvery = 50 * time.Millisecond
	mergeAbove, mergeBatch = 8, 4
	defer func() { reclaimEvery, mergeAbove, mergeBatch = 10*time.Second, 32, 16 }()
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 30 {
		writeKeys(t, n, round*5, round*5+5, 4<<10)
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	smallFiles := func() int {
		count := 0
		active := n.Engine().Namespace(DataNamespace).ActiveFileID()
		for id := uint32(0); id < active; id++ {
			name := dataName(DataNamespace, id)
			if o, ok := n.st.stored(name); ok && !n.st.retired(name) && o.Size < n.opts.DataFileSize/4 {
				count++
			}
		}
		return count
	}
	deadline := time.Now().Add(20 * time.Second)
	for smallFiles() > mergeAbove+mergeBatch && time.Now().Before(deadline) {
		if err := n.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := smallFiles(); got > mergeAbove+mergeBatch {
		t.Fatalf("%d small data files left after 30 cuts", got)
	}
	checkKeys(t, n, 0, 150, 4<<10)
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	n.Close(ctx)
	dir2 := t.TempDir()
	if _, err := Restore(ctx, testOptions(dir2, r), nil); err != nil {
		t.Fatal(err)
	}
	n2, err := Open(ctx, testOptions(dir2, r))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close(ctx)
	checkKeys(t, n2, 0, 150, 4<<10)
}

// Writes a crash left in the active file (the engine's "changed" flag is
// in memory only) are in the first point cut after the restart: a sync
// right after it and the loss of the disk lose nothing.
func TestWritesInTheActiveFileAtACrashAreStoredAfterTheRestart(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	dir := t.TempDir()
	o := testOptions(dir, r)
	o.RPO = time.Hour
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	writeKeys(t, n, 0, 10, 1000)
	// Stopping with uploads queued returns (the uploaders used to retry
	// a job whose context was done in a loop that never ended).
	stopped := make(chan struct{})
	go func() { n.crash(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		// Not t.Fatal: the spinning loop would go on eating memory.
		panic("the node did not stop within 3 s with uploads queued")
	}
	n.eng.Close()

	n, err = Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	n.crash()
	n.eng.Close()

	dir2 := t.TempDir()
	if _, err := Restore(ctx, testOptions(dir2, r), nil); err != nil {
		t.Fatal(err)
	}
	n2, err := Open(ctx, testOptions(dir2, r))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close(ctx)
	checkKeys(t, n2, 0, 10, 1000)
}

// A write bigger than the room left, arriving while local use sits between
// the evictor's low and high marks, gets its room: the evictor makes space
// for what waiting writes need, not only above the high mark. (zdbfs
// flushes blocks in batches of several MiB: with a small cache such a batch
// waited for an eviction that never came, and failed with ENOSPC forever.)
func TestAdmitMakesRoomBelowTheHighMark(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	o := testOptions(t.TempDir(), r)
	o.CacheSize = 8 << 20
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	const size = 64 << 10
	ns := n.Engine().Namespace(DataNamespace)
	low, high := int64(evictLow*float64(o.CacheSize)), int64(evictHigh*float64(o.CacheSize))
	for i := 0; n.scanUsage() < (low+high)/2; i++ {
		if err := n.admit(ctx, size); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.Set([]byte(fmt.Sprintf("key-%06d", i)), value(i, size), 0); err != nil {
			t.Fatal(err)
		}
		n.noteWrite()
	}
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	used := n.scanUsage()
	if used <= low || used > high {
		t.Fatalf("set-up: local use %d is not between the marks %d and %d", used, low, high)
	}
	need := o.CacheSize - used + 256<<10 // just more than the room left
	start := time.Now()
	if err := n.admit(ctx, int(need)); err != nil {
		t.Fatalf("a write of %d bytes with %d of %d used: %v", need, used, o.CacheSize, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the write waited %v for room", took)
	}
	if n.Stats().Evictions.Load() == 0 {
		t.Fatal("nothing was evicted")
	}
}

// Resident reports a key in an evicted data file as remote, one in the
// active file as local, and a key that is not stored as unknown.
func TestResidentFollowsEviction(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	n, err := Open(ctx, testOptions(t.TempDir(), r))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	writeKeys(t, n, 0, 4, 4<<10)
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	writeKeys(t, n, 4, 8, 4<<10)
	old, fresh := [][]byte{[]byte("key-000001")}, [][]byte{[]byte("key-000005")}
	if remote, known := n.Resident(old); remote || !known {
		t.Fatalf("before eviction: remote %v known %v", remote, known)
	}
	ns := n.Engine().Namespace(DataNamespace)
	for id := uint32(0); id < ns.ActiveFileID(); id++ {
		n.Engine().EvictDataFile(DataNamespace, id)
	}
	if remote, known := n.Resident(old); !remote || !known {
		t.Fatalf("after eviction: remote %v known %v", remote, known)
	}
	if remote, known := n.Resident(fresh); remote || !known {
		t.Fatalf("a key in the active file: remote %v known %v", remote, known)
	}
	if _, known := n.Resident([][]byte{[]byte("absent")}); known {
		t.Fatal("a key that is not stored is known")
	}
	// Reads fetch ranges without bringing the file back: still remote.
	checkKeys(t, n, 0, 8, 4<<10)
	if remote, _ := n.Resident(old); !remote {
		t.Fatal("local after a range read")
	}
}

// The live RPO never reads 0 while a point holding the oldest write not
// yet stored is being cut: a client waiting for "RPO 0" would think the
// write stored (TestRPOKillNineRestore lost a file to this once).
func TestRPONeverZeroDuringACut(t *testing.T) {
	_, r := testRemote(t)
	ctx := ctxT(t)
	o := testOptions(t.TempDir(), r)
	o.RPO = time.Hour // no cut but ours
	n, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	zeros := 0
	for round := range 50 {
		writeKeys(t, n, round*4, round*4+4, 16<<10)
		done := make(chan error, 1)
		go func() { _, err := n.cut(false); done <- err }()
		for {
			rpo := n.RPO()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			default:
				// The cut had not returned when the RPO was read: its
				// point could not be stored yet.
				if rpo == 0 {
					zeros++
				}
				continue
			}
			break
		}
	}
	if zeros > 0 {
		t.Fatalf("the live RPO read 0 %d times while a write was not stored", zeros)
	}
}
