// Package etcdtest runs real etcd server processes for tests: one
// single-member cluster per call on free loopback ports, with a temporary
// data directory, stopped when the test ends.
//
// It runs Debian's etcd-server binary rather than etcd's Go embed package:
// embed would pull the whole etcd server (Raft, bbolt, the gRPC gateway,
// Prometheus, OpenTelemetry…) into this module's dependencies and make
// every test build much slower on shared CI machines, while a process is
// exactly what operators run and is killed and restarted like our zdb
// processes. The package is installed on first use when the tests run as
// root (as CI does).
package etcdtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qss/internal/zdbtest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of etcd, installing etcd-server with apt-get
// when it is missing and the tests run as root.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() { binPath, binErr = findOrInstall() })
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func findOrInstall() (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("etcd is not on PATH: install it (Debian: apt-get install etcd-server) " +
			"or run the tests as root to have them install it")
	}
	install := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		// No prompts; and no service started by the package's scripts
		// (there is usually no init system in a container, but be sure).
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
		return "", fmt.Errorf("installing etcd-server: %w", err)
	}
	for _, p := range []string{"etcd", "/usr/bin/etcd"} {
		if q, err := exec.LookPath(p); err == nil {
			return q, nil
		}
	}
	return "", errors.New("etcd-server installed, but no etcd binary found")
}

// Server is one running single-member etcd cluster on loopback.
type Server struct {
	// Endpoint is the client URL, "http://127.0.0.1:port".
	Endpoint string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  *bytes.Buffer
}

// Start runs etcd on free loopback ports with a temporary data directory,
// waits until it is healthy and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	for range 3 {
		dir := filepath.Join(t.TempDir(), "etcd")
		cport, pport := zdbtest.FreePort(t), zdbtest.FreePort(t)
		curl := "http://127.0.0.1:" + strconv.Itoa(cport)
		purl := "http://127.0.0.1:" + strconv.Itoa(pport)
		e := &Server{log: &bytes.Buffer{}, done: make(chan struct{}), Endpoint: curl}
		e.cmd = exec.Command(bin,
			"--name", "default", "--data-dir", dir,
			"--listen-client-urls", curl, "--advertise-client-urls", curl,
			"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
			"--initial-cluster", "default="+purl,
			// Room for meta.MaxValueLen values (the default is 1.5 MiB).
			"--max-request-bytes", "5242880",
			"--log-level", "warn")
		if runtime.GOARCH != "amd64" {
			// etcd 3.4 (Debian 12) refuses to start elsewhere without
			// this.
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
			t.Cleanup(e.Stop)
			return e
		}
		e.Kill()
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

// Log returns what etcd printed so far.
func (e *Server) Log() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

func (e *Server) waitHealthy(timeout time.Duration) error {
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

// Kill sends SIGKILL and waits for the process to end.
func (e *Server) Kill() {
	e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.done
}

// Stop sends SIGTERM and waits (SIGKILL after 5 s).
func (e *Server) Stop() {
	select {
	case <-e.done:
		return
	default:
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		e.Kill()
	}
}
