package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/zstortest"
)

// With exactly n backends and one down, a store through the daemon is
// written degraded; when the backend comes back at its address, the repair
// loop brings the object to n shards (without waiting RepairAfter: the
// missing shard has no copy anywhere).
func TestDegradedStoreRepairedWhenBackendReturns(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock))
	d := startInProcess(t, cfg, sock, testOptions()) // RepairAfter: 1 h
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)
	cl.Data[1].Kill()
	data := zstortest.RandomBytes(150 << 10)
	p := cl.WriteFile("deg", data)
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatalf("store with one of n backends down: %v", err)
	}
	rec, err := direct(t, cfg).Stat(ctx, "deg")
	if err != nil || !rec.Degraded() {
		t.Fatalf("record after a degraded store: %v", err)
	}
	time.Sleep(time.Second) // a few repair rounds with the backend still down
	if fullRedundancy(ctx, c, 1) {
		t.Fatal("full redundancy claimed while a backend is down")
	}
	cl.Data[1].RestartSamePort()
	waitFor(t, "full redundancy after the backend returned", 30*time.Second, func() bool { return fullRedundancy(ctx, c, 1) })
	waitLog(t, d.log, "zstor daemon: repaired", time.Second)
	if rec, err := direct(t, cfg).Stat(ctx, "deg"); err != nil || rec.Degraded() {
		t.Fatalf("record after repair: degraded, %v", err)
	}
	os.Remove(p)
	if _, err := c.Retrieve(ctx, filepath.Join(cl.Root, "deg"), zstor.RetrieveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ after repair")
	}
}

// The daemon collects garbage shards in the background, and keeps the
// live ones.
func TestGCLoop(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock))
	dc := direct(t, cfg)
	ctx := zstortest.Ctx(t)
	live := zstortest.RandomBytes(100 << 10)
	if _, err := dc.Store(ctx, cl.WriteFile("live", live), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for k, err := range dc.Meta().Keys(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		before[k] = true
	}
	if _, err := dc.Store(ctx, cl.WriteFile("crashed", zstortest.RandomBytes(100<<10)), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for k, err := range dc.Meta().Keys(ctx, "") {
		if err == nil && !before[k] {
			if err := dc.Meta().Delete(ctx, k); err != nil { // a crash before the commit
				t.Fatal(err)
			}
		}
	}
	entries := func() int64 {
		var n int64
		for _, h := range dc.Backends().HealthAll(ctx) {
			n += h.Entries
		}
		return n
	}
	full := entries()
	o := testOptions()
	o.GCInterval, o.GCGrace, o.GCPause = 300*time.Millisecond, time.Second, time.Millisecond
	d := startInProcess(t, cfg, sock, o)
	waitFor(t, "the orphaned shards collected", 30*time.Second, func() bool { return entries() == full/2 })
	waitLog(t, d.log, "garbage collection done", time.Second)
	os.Remove(filepath.Join(cl.Root, "live"))
	if _, err := dc.Retrieve(ctx, filepath.Join(cl.Root, "live"), zstor.RetrieveOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(cl.Root, "live")); !bytes.Equal(got, live) {
		t.Fatal("live object differs after gc")
	}
}
