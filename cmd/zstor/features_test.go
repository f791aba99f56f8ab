package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"qss/zstor"
	"qss/zstor/zstortest"
)

// TestRetrieveElsewhere: retrieve -o to a file and into a directory; the
// stored mode and modification time come back; an unchanged local file is
// left alone; a changed one is kept unless --force; a name of 250 bytes
// (too long for the old temporary name) stores and retrieves.
func TestRetrieveElsewhere(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	data := zstortest.RandomBytes(3*cl.ChunkSize + 17)
	p := cl.WriteFile("o/file.bin", data)
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	zstorRun(t, cfg, "store", "-f", p).ok(t)

	checkFile := func(path string, mode os.FileMode) {
		t.Helper()
		if fileSHA(t, path) != dataSHA(data) {
			t.Fatalf("%s: bytes differ", path)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Fatalf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
		if !fi.ModTime().Equal(mtime) {
			t.Fatalf("%s: mtime %v, want %v", path, fi.ModTime(), mtime)
		}
	}
	// -o FILE: the stored path is untouched (it still exists as stored).
	out := filepath.Join(t.TempDir(), "sub", "copy.bin")
	r := zstorRun(t, cfg, "retrieve", "-f", p, "-o", out).ok(t)
	mustContain(t, "retrieve -o", r.stdout, "retrieved "+out+" from o/file.bin")
	checkFile(out, 0o640)
	// -o DIR: into the directory, under the file's name.
	outDir := t.TempDir()
	zstorRun(t, cfg, "retrieve", "-f", p, "--output", outDir).ok(t)
	checkFile(filepath.Join(outDir, "file.bin"), 0o640)
	noTempFiles(t, outDir)

	// Unchanged: nothing fetched, mode and time set again.
	os.Chmod(p, 0o600)
	mustContain(t, "retrieve over an unchanged file", zstorRun(t, cfg, "retrieve", "-f", p).ok(t).stdout, "unchanged "+p)
	checkFile(p, 0o640)
	// A new mode alone is stored (as a new version), and comes back.
	os.Chmod(p, 0o604)
	mustContain(t, "store after chmod", zstorRun(t, cfg, "store", "-f", p).ok(t).stdout, "replaced the previous version")
	zstorRun(t, cfg, "retrieve", "-f", p, "-o", filepath.Join(outDir, "m.bin")).ok(t)
	checkFile(filepath.Join(outDir, "m.bin"), 0o604)
	os.Chmod(p, 0o640)
	zstorRun(t, cfg, "store", "-f", p).ok(t)

	// Changed since stored: kept without --force, replaced with it.
	local := append(bytes.Clone(data[:100]), "local edit"...)
	os.WriteFile(p, local, 0o640)
	zstorRun(t, cfg, "retrieve", "-f", p).fails(t, 1, "differs from the stored version", p, "--force")
	if got, _ := os.ReadFile(p); !bytes.Equal(got, local) {
		t.Fatal("retrieve without --force replaced a changed local file")
	}
	noTempFiles(t, filepath.Dir(p))
	mustContain(t, "retrieve -o over an equal file", zstorRun(t, cfg, "retrieve", "-f", p, "-o", out).ok(t).stdout, "unchanged "+out)
	zstorRun(t, cfg, "retrieve", "--force", "-f", p).ok(t)
	checkFile(p, 0o640)

	// A 250-byte name.
	long := strings.Repeat("n", 246) + ".bin"
	lp := cl.WriteFile("o/"+long, []byte("long name"))
	zstorRun(t, cfg, "store", "-f", lp).ok(t)
	os.Remove(lp)
	zstorRun(t, cfg, "retrieve", "-f", lp).ok(t)
	if got, _ := os.ReadFile(lp); string(got) != "long name" {
		t.Fatalf("long name: retrieved %q", got)
	}
}

// TestStoreTree: store -r with --exclude stores a tree (symbolic links as
// links), reports a FIFO and skips excluded names; retrieve of the
// directory brings the tree back, in place or elsewhere. store -f DIR
// stays non-recursive and reports what it leaves out; store -f FIFO fails
// at once instead of hanging.
func TestStoreTree(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	files := map[string][]byte{
		"tree/a.txt":            []byte("alpha"),
		"tree/sub/b.bin":        zstortest.RandomBytes(2*cl.ChunkSize + 3),
		"tree/sub/deep/c.txt":   []byte("gamma"),
		"tree/sub/deep/empty":   nil,
		"tree/skip.log":         []byte("excluded by name"),
		"tree/cache/x.txt":      []byte("excluded directory"),
		"tree/sub/cache/y.txt":  []byte("excluded directory, deeper"),
		"tree/sub/keep.log.txt": []byte("not excluded"),
	}
	for name, data := range files {
		cl.WriteFile(name, data)
	}
	dir := filepath.Join(cl.Root, "tree")
	os.Symlink("a.txt", filepath.Join(dir, "link"))
	os.Symlink("../nowhere", filepath.Join(dir, "sub", "dead"))
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	// store -f FIFO: an error at once, not a hang.
	start := time.Now()
	zstorRun(t, cfg, "store", "-f", fifo).fails(t, 1, "not a regular file", "a FIFO")
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("store -f FIFO took %v", d)
	}
	// store -f DIR: only the regular files directly inside (a.txt, the
	// link to it, skip.log); the FIFO and the subdirectories reported.
	r := zstorRun(t, cfg, "store", "-f", dir).ok(t)
	if n := strings.Count(r.stdout, "stored "); n != 3 {
		t.Fatalf("store -f DIR: %d stored, want 3", n)
	}
	mustContain(t, "store -f DIR stderr", r.stderr, "skipped "+fifo+": a FIFO", "2 directories inside "+dir+" (store -r")
	zstorRun(t, cfg, "check", "-f", filepath.Join(dir, "sub", "b.bin")).fails(t, 1, "no stored object")
	zstorRun(t, cfg, "delete", "-f", filepath.Join(dir, "skip.log")).ok(t)
	zstorRun(t, cfg, "delete", "-f", filepath.Join(dir, "link")).ok(t)

	// store -r with excludes.
	zstorRun(t, cfg, "store", "-r", "-f", dir, "--exclude", "[").fails(t, 2, "--exclude")
	r = zstorRun(t, cfg, "store", "-r", "-f", dir, "--exclude", "*.log", "--exclude", "cache").ok(t)
	mustContain(t, "store -r", r.stdout, "stored "+filepath.Join(dir, "link")+" as tree/link (symbolic link)",
		"stored "+filepath.Join(dir, "sub", "dead")+" as tree/sub/dead (symbolic link)")
	if ls := lines(r.stderr); len(ls) != 1 || !strings.Contains(ls[0], "skipped "+fifo+": a FIFO") {
		t.Fatalf("store -r stderr: %q", r.stderr)
	}
	for name := range files {
		p := filepath.Join(cl.Root, name)
		excluded := strings.HasSuffix(name, ".log") || strings.Contains(name, "/cache/")
		c := zstorRun(t, cfg, "check", "-f", p)
		if (c.code != 0) != excluded {
			t.Fatalf("check %s: exit %d (excluded %v)", name, c.code, excluded)
		}
	}
	// Again: every file unchanged.
	r = zstorRun(t, cfg, "store", "-r", "-f", dir, "--exclude", "*.log", "--exclude", "cache").ok(t)
	if strings.Contains("\n"+r.stdout, "\nstored ") {
		t.Fatalf("a second store -r uploaded again:\n%s", r.stdout)
	}

	// retrieve of the directory, elsewhere: the tree, links as links.
	out := filepath.Join(t.TempDir(), "restored")
	zstorRun(t, cfg, "retrieve", "-f", dir, "-o", out).ok(t)
	checkTree := func(root string) {
		t.Helper()
		for name, data := range files {
			rel := strings.TrimPrefix(name, "tree/")
			p := filepath.Join(root, rel)
			if strings.HasSuffix(name, ".log") || strings.Contains(name, "/cache/") {
				mustNotExist(t, p)
				continue
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: %v, %d bytes, want %d", p, err, len(got), len(data))
			}
		}
		for link, target := range map[string]string{"link": "a.txt", "sub/dead": "../nowhere"} {
			if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
				t.Fatalf("%s: link to %q (%v), want %q", link, got, err, target)
			}
		}
		mustNotExist(t, filepath.Join(root, "fifo"))
	}
	checkTree(out)

	// In place, after removing the tree.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	zstorRun(t, cfg, "retrieve", "-f", dir).ok(t)
	checkTree(dir)
	// Again: everything unchanged, nothing refused.
	r = zstorRun(t, cfg, "retrieve", "-f", dir).ok(t)
	if n := strings.Count(r.stdout, "unchanged "); n != 7 {
		t.Fatalf("retrieve of an unchanged tree: %d unchanged, want 7:\n%s", n, r.stdout)
	}
	// One local change: that file is refused (exit 1), the others fine.
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("changed"), 0o644)
	r = zstorRun(t, cfg, "retrieve", "-f", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "differs from the stored version") || !strings.Contains(r.stderr, "1 of the 7 objects") {
		t.Fatalf("retrieve of a tree with a changed file: exit %d, stderr %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a.txt")); string(got) != "changed" {
		t.Fatal("the changed file was replaced")
	}

	// A directory that became a link to elsewhere, stored again: its old
	// files are still stored under it, but a tree retrieve never writes
	// through the link.
	cl.WriteFile("tree2/d/f.txt", []byte("inside"))
	dir2 := filepath.Join(cl.Root, "tree2")
	zstorRun(t, cfg, "store", "-r", "-f", dir2).ok(t)
	outside := t.TempDir()
	os.RemoveAll(filepath.Join(dir2, "d"))
	os.Symlink(outside, filepath.Join(dir2, "d"))
	zstorRun(t, cfg, "store", "-r", "-f", dir2).ok(t)
	os.RemoveAll(dir2)
	r = zstorRun(t, cfg, "retrieve", "-f", dir2)
	if r.code != 1 || !strings.Contains(r.stderr, "does not write through") {
		t.Fatalf("retrieve through a stored link: exit %d, stderr %q", r.code, r.stderr)
	}
	mustNotExist(t, filepath.Join(outside, "f.txt"))
}

// TestJSONAndStatus: --json on list, check, status and test; status exits
// 1 when a backend is down and objects are below full redundancy; list
// sizes are human-readable unless --bytes; --version; shell completion.
func TestJSONAndStatus(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	p := cl.WriteFile("j/a.bin", zstortest.RandomBytes(1536))
	zstorRun(t, cfg, "store", "-f", p).ok(t)

	var ls struct {
		Objects []struct {
			Key       string `json:"key"`
			Size      int64  `json:"size"`
			Checksum  string `json:"checksum"`
			MinShards int    `json:"min_shards"`
			N         int    `json:"n"`
			Health    string `json:"health"`
		} `json:"objects"`
		Undecryptable int `json:"undecryptable"`
	}
	decode := func(what, s string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(s), v); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", what, err, s)
		}
	}
	decode("list --json", zstorRun(t, cfg, "list", "--json").ok(t).stdout, &ls)
	if len(ls.Objects) != 1 || ls.Objects[0].Key != "j/a.bin" || ls.Objects[0].Size != 1536 || ls.Objects[0].Health != "healthy" || ls.Objects[0].MinShards != 6 {
		t.Fatalf("list --json: %+v", ls)
	}
	var ck struct{ Key, Checksum string }
	decode("check --json", zstorRun(t, cfg, "check", "--json", "-f", p).ok(t).stdout, &ck)
	if ck.Key != "j/a.bin" || ck.Checksum != ls.Objects[0].Checksum {
		t.Fatalf("check --json: %+v", ck)
	}
	mustContain(t, "list", zstorRun(t, cfg, "list").ok(t).stdout, "1.5KiB ")
	mustContain(t, "list --bytes", zstorRun(t, cfg, "list", "--bytes").ok(t).stdout, "1536 ")

	type statusJSON struct {
		OK       bool `json:"ok"`
		Backends []struct {
			Kind      string `json:"kind"`
			Backend   string `json:"backend"`
			Reachable bool   `json:"reachable"`
			Entries   *int64 `json:"entries"`
		} `json:"backends"`
		Objects struct {
			Total, Healthy, Degraded, Unreadable int
		} `json:"objects"`
		Problems []string `json:"problems"`
	}
	var st statusJSON
	decode("status --json", zstorRun(t, cfg, "status", "--json").ok(t).stdout, &st)
	if !st.OK || len(st.Backends) != 10 || st.Objects.Total != 1 || st.Objects.Healthy != 1 || len(st.Problems) != 0 {
		t.Fatalf("status --json: %+v", st)
	}
	mustContain(t, "status", zstorRun(t, cfg, "status").ok(t).stdout, "objects: 1 (1 healthy, 0 degraded, 0 unreadable)")
	var tj struct {
		OK        bool `json:"ok"`
		Placement struct {
			OK       bool     `json:"ok"`
			Backends []string `json:"backends"`
		} `json:"placement"`
	}
	decode("test --json", zstorRun(t, cfg, "test", "--json").ok(t).stdout, &tj)
	if !tj.OK || !tj.Placement.OK || len(tj.Placement.Backends) != 6 {
		t.Fatalf("test --json: %+v", tj)
	}

	// A data backend down: status fails; its JSON says why.
	cl.Data[2].Kill()
	r := zstorRun(t, cfg, "status", "--json")
	r.fails(t, 1, "1 backends unreachable", "1 objects below full redundancy")
	st = statusJSON{}
	decode("status --json, a backend down", r.stdout, &st)
	if st.OK || st.Objects.Degraded != 1 || len(st.Problems) != 2 {
		t.Fatalf("status --json with a backend down: %+v", st)
	}
	down := 0
	for _, b := range st.Backends {
		if !b.Reachable {
			down++
			if b.Backend != cl.Data[2].Addr()+"/"+zstortest.DataNS || b.Entries != nil {
				t.Fatalf("down backend: %+v", b)
			}
		}
	}
	if down != 1 {
		t.Fatalf("status --json: %d backends down, want 1", down)
	}
	r = zstorRun(t, cfg, "test", "--json")
	r.fails(t, 1, "the config cannot work")
	decode("test --json, a backend down", r.stdout, &tj)
	if tj.OK || tj.Placement.OK {
		t.Fatalf("test --json with a backend down: %+v", tj)
	}

	// --version, completion.
	v := zstorRun(t, "", "--version").ok(t).stdout
	if !strings.HasPrefix(v, "zstor ") || !strings.Contains(v, "daemon protocol v2") || !strings.Contains(v, "go1.") {
		t.Fatalf("--version: %q", v)
	}
	mustContain(t, "completion bash", zstorRun(t, "", "completion", "bash").ok(t).stdout, "__start_zstor")
	zstorRun(t, "", "completion", "zsh").ok(t)
	zstorRun(t, "", "completion", "fish").ok(t)
	c := zstorRun(t, "", "__complete", "re").ok(t).stdout
	mustContain(t, "completion of re", c, "retrieve", "rebuild", "repair")
	mustContain(t, "completion of retrieve flags", zstorRun(t, "", "__complete", "retrieve", "-f", "x", "--").ok(t).stdout, "--force", "--output")
}

// TestDaemonProgressAndQueue: through a running monitor, a store and a
// retrieve report progress (total, then bytes, to the end), a changed local
// file is protected, and `zstor queue` lists a queued store that cannot
// run yet (its data backends are down), with --json.
func TestDaemonProgressAndQueue(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := filepath.Join(t.TempDir(), "zstor.sock")
	cfgPath := filepath.Join(t.TempDir(), "zstor_config.toml")
	if err := os.WriteFile(cfgPath, []byte(cl.ConfigTOML(zstortest.TestKey, fmt.Sprintf("socket = %q\n", sock))), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code := dmRun(t, "-c", cfgPath, "queue")
	if code != 0 || !strings.Contains(out, "the queue is empty") {
		t.Fatalf("queue without a daemon, never started: exit %d, stdout %q", code, out)
	}
	m := dmStartMonitor(t, cfgPath, sock)

	// Progress through the daemon, as the CLI's bars get it.
	a := &app{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler), configPath: cfgPath}
	if err := a.loadConfig(); err != nil {
		t.Fatal(err)
	}
	o, remote, err := a.openOps(context.Background())
	if err != nil || remote == nil {
		t.Fatalf("openOps: %v (remote %v)", err, remote)
	}
	data := zstortest.RandomBytes(6*cl.ChunkSize + 5)
	p := cl.WriteFile("q/p.bin", data)
	var got int64
	so := zstor.StoreOptions{Progress: func(n int) { got += int64(n) }}
	if _, err := o.Store(context.Background(), p, so); err != nil {
		t.Fatal(err)
	}
	if got != int64(len(data)) {
		t.Fatalf("store through the daemon reported %d bytes, want %d", got, len(data))
	}
	os.Remove(p)
	var total int64 = -1
	got = 0
	ro := zstor.RetrieveOptions{Started: func(n int64) { total = n }, Progress: func(n int) { got += int64(n) }, Protect: true}
	if _, err := o.Retrieve(context.Background(), p, ro); err != nil {
		t.Fatal(err)
	}
	if total != int64(len(data)) || got != total {
		t.Fatalf("retrieve through the daemon: total %d, %d bytes reported, want %d", total, got, len(data))
	}
	// Protect crosses the socket.
	os.WriteFile(p, []byte("edited"), 0o644)
	if _, err := o.Retrieve(context.Background(), p, ro); err == nil || !strings.Contains(err.Error(), "differs from the stored version") {
		t.Fatalf("retrieve over a changed file through the daemon: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "edited" {
		t.Fatal("the daemon replaced a changed local file")
	}

	// A queued store that cannot run: every data backend down.
	out, _, code = dmRun(t, "-c", cfgPath, "queue")
	if code != 0 || !strings.Contains(out, "the queue is empty") {
		t.Fatalf("queue: exit %d, %q", code, out)
	}
	for _, s := range cl.Data {
		s.Kill()
	}
	qp := cl.WriteFile("q/queued.bin", []byte("waiting"))
	if _, stderr, code := dmRun(t, "-c", cfgPath, "store", "-n", "-f", qp); code != 0 {
		t.Fatalf("store -n: exit %d: %s", code, stderr)
	}
	dmWaitOutput(t, m, "queued store failed", 20*time.Second)
	out, _, code = dmRun(t, "-c", cfgPath, "queue")
	if code != 0 || !strings.Contains(out, qp) || !strings.HasPrefix(out, "QUEUED") {
		t.Fatalf("queue: exit %d:\n%s", code, out)
	}
	out, _, code = dmRun(t, "-c", cfgPath, "queue", "--json")
	var q struct {
		Jobs []struct {
			Path      string `json:"path"`
			Attempts  int    `json:"attempts"`
			LastError string `json:"last_error"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &q); code != 0 || err != nil {
		t.Fatalf("queue --json: exit %d, %v:\n%s", code, err, out)
	}
	if len(q.Jobs) != 1 || q.Jobs[0].Path != qp || q.Jobs[0].Attempts < 1 || q.Jobs[0].LastError == "" {
		t.Fatalf("queue --json: %+v", q)
	}

	// A FIFO through the daemon fails at once, and does not block its
	// shutdown.
	fifo := filepath.Join(cl.Root, "q", "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, zstorBin, "-c", cfgPath, "store", "-f", fifo)
	b, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(b), "a FIFO") {
		t.Fatalf("store -f FIFO through the daemon: exit %d: %s", cmd.ProcessState.ExitCode(), b)
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop within 30 s of SIGTERM")
	}

	// The daemon stopped: its queue file still lists the job.
	out, stderr, code := dmRun(t, "-c", cfgPath, "queue")
	if code != 0 || !strings.Contains(out, qp) || !strings.Contains(stderr, "no daemon is running") {
		t.Fatalf("queue after the daemon stopped: exit %d:\n%s%s", code, out, stderr)
	}
	out, _, _ = dmRun(t, "-c", cfgPath, "queue", "--json")
	var q2 struct {
		DaemonRunning bool `json:"daemon_running"`
		Jobs          []struct {
			Path string `json:"path"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &q2); err != nil || q2.DaemonRunning || len(q2.Jobs) != 1 || q2.Jobs[0].Path != qp {
		t.Fatalf("queue --json after the daemon stopped: %v\n%s", err, out)
	}
}

// TestStoreChangingFile: a file rewritten all the time while `zstor store`
// reads it is refused (exit 1) and nothing is committed; once it stops
// changing it stores.
func TestStoreChangingFile(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	size := 8 << 20
	p := cl.WriteFile("chg/f.bin", zstortest.RandomBytes(size))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			b[0] = byte(i)
			f.WriteAt(b, int64(i*4096)%int64(size))
		}
	}()
	r := zstorRun(t, cfg, "store", "-f", p)
	close(stop)
	<-done
	r.fails(t, 1, "changed while it was being stored", "nothing was committed")
	zstorRun(t, cfg, "check", "-f", p).fails(t, 1, "no stored object")
	want, err := zstor.LocalChecksum(p)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "store once still", zstorRun(t, cfg, "store", "-f", p).ok(t).stdout, "checksum "+want.String())
}
