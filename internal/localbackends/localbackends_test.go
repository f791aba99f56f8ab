package localbackends

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	qconfig "qss/qsfs/config"
	"qss/zdb/client"
	"qss/zstor"
	"qss/zstor/config"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// quiet logs warnings and errors only, into the test's output.
func quiet(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func key(t *testing.T) string {
	var k [32]byte
	rand.Read(k[:])
	return hex.EncodeToString(k[:])
}

// Six backends carry a zstor deployment: store, retrieve, lose one, get it
// back on the same address.
func TestZstorOverLocalBackends(t *testing.T) {
	ctx := ctxFor(t)
	dir := t.TempDir()
	set, err := Start(ctx, dir, 6, Options{DataSize: 1 << 20, Logger: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })

	bs := set.Backends()
	seen := map[string]bool{}
	for i, b := range bs {
		if !strings.HasPrefix(b.Address, "127.0.0.1:") || strings.HasSuffix(b.Address, ":0") || seen[b.Address] {
			t.Errorf("backend %d address %q", i, b.Address)
		}
		seen[b.Address] = true
		if b.DataNamespace != DataNamespace || len(b.DataPassword) < 16 {
			t.Errorf("backend %d data namespace %+v", i, b)
		}
		if hasMeta := b.MetaNamespace != ""; hasMeta != (i < 4) || hasMeta && b.MetaPassword == "" {
			t.Errorf("backend %d meta namespace %+v", i, b)
		}
		if b.Dir != filepath.Join(dir, "backend-"+string(rune('0'+i))) {
			t.Errorf("backend %d dir %s", i, b.Dir)
		}
	}

	cfg, err := config.Parse([]byte(set.ZstorConfig(4, 6, key(t))))
	if err != nil {
		t.Fatalf("ZstorConfig does not parse: %v\n%s", err, set.ZstorConfig(4, 6, "k"))
	}
	if len(cfg.Meta.Backends) != 4 || len(cfg.Backends()) != 6 {
		t.Fatalf("config has %d meta and %d data backends", len(cfg.Meta.Backends), len(cfg.Backends()))
	}
	open := func() *zstor.Client {
		t.Helper()
		zc, err := zstor.Open(ctx, cfg, zstor.Options{Logger: quiet(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { zc.Close() })
		return zc
	}
	zc := open()

	files := t.TempDir()
	content := make([]byte, 300<<10)
	rand.Read(content)
	path := filepath.Join(files, "f1")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := zc.Store(ctx, path, zstor.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.MinShards != 6 {
		t.Errorf("stored with %d shards per chunk, want 6", res.MinShards)
	}
	retrieve := func(what string) {
		t.Helper()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if _, err := zc.Retrieve(ctx, path, zstor.RetrieveOptions{}); err != nil {
			t.Fatalf("retrieve %s: %v", what, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("retrieve %s: content differs (%v)", what, err)
		}
	}
	retrieve("with all backends")

	// Lose a backend that holds data and metadata.
	addr := bs[1].Address
	if err := set.Stop(1); err != nil {
		t.Fatal(err)
	}
	if set.Running(1) {
		t.Error("Running after Stop")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("backend 1 still accepts connections on %s after Stop", addr)
	}
	retrieve("with backend 1 stopped")

	if err := set.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := set.Backend(1); got != bs[1] {
		t.Errorf("after Restart backend 1 is %+v, was %+v", got, bs[1])
	}
	// Its shards are back: readable with two other backends gone (by a
	// fresh client: the first one waits out its retry delay for backend 1).
	zc = open()
	for _, i := range []int{4, 5} {
		if err := set.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	retrieve("with backends 4 and 5 stopped and 1 restarted")
	for _, i := range []int{4, 5} {
		if err := set.Restart(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
}

// The namespaces are set up as zstor needs them: passwords required, data
// in seq mode, metadata in user mode; admin commands need the admin password.
func TestNamespaces(t *testing.T) {
	ctx := ctxFor(t)
	set, err := Start(ctx, t.TempDir(), 1, Options{Logger: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	b := set.Backend(0)
	dial := func(o client.Options) *client.Client {
		t.Helper()
		o.Addr = b.Address
		c, err := client.New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refused := func(o client.Options) bool {
		o.Addr = b.Address
		c, err := client.New(ctx, o)
		if err != nil {
			return true
		}
		defer c.Close()
		_, err = c.SetSeq(ctx, []byte("x"))
		return err != nil
	}
	if !refused(client.Options{Namespace: b.DataNamespace, Password: "wrong"}) {
		t.Error("data namespace written with a wrong password")
	}
	if !refused(client.Options{Namespace: b.DataNamespace}) {
		t.Error("data namespace written without a password")
	}
	if _, err := dial(client.Options{Namespace: b.DataNamespace, Password: b.DataPassword}).SetSeq(ctx, []byte("shard")); err != nil {
		t.Errorf("seq write to the data namespace: %v", err)
	}
	meta := dial(client.Options{Namespace: b.MetaNamespace, Password: b.MetaPassword})
	if _, _, err := meta.Set(ctx, []byte("k"), []byte("v")); err != nil {
		t.Errorf("user-key write to the metadata namespace: %v", err)
	}
	if err := dial(client.Options{}).NSNew(ctx, "intruder"); err == nil {
		t.Error("NSNEW without the admin password")
	}
	if err := dial(client.Options{AdminPassword: set.AdminPassword()}).NSNew(ctx, "allowed"); err != nil {
		t.Errorf("NSNEW with the admin password: %v", err)
	}
}

// A Set started again on the same directory and addresses finds its
// namespaces and passwords: a config written for the first run still works.
func TestStartAgain(t *testing.T) {
	ctx := ctxFor(t)
	dir := t.TempDir()
	set, err := Start(ctx, dir, 2, Options{Logger: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	first := set.Backends()
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	set, err = Start(ctx, dir, 2, Options{Addresses: []string{first[0].Address, first[1].Address}, Logger: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if again := set.Backends(); again[0] != first[0] || again[1] != first[1] {
		t.Errorf("second start %+v, first %+v", again, first)
	}
}

func TestStartErrors(t *testing.T) {
	ctx := ctxFor(t)
	if _, err := Start(ctx, t.TempDir(), 0, Options{Logger: quiet(t)}); err == nil {
		t.Error("Start of 0 backends")
	}
	// A taken address: an error, and nothing left running.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	dir := t.TempDir()
	_, err = Start(short, dir, 2, Options{Addresses: []string{"", l.Addr().String()}, Logger: quiet(t)})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "backend 1") {
		t.Fatalf("Start on a taken address: %v", err)
	}
	// Backend 0 was closed: its directories are unlocked, a new Set opens them.
	set, err := Start(ctx, dir, 1, Options{Logger: quiet(t)})
	if err != nil {
		t.Fatalf("backend 0 left locked: %v", err)
	}
	set.Close()
}

// ZstorConfig is the zstor part of a qsfs.toml, as `qsfs demo` writes it.
func TestZstorConfigInQsfsTemplate(t *testing.T) {
	ctx := ctxFor(t)
	set, err := Start(ctx, t.TempDir(), 6, Options{Logger: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	data, err := qconfig.Template(qconfig.TemplateOptions{Zstor: set.ZstorConfig(4, 6, key(t)), Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := qconfig.Parse(data, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Zstor.Backends(); len(got) != 6 || got[5].Address != set.Backend(5).Address || got[5].Password != set.Backend(5).DataPassword {
		t.Errorf("data backends %v", got)
	}
}
