package zdbconn

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zdb/client"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// blackhole accepts TCP connections and never answers: a server that hangs
// during the handshake. It counts the connections it accepted.
type blackhole struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
}

func newBlackhole(t *testing.T) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
	})
	return b
}

func (b *blackhole) addr() string { return b.ln.Addr().String() }

func ping(ctx context.Context, cl *client.Client) error { return cl.Ping(ctx) }

// One dial at a time, and nobody waits for it under a lock: while a dial
// hangs, Down and Close answer at once, concurrent callers share that dial
// (the server sees one connection), and a caller with a short deadline
// leaves at its deadline.
func TestHangingDialBlocksNobody(t *testing.T) {
	bh := newBlackhole(t)
	c := New(Options{
		Client:   client.Options{Addr: bh.addr(), Namespace: "ns", DialTimeout: 1500 * time.Millisecond},
		RetryMin: time.Minute,
		Logger:   slog.New(slog.DiscardHandler),
	})
	ctx := testCtx(t)
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := c.Client(ctx, false)
			errs <- err
		}()
	}
	deadline := time.Now().Add(time.Second)
	for bh.accepted.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no dial reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	if c.Down() {
		t.Error("Down during the first dial")
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := c.Client(short, false)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a caller with a 100 ms deadline got %v", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Down and a 100 ms call took %v while another dial hangs", took)
	}

	for range 5 {
		if err := <-errs; err == nil {
			t.Error("a dial to a hanging server succeeded")
		}
	}
	if n := bh.accepted.Load(); n != 1 {
		t.Errorf("5 concurrent callers opened %d connections, want 1 (single flight)", n)
	}
	// The failed dial started the back-off: calls are refused at once.
	if !c.Down() {
		t.Error("not down after a failed dial")
	}
	start = time.Now()
	if _, err := c.Client(ctx, false); !errors.Is(err, ErrDown) {
		t.Errorf("call during the back-off: %v, want ErrDown", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("refusing a call took %v", took)
	}

	// Close during a dial in progress returns at once too.
	go c.Client(ctx, true)
	for bh.accepted.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	start = time.Now()
	c.Close()
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Close took %v during a dial", took)
	}
}

// A client reconnects by itself after its server is killed and restarted:
// failures start a back-off that doubles (calls are refused meanwhile), a
// probe ignores it, and the first success ends it.
func TestReconnectBackoff(t *testing.T) {
	srv := zdbtest.Start(t)
	var addr atomic.Value
	addr.Store(srv.Addr())
	c := New(Options{
		Client: client.Options{
			Addr:        "zdb-under-test:1",
			DialTimeout: time.Second,
			IOTimeout:   2 * time.Second,
			Dialer: func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr.Load().(string))
			},
		},
		RetryMin: 300 * time.Millisecond,
		RetryMax: 5 * time.Second,
		Logger:   slog.New(slog.DiscardHandler),
	})
	defer c.Close()
	ctx := testCtx(t)
	if err := c.Do(ctx, false, ping); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	if err := c.Do(ctx, false, ping); err == nil || errors.Is(err, ErrDown) {
		t.Fatalf("ping of a killed server: %v, want a network error", err)
	}
	if !c.Down() {
		t.Fatal("not down after a failure")
	}
	var de *DownError
	err := c.Do(ctx, false, ping)
	if !errors.As(err, &de) || !errors.Is(err, ErrDown) {
		t.Fatalf("call during the back-off: %v, want a DownError", err)
	}
	if d := time.Until(de.Until); d <= 0 || d > 300*time.Millisecond {
		t.Errorf("first pause: %v left, want at most 300 ms", d)
	}
	// After the pause the next call tries again, fails, and pauses twice
	// as long.
	for c.Down() {
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Do(ctx, false, ping); err == nil || errors.Is(err, ErrDown) {
		t.Fatalf("ping after the pause: %v, want a network error", err)
	}
	if err := c.Do(ctx, false, ping); !errors.As(err, &de) {
		t.Fatalf("call during the second back-off: %v", err)
	}
	if d := time.Until(de.Until); d < 400*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("second pause: %v left, want about 600 ms", d)
	}

	srv.RestartAfterKill()
	addr.Store(srv.Addr())
	// Still in the back-off: a plain call is refused, a probe gets through
	// and ends it.
	if err := c.Do(ctx, false, ping); !errors.Is(err, ErrDown) {
		t.Fatalf("plain call in the back-off after the restart: %v", err)
	}
	if err := c.Do(ctx, true, ping); err != nil {
		t.Fatalf("probe after the restart: %v", err)
	}
	if c.Down() || c.LastError() != nil {
		t.Fatal("still down after a successful probe")
	}
	if err := c.Do(ctx, false, ping); err != nil {
		t.Fatal(err)
	}

	// Without probes, the plain calls find the server again on their own
	// once the pause is over.
	srv.RestartAfterKill()
	addr.Store(srv.Addr())
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := c.Do(ctx, false, ping)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnection 3 s after a restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An error reply proves the server reachable and does not start a back-off;
// a call its caller cancelled says nothing about the server.
func TestReportClassification(t *testing.T) {
	srv := zdbtest.Start(t)
	c := New(Options{Client: client.Options{Addr: srv.Addr()}, RetryMin: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	defer c.Close()
	ctx := testCtx(t)
	err := c.Do(ctx, false, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.Get(ctx, []byte("missing"))
		return err
	})
	if !errors.Is(err, client.ErrNotFound) || c.Down() {
		t.Fatalf("a missing key: %v, down=%v", err, c.Down())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Do(cctx, false, ping); err == nil || c.Down() {
		t.Fatalf("a cancelled call: %v, down=%v", err, c.Down())
	}
	c.Report(ctx, &client.OpError{Op: "GET", Addr: srv.Addr(), Err: errors.New("connection reset")})
	if !c.Down() {
		t.Fatal("a network error did not start the back-off")
	}
	c.Close()
	if _, err := c.Client(ctx, true); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
