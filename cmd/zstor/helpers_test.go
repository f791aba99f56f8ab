package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/internal/racetest"
	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/zstortest"
)

// The command line tests run the real binary, built once in TestMain,
// against real zdb processes (qss/zstor/zstortest), as a user would.

var (
	zstorBin string // the built binary
	workDir  string // the binary's working directory: holds no zstor_config.toml
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zstor-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	zstorBin = filepath.Join(dir, "zstor")
	workDir = filepath.Join(dir, "work")
	os.Mkdir(workDir, 0o755)
	args := append(append([]string{"build"}, racetest.BuildFlags()...), "-o", zstorBin, ".")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/zstor: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is how one run of the binary ended.
type result struct {
	args           string
	code           int
	stdout, stderr string
}

// zstorRun runs the binary with -c cfg (unless cfg is "") and args.
func zstorRun(t *testing.T, cfg string, args ...string) result {
	t.Helper()
	argv := args
	if cfg != "" {
		argv = append([]string{"-c", cfg}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, zstorBin, argv...)
	cmd.Dir = workDir
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	r := result{args: strings.Join(args, " "), stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("zstor %s: %v", r.args, err)
	}
	t.Logf("zstor %s: exit %d in %v\n%s%s", r.args, r.code, time.Since(start).Round(time.Millisecond), r.stdout, r.stderr)
	racetest.Check(t, "zstor "+r.args, r.stderr)
	for _, bad := range []string{"panic:", "goroutine ", "runtime error"} {
		if strings.Contains(r.stderr, bad) {
			t.Fatalf("zstor %s: stderr looks like a crash:\n%s", r.args, r.stderr)
		}
	}
	if r.code < 0 {
		t.Fatalf("zstor %s: killed by a signal", r.args)
	}
	return r
}

// ok fails the test unless the run succeeded.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("zstor %s: exit %d\nstdout: %s\nstderr: %s", r.args, r.code, r.stdout, r.stderr)
	}
	return r
}

// fails checks that the run failed with exit code code and exactly one
// line on stderr containing each of want; it returns that line.
func (r result) fails(t *testing.T, code int, want ...string) string {
	t.Helper()
	if r.code != code {
		t.Fatalf("zstor %s: exit %d, want %d\nstdout: %s\nstderr: %s", r.args, r.code, code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Fatalf("zstor %s: stderr has %d lines, want one:\n%s", r.args, len(lines), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Fatalf("zstor %s: stderr %q does not mention %q", r.args, lines[0], w)
		}
	}
	return lines[0]
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// mustContain fails unless s contains every one of want.
func mustContain(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Fatalf("%s does not contain %q:\n%s", what, w, s)
		}
	}
}

// fileSHA is the SHA-256 of a file, read as a stream.
func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func dataSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// mustNotExist fails when path exists.
func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (or cannot be checked: %v)", path, err)
	}
}

// noTempFiles fails when dir holds a retrieve's temporary file.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".zstor-tmp-") {
			t.Fatalf("temporary file left behind: %s", filepath.Join(dir, e.Name()))
		}
	}
}

// openClient opens an in-process client on a config file, for tests that
// need to look inside the records (where a shard lives).
func openClient(t *testing.T, cfgPath string) *zstor.Client {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := zstor.Open(zstortest.Ctx(t), cfg, zstor.Options{Backend: backend.Options{DownFor: -1}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
