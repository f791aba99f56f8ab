package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"qss/internal/zdbtest"
)

// The etcd tests run a real etcd server process (Debian's etcd-server
// package), not etcd's Go embed package: embed would pull the whole etcd
// server (Raft, bbolt, the gRPC gateway, Prometheus, OpenTelemetry…) into
// this module's dependencies and make every test build much slower on
// shared CI machines, while a process is exactly what operators run and is
// killed and restarted like our zdb processes. The package is installed on
// first use when the tests run as root (as CI does).

var (
	etcdOnce sync.Once
	etcdBin  string
	etcdErr  error
)

// etcdBinary returns the path of etcd, installing etcd-server with apt-get
// when it is missing and the tests run as root.
func etcdBinary(t *testing.T) string {
	t.Helper()
	etcdOnce.Do(func() {
		if p, err := exec.LookPath("etcd"); err == nil {
			etcdBin = p
			return
		}
		if os.Geteuid() != 0 {
			etcdErr = errors.New("etcd is not on PATH: install it (Debian: apt-get install etcd-server) " +
				"or run the tests as root to have them install it")
			return
		}
		install := func(args ...string) error {
			cmd := exec.Command("apt-get", args...)
			// No prompts; and no service started by the
			// package's scripts (there is usually no init system
			// in a container, but be sure).
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "RUNLEVEL=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		err := install("install", "-y", "--no-install-recommends", "etcd-server")
		if err != nil {
			// Stale or missing package lists: refresh once.
			if err = install("update"); err == nil {
				err = install("install", "-y", "--no-install-recommends", "etcd-server")
			}
		}
		if err != nil {
			etcdErr = fmt.Errorf("installing etcd-server: %w", err)
			return
		}
		for _, p := range []string{"etcd", "/usr/bin/etcd"} {
			if q, err := exec.LookPath(p); err == nil {
				etcdBin = q
				return
			}
		}
		etcdErr = errors.New("etcd-server installed, but no etcd binary found")
	})
	if etcdErr != nil {
		t.Fatal(etcdErr)
	}
	return etcdBin
}

// etcdServer is one running single-member etcd cluster on loopback.
type etcdServer struct {
	cmd      *exec.Cmd
	done     chan struct{}
	log      *bytes.Buffer
	mu       sync.Mutex
	Endpoint string
}

// startEtcd runs etcd on free loopback ports with a temporary data
// directory, waits until it is healthy and stops it when the test ends.
func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	bin := etcdBinary(t)
	var lastErr error
	for range 3 {
		dir := filepath.Join(t.TempDir(), "etcd")
		cport, pport := zdbtest.FreePort(t), zdbtest.FreePort(t)
		curl := "http://127.0.0.1:" + strconv.Itoa(cport)
		purl := "http://127.0.0.1:" + strconv.Itoa(pport)
		e := &etcdServer{log: &bytes.Buffer{}, done: make(chan struct{}), Endpoint: curl}
		e.cmd = exec.Command(bin,
			"--name", "default", "--data-dir", dir,
			"--listen-client-urls", curl, "--advertise-client-urls", curl,
			"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
			"--initial-cluster", "default="+purl,
			// Room for MaxValueLen values (the default is 1.5 MiB).
			"--max-request-bytes", "5242880",
			"--log-level", "warn")
		if runtime.GOARCH != "amd64" {
			// etcd 3.4 (Debian 12) refuses to start elsewhere
			// without this.
			e.cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
		}
		w := lockedBuf{&e.mu, e.log}
		e.cmd.Stdout, e.cmd.Stderr = w, w
		if err := e.cmd.Start(); err != nil {
			t.Fatalf("start etcd: %v", err)
		}
		go func() {
			e.cmd.Wait()
			close(e.done)
		}()
		if lastErr = e.waitHealthy(20 * time.Second); lastErr == nil {
			t.Cleanup(e.stop)
			return e
		}
		e.kill()
	}
	t.Fatalf("etcd did not start: %v", lastErr)
	return nil
}

type lockedBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (e *etcdServer) Log() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

func (e *etcdServer) waitHealthy(timeout time.Duration) error {
	hc := http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return fmt.Errorf("etcd exited: %v\n%s", e.cmd.ProcessState, e.Log())
		default:
		}
		resp, err := hc.Get(e.Endpoint + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(body, []byte(`"health":"true"`)) {
				return nil
			}
			err = fmt.Errorf("health: %s", body)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not healthy after %v: %v\n%s", timeout, last, e.Log())
}

func (e *etcdServer) kill() {
	e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.done
}

func (e *etcdServer) stop() {
	select {
	case <-e.done:
		return
	default:
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		e.kill()
	}
}

func newTestEtcd(t *testing.T, endpoints []string, prefix, user, pw string) *Etcd {
	t.Helper()
	s, err := NewEtcd(context.Background(), endpoints, prefix, user, pw,
		WithEtcdTimeouts(2*time.Second, 2*time.Second), WithEtcdLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEtcd(t *testing.T) {
	srv := startEtcd(t)
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
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "uno" {
		t.Fatalf("raw get: %v %v", resp, err)
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
		WithEtcdTimeouts(time.Second, 300*time.Millisecond), WithEtcdLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	s = fast
	srv.kill()
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
	srv := startEtcd(t)
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
