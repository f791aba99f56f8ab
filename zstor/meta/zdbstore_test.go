package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zdb/client"
	"qss/zstor/config"
	"qss/zstor/pipeline"
)

// testSealer seals the test records: the real metadata sealer under a
// fixed key.
var testSealer Sealer = pipeline.NewMetaSealer(pipeline.MasterKey(bytes.Repeat([]byte{0x42}, 32)))

// testEnv is the envelope codec of testSealer.
var testEnv = envelope{sealer: testSealer}

// testLogger discards logs unless META_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("META_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// proxy forwards TCP connections to a target that can change: zdbtest
// restarts a server on a new port, and the store under test must find it
// again at the address it was configured with.
type proxy struct {
	ln     net.Listener
	target atomic.Value // string
	frozen atomic.Bool  // hold every byte and every new connection
	done   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// freeze makes the backend hang: connections stay open, nothing answers.
func (p *proxy) freeze() { p.frozen.Store(true) }

// hold blocks while the proxy is frozen; false means it was closed.
func (p *proxy) hold() bool {
	for p.frozen.Load() {
		if p.done.Load() {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return !p.done.Load()
}

// pipe copies src to dst, holding the bytes while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.hold() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, conns: make(map[net.Conn]struct{})}
	p.target.Store(target)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) Addr() string            { return p.ln.Addr().String() }
func (p *proxy) setTarget(target string) { p.target.Store(target) }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *proxy) handle(c net.Conn) {
	defer c.Close()
	p.track(c, true)
	defer p.track(c, false)
	if !p.hold() {
		return
	}
	up, err := net.DialTimeout("tcp", p.target.Load().(string), time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	p.track(up, true)
	defer p.track(up, false)
	go func() {
		p.pipe(up, c)
		up.Close()
		c.Close()
	}()
	p.pipe(c, up)
}

func (p *proxy) close() {
	p.done.Store(true)
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// metaBackend is a zdb process with a password-protected user-mode
// namespace "meta", reached through a proxy with a stable address.
type metaBackend struct {
	srv *zdbtest.Server
	px  *proxy
	cfg config.Backend
}

const testNS = "meta"

// startBackends starts n zdb processes and returns them with their config.
func startBackends(t testing.TB, n int) ([]*metaBackend, []config.Backend) {
	t.Helper()
	ctx := context.Background()
	var bs []*metaBackend
	var cfgs []config.Backend
	for i := range n {
		srv := zdbtest.Start(t)
		admin, err := client.New(ctx, client.Options{Addr: srv.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		pw := fmt.Sprintf("pw-%d", i)
		if err := admin.NSNew(ctx, testNS); err != nil {
			t.Fatal(err)
		}
		if err := admin.NSSet(ctx, testNS, "password", pw); err != nil {
			t.Fatal(err)
		}
		admin.Close()
		px := newProxy(t, srv.Addr())
		b := &metaBackend{srv: srv, px: px, cfg: config.Backend{Address: px.Addr(), Namespace: testNS, Password: pw}}
		bs = append(bs, b)
		cfgs = append(cfgs, b.cfg)
	}
	return bs, cfgs
}

// restart brings a killed backend back on its old files.
func (b *metaBackend) restart() {
	b.srv.RestartAfterKill()
	b.px.setTarget(b.srv.Addr())
}

// direct opens a client on the backend's namespace, bypassing the store.
func (b *metaBackend) direct(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.Options{Addr: b.srv.Addr(), Namespace: testNS, Password: b.cfg.Password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// raw returns the decoded envelope a backend holds for key under prefix p,
// or nil.
func (b *metaBackend) raw(t *testing.T, p, key string) *record {
	t.Helper()
	data, err := b.direct(t).Get(context.Background(), []byte(p+"/"+key))
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	rec, err := testEnv.decode(key, data, 0)
	if err != nil {
		t.Fatalf("backend record for %q: %v", key, err)
	}
	return &rec
}

// fastOpts make dead backends cheap and revived ones quickly used again.
func fastOpts() []ZDBOption {
	return []ZDBOption{
		WithTimeouts(500*time.Millisecond, 2*time.Second),
		WithRetry(50*time.Millisecond, 200*time.Millisecond),
		WithLogger(testLogger()),
		WithSealer(testSealer),
	}
}

func newTestZDB(t *testing.T, cfgs []config.Backend, prefix string, opts ...ZDBOption) *ZDB {
	t.Helper()
	s, err := NewZDB(context.Background(), cfgs, prefix, append(fastOpts(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// settle waits for background replica writes and read repairs.
func (s *ZDB) settle() { s.wg.Wait() }

func collectKeys(t *testing.T, s Store, prefix string) []string {
	t.Helper()
	var keys []string
	for k, err := range s.Keys(context.Background(), prefix) {
		if err != nil {
			t.Fatalf("Keys(%q): %v", prefix, err)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func mustPut(t *testing.T, s Store, key, value string) {
	t.Helper()
	if err := s.Put(context.Background(), key, []byte(value)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s Store, key, want string) {
	t.Helper()
	got, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func mustNotFound(t *testing.T, s Store, key string) {
	t.Helper()
	if v, err := s.Get(context.Background(), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func mustDelete(t *testing.T, s Store, key string) {
	t.Helper()
	if err := s.Delete(context.Background(), key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
}

// storeContract is what every Store must do with all its backends up; it
// runs against the zdb and the etcd stores.
func storeContract(t *testing.T, s Store) {
	ctx := context.Background()
	mustNotFound(t, s, "a/1")
	mustPut(t, s, "a/1", "one")
	mustGet(t, s, "a/1", "one")
	mustPut(t, s, "a/1", "uno")
	mustGet(t, s, "a/1", "uno")
	mustPut(t, s, "a/2", "two")
	mustPut(t, s, "b/1", "bee")
	mustPut(t, s, "empty", "")
	mustGet(t, s, "empty", "")

	mustDelete(t, s, "a/2")
	mustNotFound(t, s, "a/2")
	mustDelete(t, s, "a/2")       // again
	mustDelete(t, s, "never-set") // missing
	mustNotFound(t, s, "never-set")

	if got, want := collectKeys(t, s, "a/"), []string{"a/1"}; !slices.Equal(got, want) {
		t.Fatalf("Keys(a/) = %q, want %q", got, want)
	}
	if got, want := collectKeys(t, s, ""), []string{"a/1", "b/1", "empty"}; !slices.Equal(got, want) {
		t.Fatalf("Keys() = %q, want %q", got, want)
	}
	if got := collectKeys(t, s, "zzz"); len(got) != 0 {
		t.Fatalf("Keys(zzz) = %q, want none", got)
	}
	// Stopping early is allowed.
	for range s.Keys(ctx, "") {
		break
	}
	// Put after delete.
	mustPut(t, s, "a/2", "two again")
	mustGet(t, s, "a/2", "two again")

	// Binary keys and values.
	bk := "bin\x00\xff\x01"
	bv := string([]byte{0, 1, 2, 255, 0})
	mustPut(t, s, bk, bv)
	mustGet(t, s, bk, bv)

	// Limits.
	if err := s.Put(ctx, "", []byte("x")); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Put with empty key: %v", err)
	}
	long := string(bytes.Repeat([]byte("k"), MaxKeyLen+1))
	if err := s.Put(ctx, long, []byte("x")); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Put with long key: %v", err)
	}
	maxKey := string(bytes.Repeat([]byte("k"), MaxKeyLen))
	mustPut(t, s, maxKey, "longest key")
	mustGet(t, s, maxKey, "longest key")
	if err := s.Put(ctx, "big", make([]byte, MaxValueLen+1)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Put with a too large value: %v", err)
	}

	// Values up to 1 MiB, and the 4 MiB limit.
	for _, n := range []int{1 << 10, 256 << 10, 1 << 20, MaxValueLen} {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(i*7 + n)
		}
		key := fmt.Sprintf("large/%d", n)
		if err := s.Put(ctx, key, v); err != nil {
			t.Fatalf("Put %d bytes: %v", n, err)
		}
		got, err := s.Get(ctx, key)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("Get %d bytes: %d bytes, %v", n, len(got), err)
		}
	}

	// The returned value is the caller's to modify.
	got, _ := s.Get(ctx, "a/1")
	got[0] = 'X'
	mustGet(t, s, "a/1", "uno")

	hs := s.Health(ctx)
	if len(hs) == 0 {
		t.Fatal("Health: no backends")
	}
	for _, h := range hs {
		if !h.Reachable || h.Err != "" {
			t.Fatalf("Health: %+v", h)
		}
	}
}

func TestZDBContract(t *testing.T) {
	_, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "zstor-meta")
	storeContract(t, s)

	// A second instance with another prefix shares the namespaces
	// without seeing the first one's keys.
	other := newTestZDB(t, cfgs, "other")
	mustNotFound(t, other, "a/1")
	mustPut(t, other, "a/9", "nine")
	if got := collectKeys(t, other, ""); !slices.Equal(got, []string{"a/9"}) {
		t.Fatalf("other Keys() = %q", got)
	}
	if got := collectKeys(t, s, "a/"); !slices.Equal(got, []string{"a/1", "a/2"}) {
		t.Fatalf("Keys(a/) after other's put = %q", got)
	}

	// A new instance (a restarted zstor) reads what the first wrote.
	again := newTestZDB(t, cfgs, "zstor-meta")
	mustGet(t, again, "a/1", "uno")
	mustNotFound(t, again, "never-set")

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), "k", nil); err == nil {
		t.Fatal("Put after Close succeeded")
	}
	s.Close() // twice is fine
}

func TestZDBOneOfFourDown(t *testing.T) {
	bs, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "p")
	mustPut(t, s, "k1", "v1")
	mustPut(t, s, "gone", "soon")
	s.settle()

	bs[2].srv.Kill()
	start := time.Now()
	mustPut(t, s, "k1", "v2")
	mustPut(t, s, "k2", "new")
	mustGet(t, s, "k1", "v2")
	mustGet(t, s, "k2", "new")
	mustDelete(t, s, "gone")
	mustNotFound(t, s, "gone")
	if got := collectKeys(t, s, "k"); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("Keys(k) = %q", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("operations with a dead backend took %v", d)
	}
	var reachable int
	for _, h := range s.Health(context.Background()) {
		if h.Reachable {
			reachable++
		} else if h.Err == "" {
			t.Fatalf("unreachable backend without a reason: %+v", h)
		}
	}
	if reachable != 3 {
		t.Fatalf("Health: %d reachable, want 3", reachable)
	}
}

// TestZDBStaleBackend: a backend that was down through an overwrite, a
// delete and a new key comes back with its old data. Reads return the
// newest versions and repair it; the deleted record stays deleted.
func TestZDBStaleBackend(t *testing.T) {
	bs, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "p")
	mustPut(t, s, "k1", "v1")
	mustPut(t, s, "del", "old")
	mustPut(t, s, "del2", "old")
	s.settle()

	stale := bs[3]
	stale.srv.Kill()
	mustPut(t, s, "k1", "v2")
	mustDelete(t, s, "del")
	mustDelete(t, s, "del2")
	mustPut(t, s, "k3", "three")
	s.settle()

	stale.restart()
	if r := stale.raw(t, "p", "k1"); r == nil || string(r.value) != "v1" {
		t.Fatalf("stale backend does not hold v1: %+v", r)
	}
	if r := stale.raw(t, "p", "del"); r == nil || r.tombstone {
		t.Fatalf("stale backend does not hold the deleted record: %+v", r)
	}
	// Wait until the store uses the backend again (its back-off is
	// short in tests), so that it takes part in the reads below.
	waitReachable(t, s, 3)
	// And lose another one, so that every majority includes the stale
	// backend.
	bs[0].srv.Kill()

	// Keys sees a live "del" on the stale backend and tombstones on the
	// others: it must resolve that by version, not list it.
	if got := collectKeys(t, s, ""); !slices.Equal(got, []string{"k1", "k3"}) {
		t.Fatalf("Keys() = %q, want [k1 k3]", got)
	}
	mustGet(t, s, "k1", "v2")
	mustGet(t, s, "k3", "three")
	mustNotFound(t, s, "del")
	s.settle()

	if r := stale.raw(t, "p", "k1"); r == nil || string(r.value) != "v2" {
		t.Fatalf("k1 not repaired: %+v", r)
	}
	if r := stale.raw(t, "p", "k3"); r == nil || string(r.value) != "three" {
		t.Fatalf("k3 not repaired: %+v", r)
	}
	if r := stale.raw(t, "p", "del"); r == nil || !r.tombstone {
		t.Fatalf("del not repaired to a tombstone: %+v", r)
	}
	if r := stale.raw(t, "p", "del2"); r == nil || !r.tombstone {
		t.Fatalf("del2 (disputed in Keys) not repaired to a tombstone: %+v", r)
	}
	if s.repairs.Load() < 4 {
		t.Fatalf("%d repairs, want at least 4", s.repairs.Load())
	}

	// Once repaired, everything reads the same.
	mustGet(t, s, "k1", "v2")
	mustNotFound(t, s, "del")
	mustNotFound(t, s, "del2")
	if got := collectKeys(t, s, ""); !slices.Equal(got, []string{"k1", "k3"}) {
		t.Fatalf("Keys() = %q, want [k1 k3]", got)
	}
}

// waitReachable polls Health until backend i is reachable.
func waitReachable(t *testing.T, s *ZDB, i int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s.Health(context.Background())[i].Reachable {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("backend %d not reachable again", i)
}

func TestZDBThreeOfFourDown(t *testing.T) {
	bs, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "p")
	mustPut(t, s, "k", "v")
	s.settle()
	for _, b := range bs[1:] {
		b.srv.Kill()
	}
	ctx := context.Background()
	check := func(op string, err error, d time.Duration) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s with 3 of 4 backends down: %v, want ErrUnavailable", op, err)
		}
		if d > 2*time.Second {
			t.Fatalf("%s took %v to fail", op, d)
		}
		t.Logf("%s: %v after %v", op, err, d.Round(time.Millisecond))
	}
	for round := range 2 { // the second round hits the back-off
		start := time.Now()
		err := s.Put(ctx, "k", []byte("w"))
		check(fmt.Sprint("Put#", round), err, time.Since(start))
		start = time.Now()
		_, err = s.Get(ctx, "k")
		check(fmt.Sprint("Get#", round), err, time.Since(start))
		start = time.Now()
		err = s.Delete(ctx, "k")
		check(fmt.Sprint("Delete#", round), err, time.Since(start))
		start = time.Now()
		var kerr error
		for _, err := range s.Keys(ctx, "") {
			kerr = err
		}
		check(fmt.Sprint("Keys#", round), kerr, time.Since(start))
	}

	// The backends come back: they are retried, not given up on.
	for _, b := range bs[1:] {
		b.restart()
	}
	// The failed Put and Delete above reached the one live backend, and
	// may so win later (read repair spreads them), as with any quorum
	// store: "k" may be deleted now.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Get(ctx, "k")
		if err == nil || errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get after the backends came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustPut(t, s, "k", "after")
	mustGet(t, s, "k", "after")
}

// TestZDBHangingBackends: backends that accept connections but never answer
// cost their timeouts, not more.
func TestZDBHangingBackends(t *testing.T) {
	_, cfgs := startBackends(t, 1)
	var hangs []net.Conn
	var mu sync.Mutex
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				hangs = append(hangs, c) // never read, never answered
				mu.Unlock()
			}
		}()
		cfgs = append(cfgs, config.Backend{Address: ln.Addr().String(), Namespace: testNS, Password: "x"})
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range hangs {
			c.Close()
		}
	})
	start := time.Now()
	s, err := NewZDB(context.Background(), cfgs, "p",
		WithTimeouts(200*time.Millisecond, 300*time.Millisecond), WithRetry(time.Hour, time.Hour), WithLogger(testLogger()), WithSealer(testSealer))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NewZDB took %v", d)
	}
	start = time.Now()
	err = s.Put(context.Background(), "k", []byte("v"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Put on backends in back-off took %v", d)
	}
	t.Log(err)
}

// TestZDBHangingBackendsTimeout: a backend that hangs mid-operation costs
// the I/O timeout.
func TestZDBHangingTimeout(t *testing.T) {
	bs, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "p", WithTimeouts(300*time.Millisecond, 300*time.Millisecond))
	mustPut(t, s, "k", "v")
	s.settle()
	// Three backends hang: connections stay open, nobody answers.
	for _, b := range bs[1:] {
		b.px.freeze()
	}
	start := time.Now()
	_, err := s.Get(context.Background(), "k")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Get with hung backends took %v", d)
	}
	t.Logf("%v after %v", err, time.Since(start).Round(time.Millisecond))
}

func TestZDBConcurrentPuts(t *testing.T) {
	_, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "p")
	ctx := context.Background()
	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWorker {
				key := fmt.Sprintf("w%d/%03d", w, i)
				v := make([]byte, r.IntN(64<<10))
				for j := range v {
					v[j] = byte(w + i + j)
				}
				if err := s.Put(ctx, key, v); err != nil {
					errs <- fmt.Errorf("Put %s: %w", key, err)
					return
				}
				got, err := s.Get(ctx, key)
				if err != nil || !bytes.Equal(got, v) {
					errs <- fmt.Errorf("Get %s: %d bytes, %v", key, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := collectKeys(t, s, "w"); len(got) != workers*perWorker {
		t.Fatalf("Keys: %d keys, want %d", len(got), workers*perWorker)
	}
}

// TestZDBCorruptReplica: a replica damaged on a backend is outvoted and
// rewritten.
func TestZDBCorruptReplica(t *testing.T) {
	bs, cfgs := startBackends(t, 4)
	s := newTestZDB(t, cfgs, "p")
	mustPut(t, s, "k", "value")
	s.settle()
	for i, junk := range [][]byte{[]byte("garbage"), []byte("QM\x01\x01" + string(make([]byte, 40)))} {
		if _, _, err := bs[i].direct(t).Set(context.Background(), []byte("p/k"), junk); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, s, "k", "value")
	s.settle()
	for i := range 2 {
		if r := bs[i].raw(t, "p", "k"); r == nil || string(r.value) != "value" {
			t.Fatalf("backend %d not repaired: %+v", i, r)
		}
	}
	// A record in an unknown (future) format is neither used nor
	// overwritten.
	future, err := testEnv.encode("k", stamp{version: 1 << 62}, false, []byte("from the future"))
	if err != nil {
		t.Fatal(err)
	}
	future[2] = 9
	if _, _, err := bs[0].direct(t).Set(context.Background(), []byte("p/k"), future); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "k", "value")
	s.settle()
	got, err := bs[0].direct(t).Get(context.Background(), []byte("p/k"))
	if err != nil || !bytes.Equal(got, future) {
		t.Fatalf("future-format record was touched: %v", err)
	}
}

func TestZDBNewErrors(t *testing.T) {
	ctx := context.Background()
	ws := WithSealer(testSealer)
	if _, err := NewZDB(ctx, nil, "p", ws); err == nil {
		t.Fatal("no backends accepted")
	}
	b := config.Backend{Address: "127.0.0.1:1", Namespace: "x"}
	if _, err := NewZDB(ctx, []config.Backend{b}, "p"); err == nil {
		t.Fatal("no sealer accepted")
	}
	if _, err := NewZDB(ctx, []config.Backend{b, b}, "p", ws); err == nil {
		t.Fatal("a duplicate backend accepted")
	}
	if _, err := NewZDB(ctx, []config.Backend{{}}, "p", ws); err == nil {
		t.Fatal("an empty address accepted")
	}
	if _, err := NewZDB(ctx, []config.Backend{b}, string(make([]byte, 60)), ws); err == nil {
		t.Fatal("an over-long prefix accepted")
	}
	// Unreachable backends are not an error at creation time.
	s, err := NewZDB(ctx, []config.Backend{b}, "p", fastOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(ctx, "k", nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put: %v", err)
	}
}

// TestZDBSeqNamespace: a sequential namespace is refused as a backend.
func TestZDBSeqNamespace(t *testing.T) {
	srv := zdbtest.Start(t)
	ctx := context.Background()
	admin, err := client.New(ctx, client.Options{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.NSNew(ctx, "seq"); err != nil {
		t.Fatal(err)
	}
	if err := admin.NSSet(ctx, "seq", "mode", "seq"); err != nil {
		t.Fatal(err)
	}
	s := newTestZDB(t, []config.Backend{{Address: srv.Addr(), Namespace: "seq"}}, "p")
	h := s.Health(ctx)
	if h[0].Reachable || h[0].Err == "" {
		t.Fatalf("Health of a seq namespace: %+v", h[0])
	}
	t.Log(h[0].Err)
}

func TestEnvelope(t *testing.T) {
	st := stamp{version: 0x0123456789abcdef, writer: 0xdeadbeef}
	for _, v := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("abc"), 1000)} {
		b, err := testEnv.encode("key", st, false, v)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != envHeaderLen+testSealer.Overhead()+liveLenPrefix+len(v) || !testEnv.isLiveSize(int64(len(b))) {
			t.Fatalf("live record of %d bytes for a %d-byte value", len(b), len(v))
		}
		r, err := testEnv.decode("key", b, 0)
		if err != nil || r.tombstone || r.stamp != st || !bytes.Equal(r.value, v) {
			t.Fatalf("decode: %+v, %v", r, err)
		}
		// Every single-bit flip is detected.
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x10
			if _, err := testEnv.decode("key", c, 0); err == nil {
				t.Fatalf("flip in byte %d not detected", i)
			}
		}
		if _, err := testEnv.decode("key", b[:len(b)-1], 0); err == nil {
			t.Fatal("truncation not detected")
		}
		// Bound to its key.
		if _, err := testEnv.decode("kez", b, 0); !errors.Is(err, ErrUnauthentic) {
			t.Fatalf("under another key: %v", err)
		}
	}
	tb, err := testEnv.encode("key", st, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(tb)) != testEnv.tombstoneLen() || !testEnv.isTombstoneSize(int64(len(tb))) {
		t.Fatalf("tombstone of %d bytes", len(tb))
	}
	r, err := testEnv.decode("key", tb, 0)
	if err != nil || !r.tombstone || r.stamp != st || r.value != nil {
		t.Fatalf("tombstone: %+v, %v", r, err)
	}
	if _, err := testEnv.decode("key", append(bytes.Clone(tb), 0), 0); err == nil {
		t.Fatal("long tombstone accepted")
	}
	// The kind is authenticated: a live record relabelled a tombstone
	// (and the reverse) fails.
	lb, _ := testEnv.encode("key", st, false, []byte("v"))
	lb[3] = kindTombstone
	tb2 := bytes.Clone(tb)
	tb2[3] = kindLive
	for _, b := range [][]byte{lb, tb2} {
		if _, err := testEnv.decode("key", b, 0); !errors.Is(err, ErrUnauthentic) {
			t.Fatalf("kind changed: %v", err)
		}
	}
	c := bytes.Clone(tb)
	c[2] = 3
	if _, err := testEnv.decode("key", c, 0); !errors.Is(err, errUnknownFormat) {
		t.Fatalf("format 3: %v", err)
	}
	// A version beyond the bound is refused.
	if _, err := testEnv.decode("key", tb, st.version-1); !errors.Is(err, errAhead) {
		t.Fatalf("version past the bound: %v", err)
	}
	// Fixed layout (docs/zstor-format.md).
	want := []byte{'Q', 'M', 2, 2, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 0xef, 0xbe, 0xad, 0xde}
	if !bytes.Equal(tb[:16], want) {
		t.Fatalf("tombstone header % x, want % x", tb[:16], want)
	}
	if plain, err := testSealer.Open(tb[16:], append(bytes.Clone(want), "key"...)); err != nil || len(plain) != 0 {
		t.Fatalf("tombstone seal: %q, %v", plain, err)
	}

	if !(stamp{version: 1, writer: 9}).less(stamp{version: 2}) || !(stamp{version: 2}).less(stamp{version: 2, writer: 1}) ||
		(stamp{version: 2, writer: 1}).less(stamp{version: 2, writer: 1}) {
		t.Fatal("stamp order")
	}
	if !(stamp{legacy: true, version: 9}).less(stamp{version: 1}) || (stamp{version: 1}).less(stamp{legacy: true, version: 9}) {
		t.Fatal("a v1 record must rank below every v2 record")
	}
}

func TestHLC(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	h := hlc{now: func() time.Time { return now }}
	a := h.next()
	if a != uint64(now.UnixMilli())<<16 {
		t.Fatalf("first version %x", a)
	}
	b := h.next() // same millisecond
	now = now.Add(-time.Minute)
	c := h.next() // clock stepped back
	if !(a < b && b < c) {
		t.Fatalf("not increasing: %x %x %x", a, b, c)
	}
	h.observe(c + 1000)
	if d := h.next(); d <= c+1000 {
		t.Fatalf("observe ignored: %x", d)
	}
	now = now.Add(2 * time.Hour)
	e := h.next()
	if e != uint64(now.UnixMilli())<<16 {
		t.Fatalf("wall clock not followed: %x", e)
	}
	// A version further ahead than MaxClockAhead (such as 2^64−1, which
	// would wrap the next version to 0) does not move the clock.
	for _, v := range []uint64{math.MaxUint64, wallVersion(now.Add(MaxClockAhead + time.Second))} {
		h.observe(v)
		if f := h.next(); f <= e || f > e+10 {
			t.Fatalf("observe(%#x) moved the clock to %#x", v, f)
		}
		e += 1
	}
	h.observe(wallVersion(now.Add(MaxClockAhead - time.Second)))
	if f := h.next(); f <= wallVersion(now.Add(MaxClockAhead-time.Second)) {
		t.Fatalf("a version within MaxClockAhead not observed: %#x", f)
	}
}

// TestZDBClockSkew: a writer whose clock lags still wins over what it has
// read (the clock observes versions seen).
func TestZDBClockSkew(t *testing.T) {
	_, cfgs := startBackends(t, 3)
	ahead := newTestZDB(t, cfgs, "p", withClock(func() time.Time { return time.Now().Add(MaxClockAhead / 2) }))
	behind := newTestZDB(t, cfgs, "p")
	mustPut(t, ahead, "k", "from the future")
	mustGet(t, behind, "k", "from the future")
	mustPut(t, behind, "k", "read then written")
	mustGet(t, ahead, "k", "read then written")
}
