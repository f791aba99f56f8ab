// Package zdbtest starts real zdb server processes for tests: the binary is
// built once per test process from ./cmd/zdb and each server listens on a
// free loopback port with its own data and index directories. Under
// go test -race the binary has the race detector too, and a server that
// reports a data race fails the test.
package zdbtest

import (
	"bytes"
	"fmt"
	"net"
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

	"qss/internal/racetest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/zdb (once per test process, with -race when the test
// binary has it) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := binaryDir()
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "zdb")
		// ZDBTEST_BUILDFLAGS adds go build flags (under -race the binary is
		// race-built anyway, racetest).
		args := append(append([]string{"build"}, racetest.BuildFlags()...), strings.Fields(os.Getenv("ZDBTEST_BUILDFLAGS"))...)
		cmd := exec.Command("go", append(args, "-o", binPath, "./cmd/zdb")...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/zdb: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// binaryDir is where Binary builds: beside the test binary when go test
// built it into its work directory (go test removes that directory when
// the run ends, so packages without a TestMain calling RemoveBinary leave
// nothing behind either), else a new temporary directory.
func binaryDir() (string, error) {
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		dir, err := os.MkdirTemp(filepath.Dir(exe), "zdbtest-bin-")
		if err == nil {
			return dir, nil
		}
	}
	return os.MkdirTemp("", "zdbtest-bin-")
}

// RemoveBinary deletes the binary Binary built; a TestMain calls it once the
// tests are done, so that a test run leaves nothing behind.
func RemoveBinary() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

// Server is one running zdb process.
type Server struct {
	t     testing.TB
	Dir   string   // holds data/ and index/
	Port  int      // TCP port on 127.0.0.1
	Args  []string // extra flags given at start
	cmd   *exec.Cmd
	log   *bytes.Buffer
	mu    sync.Mutex
	done  chan struct{}
	State *os.ProcessState

	samePort bool // the next start keeps Port (RestartSamePort)
}

// Start runs a zdb on a fresh directory with the given extra flags and waits
// until it accepts connections. It is stopped when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return StartIn(t, t.TempDir(), args...)
}

// StartIn runs a zdb whose data and index live under dir (dir/data,
// dir/index), for tests that restart on the same files.
func StartIn(t testing.TB, dir string, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, Dir: dir, Args: args}
	s.start()
	t.Cleanup(s.checkRace) // after Stop: cleanups run last-registered first
	t.Cleanup(s.Stop)
	return s
}

// PID is the process id of the running zdb.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Memory returns the resident memory of the running zdb and its peak so
// far (VmRSS and VmHWM of /proc/PID/status), in bytes.
func (s *Server) Memory() (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PID()))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q", k, v)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// DataDir and IndexDir are the server's roots.
func (s *Server) DataDir() string  { return filepath.Join(s.Dir, "data") }
func (s *Server) IndexDir() string { return filepath.Join(s.Dir, "index") }

// Log returns what the server printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// checkRace fails the test when the server's output holds a race report.
func (s *Server) checkRace() {
	if s.log != nil {
		racetest.Check(s.t, "zdb on "+s.Addr(), s.Log())
	}
}

func (s *Server) start() {
	s.t.Helper()
	s.checkRace() // a restart replaces the log of the previous process
	bin := Binary(s.t)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if !s.samePort {
			s.Port = FreePort(s.t)
		}
		argv := append([]string{
			"--listen", "127.0.0.1", "--port", strconv.Itoa(s.Port),
			"--data", s.DataDir(), "--index", s.IndexDir(),
		}, s.Args...)
		s.log = &bytes.Buffer{}
		s.cmd = exec.Command(bin, argv...)
		w := lockedWriter{&s.mu, s.log}
		s.cmd.Stdout, s.cmd.Stderr = w, w
		if err := s.cmd.Start(); err != nil {
			s.t.Fatalf("start zdb: %v", err)
		}
		s.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) {
			cmd.Wait()
			s.mu.Lock()
			s.State = cmd.ProcessState
			s.mu.Unlock()
			close(done)
		}(s.cmd, s.done)
		if lastErr = s.waitReady(10 * time.Second); lastErr == nil {
			return
		}
		s.Kill()
	}
	s.t.Fatalf("zdb did not start: %v\n%s", lastErr, s.Log())
}

// waitReady waits for this process to print that it listens. Dialing the
// port is not enough: another test's server may have taken the same port,
// and ours then exits on its failed bind.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := "zdb listening on " + s.Addr()
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("zdb exited: %v", s.State)
		default:
		}
		if strings.Contains(s.Log(), want) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("zdb did not report listening on %s after %v", s.Addr(), timeout)
}

// Kill sends SIGKILL and waits for the process to end.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Stop sends SIGTERM and waits (SIGKILL after 10 s).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.Kill()
	}
}

// Wait waits for the process to exit on its own (after STOP, say).
func (s *Server) Wait(timeout time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Restart stops (or has stopped) the server and starts it again on the same
// directories and flags.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// RestartSamePort stops (or has stopped) the server and starts it again
// on the same directories, flags and port, as a backend that comes back at
// the address its clients know.
func (s *Server) RestartSamePort() {
	s.t.Helper()
	s.Stop()
	s.samePort = true
	defer func() { s.samePort = false }()
	s.start()
}

// RestartAfterKill kills the server with SIGKILL and starts it again.
func (s *Server) RestartAfterKill() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
