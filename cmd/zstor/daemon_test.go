package main

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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qss/internal/racetest"
	"qss/internal/zdbtest"
	"qss/zstor"
	"qss/zstor/daemon"
	"qss/zstor/zstortest"
)

// These tests run the real zstor binary: `zstor -c CFG monitor` as a
// process, and the other commands as processes that find it on the socket.

// dmBuf collects a process's output.
type dmBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *dmBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *dmBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type dmMonitor struct {
	cmd  *exec.Cmd
	out  *dmBuf
	done chan struct{}
}

// dmStartMonitor runs `zstor -c cfg monitor` and waits until it answers.
func dmStartMonitor(t *testing.T, cfg, socket string) *dmMonitor {
	t.Helper()
	m := &dmMonitor{out: &dmBuf{}, done: make(chan struct{})}
	m.cmd = exec.Command(zstorBin, "-c", cfg, "monitor")
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		<-m.done
		racetest.Check(t, "zstor monitor", m.out.String())
		if t.Failed() {
			t.Logf("monitor output:\n%s", m.out)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-m.done:
			t.Fatalf("zstor monitor exited at start (%v):\n%s", m.cmd.ProcessState, m.out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := daemon.Dial(ctx, socket)
		cancel()
		if err == nil {
			if c.PID != m.cmd.Process.Pid {
				t.Fatalf("socket answered by pid %d, started %d", c.PID, m.cmd.Process.Pid)
			}
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("zstor monitor does not answer on %s: %v\n%s", socket, err, m.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dmRun runs one zstor command and returns stdout, stderr and the exit
// code.
func dmRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(zstorBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	racetest.Check(t, "zstor "+strings.Join(args, " "), stderr.String())
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func dmWaitOutput(t *testing.T, m *dmMonitor, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(m.out.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("zstor monitor did not print %q within %v", substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var dmHexSum = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

// The commands go through a running `zstor monitor`: store, store -n,
// check (exit 1 for a file that is not stored); a second monitor on the
// socket is refused; SIGHUP with a broken config keeps the daemon running;
// SIGTERM stops it with exit 0, after which the commands run in-process.
func TestMonitorProcess(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := filepath.Join(t.TempDir(), "zstor.sock")
	cfgPath := filepath.Join(t.TempDir(), "zstor_config.toml")
	good := cl.ConfigTOML(zstortest.TestKey, fmt.Sprintf("socket = %q\n", sock))
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	m := dmStartMonitor(t, cfgPath, sock)
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}

	// A second monitor is refused with one line.
	_, stderr, code := dmRun(t, "-c", cfgPath, "monitor")
	if code == 0 || !strings.Contains(stderr, "another zstor daemon is running") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("second monitor: exit %d, stderr %q", code, stderr)
	}

	p := cl.WriteFile("a.bin", zstortest.RandomBytes(200<<10))
	want, _ := zstor.LocalChecksum(p)
	if _, stderr, code := dmRun(t, "-c", cfgPath, "store", "-f", p); code != 0 {
		t.Fatalf("store: exit %d: %s", code, stderr)
	}
	dmWaitOutput(t, m, "key=a.bin", 5*time.Second) // the daemon did the store
	out, stderr, code := dmRun(t, "-c", cfgPath, "check", "-f", p)
	if code != 0 || dmHexSum.FindString(out) != want.String() {
		t.Fatalf("check: exit %d, stdout %q, stderr %q; want %s", code, out, stderr, want)
	}
	missing := cl.WriteFile("never-stored.bin", []byte("x"))
	out, stderr, code = dmRun(t, "-c", cfgPath, "check", "-f", missing)
	if code != 1 || dmHexSum.MatchString(out) {
		t.Fatalf("check of a file not stored: exit %d, stdout %q, stderr %q; want exit 1", code, out, stderr)
	}

	q := cl.WriteFile("q.bin", zstortest.RandomBytes(100<<10))
	qwant, _ := zstor.LocalChecksum(q)
	if _, stderr, code := dmRun(t, "-c", cfgPath, "store", "-n", "-f", q); code != 0 {
		t.Fatalf("store -n: exit %d: %s", code, stderr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, code := dmRun(t, "-c", cfgPath, "check", "-f", q)
		if code == 0 && dmHexSum.FindString(out) == qwant.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queued store did not complete: check says %q (exit %d)", out, code)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A broken config on SIGHUP: one error, the daemon keeps serving.
	os.WriteFile(cfgPath, []byte(good+"\nnot_a_key = 1\n"), 0o600)
	m.cmd.Process.Signal(syscall.SIGHUP)
	dmWaitOutput(t, m, "config reload failed", 10*time.Second)
	os.WriteFile(cfgPath, []byte(good), 0o600)
	if out, _, code := dmRun(t, "-c", cfgPath, "check", "-f", p); code != 0 || dmHexSum.FindString(out) != want.String() {
		t.Fatalf("check after a failed reload: exit %d %q", code, out)
	}

	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		t.Fatal("zstor monitor did not stop on SIGTERM")
	}
	if code := m.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("zstor monitor exit %d after SIGTERM", code)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	// No daemon: the command runs in-process.
	if out, stderr, code := dmRun(t, "-c", cfgPath, "check", "-f", q); code != 0 || dmHexSum.FindString(out) != qwant.String() {
		t.Fatalf("check without a daemon: exit %d %q %q", code, out, stderr)
	}
}

// dmServed scrapes the daemon's zstor_commands_total{command=op,result="ok"}.
func dmServed(t *testing.T, port int, op string) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^zstor_commands_total\{command="` + regexp.QuoteMeta(op) + `",result="ok"\} (\d+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// Every command that goes through the daemon does, against a real `zstor
// monitor` process: each command line is run as its own process and the
// daemon's command counter for it must move, and each result must be right.
func TestEveryCommandThroughMonitor(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := filepath.Join(t.TempDir(), "zstor.sock")
	port := zdbtest.FreePort(t)
	cfgPath := filepath.Join(t.TempDir(), "zstor_config.toml")
	cfg := cl.ConfigTOML(zstortest.TestKey, fmt.Sprintf("socket = %q\nprometheus_port = %d\n", sock, port))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dmStartMonitor(t, cfgPath, sock)

	data := zstortest.RandomBytes(300 << 10)
	p := cl.WriteFile("dir/obj.bin", data)
	want, _ := zstor.LocalChecksum(p)
	run := func(op string, args ...string) string {
		t.Helper()
		before := dmServed(t, port, op)
		out, stderr, code := dmRun(t, append([]string{"-c", cfgPath}, args...)...)
		if code != 0 {
			t.Fatalf("zstor %v: exit %d, stderr %q", args, code, stderr)
		}
		if after := dmServed(t, port, op); after != before+1 {
			t.Fatalf("zstor %v: daemon served %q %d times, want %d (did it run in-process?)", args, op, after, before+1)
		}
		return out
	}
	run("store", "store", "-f", p)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	run("retrieve", "retrieve", "-f", p)
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
	if out := run("check", "check", "-f", p); dmHexSum.FindString(out) != want.String() {
		t.Fatalf("check printed %q, want %s", out, want)
	}
	if out := run("list", "list", "dir/"); !strings.Contains(out, "dir/obj.bin") {
		t.Fatalf("list printed %q", out)
	}
	run("scrub", "scrub")
	run("rebuild", "rebuild", "-f", p)
	run("repair", "repair", "dir/")
	run("delete", "delete", "-f", p)
	if _, _, code := dmRun(t, "-c", cfgPath, "check", "-f", p); code != 1 {
		t.Fatalf("check after delete: exit %d, want 1", code)
	}
}
