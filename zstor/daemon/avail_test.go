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
