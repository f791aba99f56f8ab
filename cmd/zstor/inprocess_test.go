package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/pipeline"
	"qss/zstor/zstortest"
)

// These tests run the command line in the test process, to reach what the
// binary cannot show: the daemon hooks (replaced by fakes here) and the
// progress bars.

// runHere runs the command line in-process and returns its exit status,
// stdout and stderr.
func runHere(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	saved := slog.Default()
	defer slog.SetDefault(saved)
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	t.Logf("zstor %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// offlineConfig writes a valid config whose backends do not exist, with
// extra top-level keys, and returns its path and root.
func offlineConfig(t *testing.T, extra string) (string, string) {
	root := t.TempDir()
	text := fmt.Sprintf(`minimal_shards = 1
expected_shards = 1
root = %q
%s
[encryption]
key = %q

[meta]
type = "zdb"

[meta.config]
[[meta.config.backends]]
address = "127.0.0.1:1"

[[groups]]
[[groups.backends]]
address = "127.0.0.1:2"
`, root, extra, zstortest.TestKey)
	p := filepath.Join(t.TempDir(), "zstor_config.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, root
}

// fakeDaemon records the calls the commands make on the daemon.
type fakeDaemon struct {
	calls []string
	fail  error
}

var fakeSum = pipeline.Checksum{1, 2, 3}

func (f *fakeDaemon) note(s string) error {
	f.calls = append(f.calls, s)
	return f.fail
}

func (f *fakeDaemon) Store(_ context.Context, path string, o zstor.StoreOptions) (*zstor.StoreResult, error) {
	if o.Progress != nil {
		return nil, errors.New("a progress callback was sent to the daemon")
	}
	return &zstor.StoreResult{Key: "k/" + filepath.Base(path), Size: 3, Chunks: 1, Checksum: fakeSum},
		f.note(fmt.Sprintf("store %s key=%q delete=%v", path, o.Key, o.DeleteLocal))
}

func (f *fakeDaemon) Queue(_ context.Context, path string, o zstor.StoreOptions) error {
	return f.note(fmt.Sprintf("queue %s key=%q delete=%v", path, o.Key, o.DeleteLocal))
}

func (f *fakeDaemon) Retrieve(_ context.Context, path string, o zstor.RetrieveOptions) (*zstor.RetrieveResult, error) {
	return &zstor.RetrieveResult{Key: "k/" + filepath.Base(path), Size: 3, Checksum: fakeSum}, f.note("retrieve " + path)
}

func (f *fakeDaemon) Check(_ context.Context, key string) (pipeline.Checksum, error) {
	return fakeSum, f.note("check " + key)
}

func (f *fakeDaemon) Delete(_ context.Context, key string) (int, error) {
	return 0, f.note("delete " + key)
}

func (f *fakeDaemon) List(_ context.Context, prefix string) ([]zstor.Entry, int, error) {
	return []zstor.Entry{{Key: prefix + "x", Size: 7, Stored: time.Unix(0, 0), K: 1, N: 1, MinShards: 1}}, 0, f.note("list " + prefix)
}

func (f *fakeDaemon) Rebuild(_ context.Context, key string) (*zstor.RebuildResult, error) {
	return &zstor.RebuildResult{Key: key, Rebuilt: 1, Chunks: 1}, f.note("rebuild " + key)
}

func (f *fakeDaemon) Scrub(context.Context) (*zstor.ScrubReport, error) {
	return &zstor.ScrubReport{Objects: 1, Shards: 1}, f.note("scrub")
}

func (f *fakeDaemon) Repair(_ context.Context, prefix string) (*zstor.RepairReport, error) {
	return &zstor.RepairReport{Objects: 1}, f.note("repair " + prefix)
}

func (f *fakeDaemon) KeyFor(path string) (string, error) { return "k/" + filepath.Base(path), nil }
func (f *fakeDaemon) Close() error                       { return nil }

// TestThroughDaemon: with a socket configured and a daemon answering,
// every object command goes through it, and store -n queues.
func TestThroughDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "zstor.sock")
	cfg, root := offlineConfig(t, fmt.Sprintf("socket = %q", sock))
	fake := &fakeDaemon{}
	savedDial := dialDaemon
	t.Cleanup(func() { dialDaemon = savedDial })
	dialDaemon = func(_ context.Context, socket string) (remoteOps, error) {
		if socket != sock {
			return nil, fmt.Errorf("dialled %s, want %s", socket, sock)
		}
		return fake, nil
	}
	file := filepath.Join(root, "f.txt")
	os.WriteFile(file, []byte("abc"), 0o644)
	ctx := context.Background()
	steps := []struct {
		args []string
		call string // the daemon call made
		out  string // in stdout
	}{
		{[]string{"store", "-n", "-f", file}, "queue " + file + ` key="" delete=false`, "queued " + file + " on the daemon"},
		{[]string{"store", "-n", "-d", "-f", root, "-k", filepath.Join(root, "kd")}, "queue " + file + ` key="k/f.txt" delete=true`, "queued"},
		{[]string{"store", "-f", file}, "store " + file + ` key="" delete=false`, "stored " + file + " as k/f.txt"},
		{[]string{"retrieve", "-f", file}, "retrieve " + file, "retrieved " + file + " from k/f.txt"},
		{[]string{"check", "-f", file}, "check k/f.txt", fakeSum.String()},
		{[]string{"delete", "-f", file}, "delete k/f.txt", "deleted k/f.txt"},
		{[]string{"list", "p/"}, "list p/", "healthy 1/1  p/x"},
		{[]string{"rebuild", "-k", "some/key"}, "rebuild some/key", "rebuilt some/key"},
		{[]string{"rebuild", "-f", file}, "rebuild k/f.txt", "rebuilt k/f.txt"},
		{[]string{"scrub"}, "scrub", "scrubbed 1 objects"},
		{[]string{"repair", "p/"}, "repair p/", "checked 1 objects"},
	}
	for _, s := range steps {
		fake.calls = nil
		code, out, errOut := runHere(t, ctx, append([]string{"-c", cfg}, s.args...)...)
		if code != 0 || errOut != "" {
			t.Fatalf("zstor %v: exit %d, stderr %q", s.args, code, errOut)
		}
		if len(fake.calls) != 1 || fake.calls[0] != s.call {
			t.Fatalf("zstor %v: daemon calls %q, want %q", s.args, fake.calls, s.call)
		}
		mustContain(t, "stdout", out, s.out)
	}

	// The daemon's errors are the command's: one line, exit 1.
	fake.fail = errors.New("zstor daemon: it went wrong")
	code, _, errOut := runHere(t, ctx, "-c", cfg, "check", "-f", file)
	if code != 1 || errOut != "zstor daemon: it went wrong\n" {
		t.Fatalf("daemon error: exit %d, stderr %q", code, errOut)
	}

	// test and status never go through the daemon.
	fake.calls = nil
	runHere(t, ctx, "-c", cfg, "status")
	runHere(t, ctx, "-c", cfg, "test")
	if len(fake.calls) != 0 {
		t.Fatalf("test and status called the daemon: %q", fake.calls)
	}

	// A daemon that does not answer properly: said once, then in-process.
	dialDaemon = func(context.Context, string) (remoteOps, error) { return nil, errors.New("protocol mismatch") }
	code, _, errOut = runHere(t, ctx, "-c", cfg, "check", "-f", file)
	if ls := lines(errOut); code != 1 || len(ls) != 2 || !strings.Contains(ls[0], "did not answer (protocol mismatch); running in-process") ||
		!strings.Contains(ls[1], "not enough metadata backends") {
		t.Fatalf("daemon dial error: exit %d, stderr %q", code, errOut)
	}
}

// TestMonitor: monitor runs the daemon hook with the config's absolute
// path and a context that a signal cancels, or fails clearly without one.
func TestMonitor(t *testing.T) {
	saved := runMonitor
	t.Cleanup(func() { runMonitor = saved })
	ctx := context.Background()

	runMonitor = nil
	code, _, errOut := runHere(t, ctx, "monitor")
	if code != 1 || errOut != "zstor monitor: daemon not available in this build\n" {
		t.Fatalf("monitor without a daemon: exit %d, stderr %q", code, errOut)
	}

	var gotPath string
	runMonitor = func(ctx context.Context, configPath string, logger *slog.Logger) error {
		gotPath = configPath
		if logger == nil {
			return errors.New("no logger")
		}
		<-ctx.Done()
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	code, _, errOut = runHere(t, cctx, "-c", "my.toml", "monitor")
	wd, _ := os.Getwd()
	if code != 0 || errOut != "" || gotPath != filepath.Join(wd, "my.toml") {
		t.Fatalf("monitor: exit %d, stderr %q, config %q", code, errOut, gotPath)
	}

	runMonitor = func(context.Context, string, *slog.Logger) error {
		return errors.New("zstor daemon: a daemon already runs on /x.sock")
	}
	code, _, errOut = runHere(t, ctx, "monitor")
	if code != 1 || errOut != "zstor daemon: a daemon already runs on /x.sock\n" {
		t.Fatalf("monitor failing: exit %d, stderr %q", code, errOut)
	}
}

// TestProgressBars stores and retrieves in-process with the bars on (they
// render nothing into a buffer, but run their whole course).
func TestProgressBars(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfgPath := cl.WriteConfig(zstortest.TestKey, "")
	c := openClient(t, cfgPath)
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, tty: true, log: slog.New(slog.DiscardHandler), cfg: c.Config()}
	ctx := zstortest.Ctx(t)
	data := zstortest.RandomBytes(9*cl.ChunkSize + 3)
	p := cl.WriteFile("bars/file.bin", data)
	if err := a.storeFile(ctx, c, false, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	if err := a.retrieve(ctx, c, false, p); err != nil {
		t.Fatal(err)
	}
	if fileSHA(t, p) != dataSHA(data) {
		t.Fatal("retrieved bytes differ")
	}
	// A failing retrieve abandons its bar.
	if err := a.retrieve(ctx, c, false, filepath.Join(cl.Root, "bars", "none")); err == nil {
		t.Fatal("retrieve of a missing object succeeded")
	}
	mustContain(t, "stdout", out.String(), "stored "+p, "retrieved "+p)
}

func TestHelpers(t *testing.T) {
	for n, want := range map[int64]string{-1: "-", 0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 5 << 30: "5.0GiB"} {
		if got := sizeString(n); got != want {
			t.Errorf("sizeString(%d) = %q, want %q", n, got, want)
		}
	}
	for _, tc := range []struct {
		min  int
		want string
	}{{6, "healthy 6/6"}, {4, "degraded 4/6"}, {3, "UNREADABLE 3/6"}} {
		if got := health(zstor.Entry{K: 4, N: 6, MinShards: tc.min}); got != tc.want {
			t.Errorf("health(%d of 6) = %q, want %q", tc.min, got, tc.want)
		}
	}
	if got := oneLine(errors.New("open x:\n  no  such file\r\n")); got != "zstor: open x: no  such file" {
		t.Errorf("oneLine = %q", got)
	}
	if got := oneLine(errors.New("zstor store x: failed")); got != "zstor store x: failed" {
		t.Errorf("oneLine = %q", got)
	}
}
