package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/config"
	"qss/zstor/zstortest"
)

// zstor gc reports the garbage with --dry-run, deletes it without, and
// keeps the live objects.
func TestGCCommand(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	live := zstortest.RandomBytes(50 << 10)
	p := cl.WriteFile("live", live)
	zstorRun(t, cfg, "store", "-f", p).ok(t)

	// A store that crashed before its commit: shards, no record.
	conf, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := zstortest.Ctx(t)
	c, err := zstor.Open(ctx, conf, zstor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := map[string]bool{}
	for k := range c.Meta().Keys(ctx, "") {
		before[k] = true
	}
	if _, err := c.Store(ctx, cl.WriteFile("crashed", []byte("lost")), zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for k := range c.Meta().Keys(ctx, "") {
		if !before[k] {
			c.Meta().Delete(ctx, k)
		}
	}
	time.Sleep(2100 * time.Millisecond)

	zstorRun(t, cfg, "gc", "--grace", "0s").fails(t, 2, "--grace must be positive")
	r := zstorRun(t, cfg, "gc", "--grace", "1s", "--dry-run").ok(t)
	if !strings.Contains(r.stdout, "would delete 6 garbage shards") {
		t.Fatalf("dry run: %q", r.stdout)
	}
	r = zstorRun(t, cfg, "gc", "--grace", "1s").ok(t)
	if !strings.Contains(r.stdout, "deleted 6 garbage shards") {
		t.Fatalf("gc: %q", r.stdout)
	}
	r = zstorRun(t, cfg, "gc", "--grace", "1s").ok(t)
	if !strings.Contains(r.stdout, "deleted 0 garbage shards") {
		t.Fatalf("second gc: %q", r.stdout)
	}
	os.Remove(p)
	zstorRun(t, cfg, "retrieve", "-f", p).ok(t)
	if got, _ := os.ReadFile(filepath.Join(cl.Root, "live")); !bytes.Equal(got, live) {
		t.Fatal("live file differs after gc")
	}
}
