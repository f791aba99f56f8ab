package zdbfs

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zdb"
	"qss/zdb/client"
)

// backend is one Store implementation under test: a real zdb process over
// RESP ("client"), or the in-process engine ("engine").
type backend struct {
	kind       string
	srv        *zdbtest.Server
	addr       atomic.Value // current server address (it changes on restart)
	eng        *zdb.Engine
	engDir     string
	meta, data Store
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func newBackend(t *testing.T, kind string) *backend {
	t.Helper()
	return newBackendIn(t, kind, t.TempDir())
}

// newBackendIn is newBackend with the zdb files (or the engine's) under
// dir, for tests that need them on a filesystem of their own.
func newBackendIn(t *testing.T, kind, dir string) *backend {
	t.Helper()
	b := &backend{kind: kind}
	if kind == "engine" {
		b.engDir = dir
		b.openEngine(t)
		t.Cleanup(func() { b.eng.Close() })
		return b
	}
	b.srv = zdbtest.StartIn(t, dir)
	b.addr.Store(b.srv.Addr())
	ctx := context.Background()
	admin, err := client.New(ctx, client.Options{Addr: b.srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, ns := range []string{"meta", "data"} {
		if err := admin.NSNew(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	b.meta, b.data = b.clientStore(t, "meta"), b.clientStore(t, "data")
	return b
}

func (b *backend) openEngine(t *testing.T) {
	eng, err := zdb.Open(zdb.Options{DataDir: filepath.Join(b.engDir, "data"),
		IndexDir: filepath.Join(b.engDir, "index"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	b.eng = eng
	for _, ns := range []string{"meta", "data"} {
		if eng.Namespace(ns) == nil {
			if err := eng.CreateNamespace(ns); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.meta, b.data = NewEngineStore(eng.Namespace("meta")), NewEngineStore(eng.Namespace("data"))
}

// clientStore dials whatever address the server has now, so that a
// restarted server (new port) is found again.
func (b *backend) clientStore(t *testing.T, ns string) Store {
	c, err := client.New(context.Background(), client.Options{
		Addr: b.srv.Addr(), Namespace: ns, DialTimeout: 2 * time.Second, IOTimeout: 10 * time.Second,
		Dialer: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", b.addr.Load().(string))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewClientStore(c)
}

// mounted is a filesystem mounted under a test directory.
type mounted struct {
	t   *testing.T
	m   *Mount
	Dir string
}

func mountOn(t *testing.T, b *backend, cfg Config) *mounted {
	t.Helper()
	return mountAt(t, b, cfg, t.TempDir(), MountOptions{})
}

// mountAt mounts a filesystem on dir with the given mount options.
func mountAt(t *testing.T, b *backend, cfg Config, dir string, mo MountOptions) *mounted {
	t.Helper()
	cfg.Meta, cfg.Data = b.meta, b.data
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	ctx := context.Background()
	f, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := MountFS(ctx, f, dir, mo)
	if err != nil {
		f.Close(ctx)
		t.Fatal(err)
	}
	mt := &mounted{t: t, m: m, Dir: dir}
	t.Cleanup(func() { mt.forceUnmount() })
	return mt
}

func (mt *mounted) forceUnmount() {
	if mt.m == nil {
		return
	}
	exec.Command("fusermount3", "-u", "-z", mt.Dir).Run()
	exec.Command("umount", "-l", mt.Dir).Run()
	mt.m.server.Wait()
	mt.m.close(context.Background())
	mt.m = nil
}

// unmount is a clean unmount; it fails the test on error (and then
// unmounts by force, so that nothing stays mounted).
func (mt *mounted) unmount() {
	mt.t.Helper()
	if err := mt.m.Unmount(); err != nil {
		mt.forceUnmount()
		mt.t.Fatalf("unmount: %v", err)
	}
	mt.m = nil
}

func (mt *mounted) path(p string) string { return filepath.Join(mt.Dir, p) }

var backends = []string{"client", "engine"}
