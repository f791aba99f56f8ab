package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"qss/internal/etcdtest"
)

// The etcd tests run a real etcd server process (see internal/etcdtest for
// why a process and not etcd's embed package).

func newTestEtcd(t *testing.T, endpoints []string, prefix, user, pw string) *Etcd {
	t.Helper()
	s, err := NewEtcd(context.Background(), endpoints, prefix, user, pw,
		WithEtcdTimeouts(2*time.Second, 2*time.Second), WithEtcdLogger(testLogger()), WithEtcdSealer(testSealer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	s := newTestEtcd(t, []string{srv.Endpoint}, "zstor-meta", "", "")
	storeContract(t, s)

	// Keys are stored under prefix + "/", and other prefixes are apart.
	ctx := context.Background()
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	resp, err := raw.Get(ctx, "zstor-meta/a/1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get: %v %v", resp, err)
	}
	if rec, err := testEnv.decode("a/1", resp.Kvs[0].Value, 0); err != nil || string(rec.value) != "uno" {
		t.Fatalf("raw record: %+v, %v", rec, err)
	}
	if _, err := raw.Put(ctx, "zstor-meta-other/x", "y"); err != nil {
		t.Fatal(err)
	}
	other := newTestEtcd(t, []string{srv.Endpoint}, "zstor-meta-other", "", "")
	if got := collectKeys(t, other, ""); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("other Keys() = %q", got)
	}
	if got := collectKeys(t, s, ""); slices.Contains(got, "x") || slices.Contains(got, "-other/x") {
		t.Fatalf("Keys() sees another prefix: %q", got)
	}

	// More keys than one page of Keys.
	for i := range keysPage + 50 {
		if _, err := raw.Put(ctx, fmt.Sprintf("zstor-meta/many/%05d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if got := collectKeys(t, s, "many/"); len(got) != keysPage+50 || got[0] != "many/00000" {
		t.Fatalf("Keys(many/): %d keys", len(got))
	}

	// Concurrent writers.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				key := fmt.Sprintf("w%d/%d", w, i)
				if err := s.Put(ctx, key, []byte(key)); err != nil {
					errs <- err
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
	if got := collectKeys(t, s, "w"); len(got) != 160 {
		t.Fatalf("Keys(w): %d keys, want 160", len(got))
	}

	// The cluster goes away: operations fail with ErrUnavailable within
	// the operation timeout.
	fast, err := NewEtcd(ctx, []string{srv.Endpoint}, "zstor-meta", "", "",
		WithEtcdTimeouts(time.Second, 300*time.Millisecond), WithEtcdLogger(testLogger()), WithEtcdSealer(testSealer))
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	s = fast
	srv.Kill()
	start := time.Now()
	if err := s.Put(ctx, "k", []byte("v")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put with etcd down: %v", err)
	}
	if _, err := s.Get(ctx, "a/1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with etcd down: %v", err)
	}
	var kerr error
	for _, err := range s.Keys(ctx, "") {
		kerr = err
	}
	if !errors.Is(kerr, ErrUnavailable) {
		t.Fatalf("Keys with etcd down: %v", kerr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("three operations with etcd down took %v", d)
	}
	if h := s.Health(ctx); h[0].Reachable || h[0].Err == "" {
		t.Fatalf("Health with etcd down: %+v", h)
	}
	// The caller's own deadline is reported as such.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.Get(dctx, "a/1"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with a short deadline: %v", err)
	}
	// And NewEtcd fails on an unreachable cluster.
	start = time.Now()
	_, err = NewEtcd(ctx, []string{srv.Endpoint}, "p", "", "", WithEtcdTimeouts(500*time.Millisecond, 0))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewEtcd on a dead cluster: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("NewEtcd on a dead cluster took %v", d)
	}
}

// TestEtcdAuth: with authentication enabled, the right credentials work and
// wrong ones fail at NewEtcd.
func TestEtcdAuth(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	steps := []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	s := newTestEtcd(t, []string{srv.Endpoint}, "p", "root", "rootpw")
	mustPut(t, s, "k", "v")
	mustGet(t, s, "k", "v")
	if h := s.Health(ctx); !h[0].Reachable {
		t.Fatalf("Health: %+v", h)
	}
	if _, err := NewEtcd(ctx, []string{srv.Endpoint}, "p", "root", "wrong", WithEtcdTimeouts(time.Second, time.Second)); err == nil {
		t.Fatal("NewEtcd with a wrong password succeeded")
	} else {
		t.Log(err)
	}
	if _, err := NewEtcd(ctx, []string{srv.Endpoint}, "p", "root", ""); err == nil {
		t.Fatal("NewEtcd with a username and no password succeeded")
	}
	// Without credentials the server refuses the request.
	if _, err := NewEtcd(ctx, []string{srv.Endpoint}, "p", "", "", WithEtcdTimeouts(time.Second, time.Second)); err == nil {
		t.Fatal("NewEtcd without credentials on an auth-enabled cluster succeeded")
	} else {
		t.Log(err)
	}
}
