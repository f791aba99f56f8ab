package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qss/internal/racetest"
	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/pipeline"
	"qss/zstor/zstortest"
)

// Environment of a child daemon: the test binary re-executed (TestMain)
// runs RunOptions as a real process, so that kill -9 and signals hit a real
// daemon and nothing else.
const (
	envChildConfig  = "ZSTOR_DAEMON_TEST_CONFIG"
	envChildOptions = "ZSTOR_DAEMON_TEST_OPTIONS"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(envChildConfig); cfg != "" {
		os.Exit(childMain(cfg))
	}
	os.Exit(m.Run())
}

// childMain is what `zstor monitor` does: SIGTERM and SIGINT cancel the
// context, and Run drains.
func childMain(cfg string) int {
	var o Options
	if s := os.Getenv(envChildOptions); s != "" {
		if err := json.Unmarshal([]byte(s), &o); err != nil {
			fmt.Fprintln(os.Stderr, "bad options:", err)
			return 2
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := RunOptions(ctx, cfg, log, o); err != nil {
		fmt.Fprintln(os.Stderr, "zstor monitor:", err)
		return 1
	}
	return 0
}

// testOptions are short intervals and fast backend failure detection.
func testOptions() Options {
	return Options{
		RetryMin:       100 * time.Millisecond,
		RetryMax:       time.Second,
		HealthInterval: 200 * time.Millisecond,
		RepairInterval: 300 * time.Millisecond,
		RepairAfter:    time.Hour,
		ScrubInterval:  -1,
		CacheInterval:  200 * time.Millisecond,
		DrainTimeout:   time.Minute,
		Backend:        backend.Options{DownFor: 300 * time.Millisecond, DialTimeout: time.Second, IOTimeout: 5 * time.Second},
	}
}

// syncBuf is a log sink safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until the log holds substr.
func waitLog(t *testing.T, log *syncBuf, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(log.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not log %q within %v; log:\n%s", substr, timeout, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inproc is a daemon running in the test process.
type inproc struct {
	cancel context.CancelFunc
	done   chan error
	log    *syncBuf
}

// startInProcess runs RunOptions in a goroutine and waits until it answers
// on socket. The daemon is stopped (and must return nil) when the test ends.
func startInProcess(t *testing.T, cfg, socket string, o Options) *inproc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inproc{cancel: cancel, done: make(chan error, 1), log: &syncBuf{}}
	logger := slog.New(slog.NewTextHandler(p.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { p.done <- RunOptions(ctx, cfg, logger, o) }()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		cancel()
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("daemon returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("daemon did not stop within 30 s")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", p.log)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-p.done:
			stopped = true
			t.Fatalf("daemon exited at start: %v\n%s", err, p.log)
		default:
		}
		c, err := Dial(ctx, socket)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon does not answer on %s: %v\n%s", socket, err, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// child is a daemon running as a separate process.
type child struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *syncBuf
	done chan struct{}
}

// startChild starts the test binary as a daemon process and waits until it
// answers on socket. It is killed when the test ends, if still running.
func startChild(t *testing.T, cfg, socket string, o Options) *child {
	t.Helper()
	opts, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, log: &syncBuf{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envChildConfig+"="+cfg, envChildOptions+"="+string(opts))
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		racetest.Check(t, fmt.Sprintf("daemon (pid %d)", c.cmd.Process.Pid), c.log.String())
		if t.Failed() {
			t.Logf("daemon (pid %d) log:\n%s", c.cmd.Process.Pid, c.log)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-c.done:
			t.Fatalf("daemon exited at start (%v):\n%s", c.cmd.ProcessState, c.log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d, err := Dial(ctx, socket)
		cancel()
		if err == nil {
			if d.PID != c.cmd.Process.Pid {
				t.Fatalf("socket answered by pid %d, started %d", d.PID, c.cmd.Process.Pid)
			}
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon does not answer on %s: %v\n%s", socket, err, c.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *child) signal(s os.Signal) {
	if err := c.cmd.Process.Signal(s); err != nil {
		c.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (c *child) wait(timeout time.Duration) int {
	c.t.Helper()
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		c.t.Fatalf("daemon did not exit within %v", timeout)
		return -1
	}
}

// dial connects a client or fails the test.
func dial(t *testing.T, socket string) *Client {
	t.Helper()
	c, err := Dial(zstortest.Ctx(t), socket)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// direct opens an in-process zstor client on a config file, to check
// what the daemon did independently of it.
func direct(t *testing.T, cfgPath string) *zstor.Client {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := zstor.Open(zstortest.Ctx(t), cfg, zstor.Options{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Backend: backend.Options{DownFor: 300 * time.Millisecond, DialTimeout: time.Second, IOTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// scrape returns the metrics page.
func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %v %s", err, resp.Status)
	}
	return string(b)
}

// metricLine returns the value of the first sample of name whose labels
// contain every given `k="v"` pair, and whether there is one.
func metricValue(page, name string, labels ...string) (string, bool) {
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if ok {
			return line[strings.LastIndexByte(line, ' ')+1:], true
		}
	}
	return "", false
}

func isNotRunning(err error) bool { return errors.Is(err, ErrNotRunning) }

// ops is the command line's view of a client: *zstor.Client and *Client
// must both satisfy it, with identical signatures.
type ops interface {
	Store(ctx context.Context, path string, o zstor.StoreOptions) (*zstor.StoreResult, error)
	Retrieve(ctx context.Context, path string, o zstor.RetrieveOptions) (*zstor.RetrieveResult, error)
	Check(ctx context.Context, key string) (pipeline.Checksum, error)
	Delete(ctx context.Context, key string) (int, error)
	List(ctx context.Context, prefix string) ([]zstor.Entry, int, error)
	Rebuild(ctx context.Context, key string) (*zstor.RebuildResult, error)
	Scrub(ctx context.Context) (*zstor.ScrubReport, error)
	Repair(ctx context.Context, prefix string) (*zstor.RepairReport, error)
	KeyFor(path string) (string, error)
	Close() error
}

var (
	_ ops = (*zstor.Client)(nil)
	_ ops = (*Client)(nil)
)
