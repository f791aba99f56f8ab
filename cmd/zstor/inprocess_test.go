package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/zstortest"
)

// These tests run the command line in the test process, to reach what the
// binary cannot show: the monitor hook's arguments and the
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
	if err := a.storeFile(ctx, c, p, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	if err := a.retrieve(ctx, c, p, zstor.RetrieveOptions{}); err != nil {
		t.Fatal(err)
	}
	if fileSHA(t, p) != dataSHA(data) {
		t.Fatal("retrieved bytes differ")
	}
	// A failing retrieve abandons its bar.
	if err := a.retrieve(ctx, c, filepath.Join(cl.Root, "bars", "none"), zstor.RetrieveOptions{}); err == nil {
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
