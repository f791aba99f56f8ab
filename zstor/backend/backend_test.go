package backend

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zdb/client"
	"qss/zstor/config"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// seqNS starts a zdb with a password-protected seq-mode namespace.
func seqNS(t *testing.T) config.Backend {
	srv := zdbtest.Start(t, "--mode", "seq")
	ctx := testCtx(t)
	c, err := client.New(ctx, client.Options{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.NSNew(ctx, "shards"); err != nil {
		t.Fatal(err)
	}
	if err := c.NSSet(ctx, "shards", "password", "pw"); err != nil {
		t.Fatal(err)
	}
	return config.Backend{Address: srv.Addr(), Namespace: "shards", Password: "pw"}
}

// hangingServer accepts connections and never answers.
func hangingServer(t *testing.T) (addr string, accepted *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
			accepted.Add(1)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), accepted
}

// A backend whose server hangs while a connection is being set up blocks
// nobody else: the placement's and the read order's Down() of that backend,
// shard writes to the other backends, and Close all answer at once. (The
// data backends used to hold their mutex across the dial, so Down() waited
// for the dial timeout.)
func TestHangingBackendBlocksNobody(t *testing.T) {
	good := seqNS(t)
	hang, accepted := hangingServer(t)
	s := New([]config.Group{{Backends: []config.Backend{{Address: hang, Namespace: "shards"}, good}}},
		Options{DialTimeout: 3 * time.Second, IOTimeout: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	bad, ok := s.All()[0], s.All()[1]
	ctx := testCtx(t)

	putErr := make(chan error, 1)
	go func() {
		_, err := bad.Put(ctx, []byte("shard"))
		putErr <- err
	}()
	for accepted.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the dial is in its setup, waiting for the server

	start := time.Now()
	if bad.Down() {
		t.Error("down before its first failure")
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("Down() of the hanging backend took %v", took)
	}
	start = time.Now()
	id, err := ok.Put(ctx, []byte("another shard"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ok.Get(ctx, id); err != nil || string(v) != "another shard" {
		t.Fatalf("get back: %q %v", v, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("put and get on the healthy backend took %v while the other hangs", took)
	}
	select {
	case err := <-putErr:
		t.Fatalf("the put to the hanging backend ended early: %v", err)
	default:
	}
	if err := <-putErr; err == nil {
		t.Fatal("a put to a hanging server succeeded")
	}
	if !bad.Down() {
		t.Error("not down after its dial timed out")
	}
	start = time.Now()
	if _, err := bad.Put(ctx, []byte("x")); !errors.Is(err, ErrDown) {
		t.Errorf("put during the back-off: %v, want ErrDown", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("refusing took %v", took)
	}
	hs := s.HealthAll(ctx)
	if hs[0].Reachable || !hs[1].Reachable {
		t.Errorf("health: hanging reachable=%v, healthy reachable=%v", hs[0].Reachable, hs[1].Reachable)
	}
}

// A data backend reconnects after its zdb is killed and restarted at the
// same address, with no call to Connect: the first call after the back-off
// (or a probe at once) dials again, and the shards written before are read
// back.
func TestBackendReconnects(t *testing.T) {
	dir := t.TempDir()
	srv := zdbtest.StartIn(t, dir, "--mode", "seq")
	// The restarted zdb gets a new port: a proxy keeps the configured
	// address.
	var target atomic.Value
	target.Store(srv.Addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target.Load().(string))
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
			}()
		}
	}()
	s := New([]config.Group{{Backends: []config.Backend{{Address: ln.Addr().String()}}}},
		Options{DownFor: 200 * time.Millisecond, MaxDownFor: time.Second, DialTimeout: time.Second, IOTimeout: 2 * time.Second,
			Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	b := s.All()[0]
	ctx := testCtx(t)
	id, err := b.Put(ctx, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	if _, err := b.Get(ctx, id); err == nil {
		t.Fatal("get from a killed zdb succeeded")
	}
	if h := b.Health(ctx); h.Reachable || !errors.Is(h.Err, ErrDown) {
		t.Fatalf("health during the back-off: reachable=%v err=%v", h.Reachable, h.Err)
	}
	srv.RestartAfterKill()
	target.Store(srv.Addr())
	if h := b.Probe(ctx); !h.Reachable {
		t.Fatalf("probe after the restart: %v", h.Err)
	}
	if v, err := b.Get(ctx, id); err != nil || string(v) != "before" {
		t.Fatalf("get after the restart: %q %v", v, err)
	}

	// And without a probe: calls find it again once the pause is over.
	srv.RestartAfterKill()
	target.Store(srv.Addr())
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := b.Put(ctx, []byte("after"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnection 3 s after a restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
