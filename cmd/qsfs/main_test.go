package main

// End-to-end tests of the qsfs binary: a real build of ./cmd/qsfs, real zdb
// backend processes (zstor/zstortest) and a real FUSE mount. Each test runs
// the binary as a user would (mount, sync, status, restore, ...) and looks
// at the mount, the local directory and the backends' files.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qss/internal/racetest"
	"qss/internal/zdbtest"
	"qss/qsfs"
	"qss/zstor/zstortest"
)

// qsfsBin is the binary TestMain builds (race-built under -race).
var qsfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qsfs-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	qsfsBin = filepath.Join(dir, "qsfs")
	args := append(append([]string{"build"}, racetest.BuildFlags()...), "-o", qsfsBin, ".")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/qsfs: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	zdbtest.RemoveBinary()
	os.Exit(code)
}

// fixture is one qsfs filesystem under test: its backends, its config
// file, its local directory and its mount point.
type fixture struct {
	t   *testing.T
	cl  *zstortest.Cluster
	cfg string // config file
	dir string // [qsfs] path
	mnt string // mount point
}

// newFixture starts six data and four metadata backends and writes a
// config whose [qsfs] table has path plus the given keys (TOML lines).
func newFixture(t *testing.T, qsfsKeys string) *fixture {
	t.Helper()
	f := &fixture{t: t, cl: zstortest.New(t, 6)}
	base := t.TempDir()
	f.dir = filepath.Join(base, "local")
	f.mnt = filepath.Join(base, "mnt")
	if err := os.Mkdir(f.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f.cfg = filepath.Join(base, "qsfs.toml")
	f.writeConfig(qsfsKeys)
	return f
}

// writeConfig (re)writes the config file: the cluster's zstor keys (minus
// root, which qsfs refuses) and a [qsfs] table.
func (f *fixture) writeConfig(qsfsKeys string) {
	var zs []string
	for _, l := range strings.Split(f.cl.ConfigTOML(zstortest.TestKey, ""), "\n") {
		if !strings.HasPrefix(l, "root = ") {
			zs = append(zs, l)
		}
	}
	text := strings.Join(zs, "\n") + fmt.Sprintf("\n[qsfs]\npath = %q\n%s\n", f.dir, qsfsKeys)
	if err := os.WriteFile(f.cfg, []byte(text), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// result is what one run of the binary gave.
type result struct {
	stdout, stderr string
	code           int
}

// run runs qsfs -c CONFIG args... with stdin (may be nil), bounded by 60 s.
func (f *fixture) run(stdin io.Reader, args ...string) result {
	f.t.Helper()
	return runQsfs(f.t, stdin, append([]string{"-c", f.cfg}, args...)...)
}

func runQsfs(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qsfsBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	r := result{out.String(), errb.String(), 0}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("qsfs %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("qsfs %v did not end within 60 s\n%s", args, r.stderr)
	}
	racetest.Check(t, "qsfs "+strings.Join(args, " "), r.stderr)
	return r
}

// mustRun is run that fails the test unless the exit status is 0.
func (f *fixture) mustRun(stdin io.Reader, args ...string) result {
	f.t.Helper()
	r := f.run(stdin, args...)
	if r.code != 0 {
		f.t.Fatalf("qsfs %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// statusJSON is `qsfs status --json` parsed.
type statusJSON struct {
	Running bool `json:"running"`
	qsfs.Status
}

// status runs `qsfs status --json` and returns it with the exit status.
func (f *fixture) status() (statusJSON, int) {
	f.t.Helper()
	r := f.run(nil, "status", "--json")
	var s statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		f.t.Fatalf("qsfs status --json (exit %d): %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	return s, r.code
}

// waitStored polls the status until everything written is stored (live RPO
// 0, empty queue) in a point newer than after, bounded by 30 s.
func (f *fixture) waitStored(after uint64) statusJSON {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, _ := f.status()
		if s.RPO == 0 && s.Queue.Jobs == 0 && s.PointsPending == 0 && s.LastPoint.Generation > after {
			return s
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("not stored within 30 s: %+v", s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mountProc is a running `qsfs mount`.
type mountProc struct {
	f    *fixture
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error // after done
}

func isMounted(dir string) bool {
	m, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(m), " "+dir+" ")
}

func detach(dir string) {
	exec.Command("fusermount3", "-u", "-z", dir).Run()
	exec.Command("umount", "-l", dir).Run()
}

// mount starts `qsfs mount` and waits until the mount and its control
// socket serve. The test's end kills it (if still running) and detaches
// the mount.
func (f *fixture) mount() *mountProc {
	f.t.Helper()
	p := &mountProc{f: f, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(qsfsBin, "-c", f.cfg, "mount", f.mnt)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	f.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		detach(f.mnt)
		racetest.Check(f.t, "qsfs mount", p.log.String())
	})
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(f.mnt) || !p.controlUp() {
		select {
		case <-p.done:
			f.t.Fatalf("qsfs mount exited: %v\n%s", p.err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("qsfs did not mount within 30 s\n%s", p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *mountProc) controlUp() bool {
	c, err := qsfs.DialControl(p.f.dir)
	return err == nil && c != nil
}

// kill9 kills the mount process with SIGKILL and detaches the dead mount.
func (p *mountProc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	detach(p.f.mnt)
	if isMounted(p.f.mnt) {
		p.f.t.Fatalf("%s still mounted after kill -9 and a lazy unmount", p.f.mnt)
	}
}

// stop unmounts with SIGTERM and checks the clean exit.
func (p *mountProc) stop() {
	p.f.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.f.t.Fatalf("qsfs mount did not stop within 60 s of SIGTERM\n%s", p.log)
	}
	if p.err != nil {
		p.f.t.Fatalf("qsfs mount after SIGTERM: %v\n%s", p.err, p.log)
	}
	if isMounted(p.f.mnt) {
		p.f.t.Fatalf("%s still mounted after SIGTERM", p.f.mnt)
	}
}

// writeFile writes data at path, fsyncs and closes it.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		t.Fatalf("write %s: %v", path, err)
	}
	if err := w.Sync(); err != nil {
		w.Close()
		t.Fatalf("fsync %s: %v", path, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}

// checkFile fails unless path holds want, byte for byte.
func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: %d bytes, want %d; first difference at byte %d", path, len(got), len(want), i)
	}
}

// diskUse is what du says the directory takes on disk, in bytes (files
// that vanish while du walks are skipped); -1 when du printed no total.
func diskUse(dir string) int64 {
	out, _ := exec.Command("du", "-s", "-B1", dir).Output()
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// wipe removes the local directory, as a lost machine would.
func (f *fixture) wipe() {
	f.t.Helper()
	if err := os.RemoveAll(f.dir); err != nil {
		f.t.Fatal(err)
	}
}
