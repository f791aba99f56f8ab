package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"qss/internal/zdbtest"
	"qss/zstor"
	"qss/zstor/zstortest"
)

func socketPath(t *testing.T) string { return filepath.Join(t.TempDir(), "zstor.sock") }

func socketExtra(sock string) string { return fmt.Sprintf("socket = %q\n", sock) }

// Every operation through the daemon, the error kinds, the socket's mode,
// and the refusal of a second daemon.
func TestRoundTrip(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock))
	startInProcess(t, cfg, sock, testOptions())
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)

	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if err := RunOptions(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), testOptions()); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second daemon on the same socket: %v, want ErrAlreadyRunning", err)
	}

	data := zstortest.RandomBytes(300 << 10)
	p := cl.WriteFile("dir/a.bin", data)
	key, err := c.KeyFor(p)
	if err != nil || key != "dir/a.bin" {
		t.Fatalf("KeyFor = %q, %v", key, err)
	}
	want, _ := zstor.LocalChecksum(p)
	res, err := c.Store(ctx, p, zstor.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Key != key || res.Size != int64(len(data)) || res.Checksum != want || res.Chunks != 5 || res.Skipped {
		t.Fatalf("store result %+v", res)
	}
	if res, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil || !res.Skipped {
		t.Fatalf("storing again: %+v %v, want skipped", res, err)
	}
	if sum, err := c.Check(ctx, key); err != nil || sum != want {
		t.Fatalf("check = %s, %v; want %s", sum, err, want)
	}
	es, foreign, err := c.List(ctx, "dir/")
	if err != nil || foreign != 0 || len(es) != 1 || es[0].Key != key || es[0].Checksum != want || es[0].MinShards != 6 || es[0].K != 4 {
		t.Fatalf("list = %+v, %d, %v", es, foreign, err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	rr, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{})
	if err != nil || rr.Checksum != want || rr.Size != int64(len(data)) {
		t.Fatalf("retrieve = %+v, %v", rr, err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("retrieved bytes differ")
	}
	if rb, err := c.Rebuild(ctx, key); err != nil || rb.Key != key || rb.Rebuilt != 0 {
		t.Fatalf("rebuild = %+v, %v", rb, err)
	}
	if sr, err := c.Scrub(ctx); err != nil || sr.Objects != 1 || sr.Shards != 5*6 || len(sr.Problems) != 0 {
		t.Fatalf("scrub = %+v, %v", sr, err)
	}
	if rp, err := c.Repair(ctx, ""); err != nil || rp.Objects != 1 || len(rp.Repaired) != 0 || len(rp.Errors) != 0 {
		t.Fatalf("repair = %+v, %v", rp, err)
	}

	// A relative path is made absolute by the client.
	t.Chdir(filepath.Join(cl.Root, "dir"))
	if k, err := c.KeyFor("a.bin"); err != nil || k != key {
		t.Fatalf("KeyFor(relative) = %q, %v", k, err)
	}

	// store -n: queued, then stored in the background.
	qdata := zstortest.RandomBytes(100 << 10)
	qp := cl.WriteFile("dir/q.bin", qdata)
	qwant, _ := zstor.LocalChecksum(qp)
	for range 3 { // coalesced
		if err := c.Queue(ctx, qp, zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the queued store", 20*time.Second, func() bool {
		sum, err := c.Check(ctx, "dir/q.bin")
		return err == nil && sum == qwant
	})
	// store -n -d: the local file goes once stored.
	dp := cl.WriteFile("dir/d.bin", zstortest.RandomBytes(10<<10))
	dwant, _ := zstor.LocalChecksum(dp)
	if err := c.Queue(ctx, dp, zstor.StoreOptions{DeleteLocal: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queued store with delete_local", 20*time.Second, func() bool {
		_, serr := os.Stat(dp)
		sum, err := c.Check(ctx, "dir/d.bin")
		return errors.Is(serr, fs.ErrNotExist) && err == nil && sum == dwant
	})

	// Errors keep their kind across the socket.
	_, err = c.Check(ctx, "no/such/key")
	if !errors.Is(err, zstor.ErrNotStored) || !strings.Contains(err.Error(), "no/such/key") {
		t.Fatalf("check of a missing key: %v, want ErrNotStored naming the key", err)
	}
	missing := filepath.Join(cl.Root, "missing.bin")
	if _, err := c.Store(ctx, missing, zstor.StoreOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("store of a missing file: %v, want fs.ErrNotExist", err)
	}
	if err := c.Queue(ctx, missing, zstor.StoreOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("queue of a missing file: %v, want fs.ErrNotExist", err)
	}
	outside := filepath.Join(t.TempDir(), "x")
	os.WriteFile(outside, []byte("x"), 0o644)
	if _, err := c.KeyFor(outside); !errors.Is(err, zstor.ErrNotUnderRoot) {
		t.Fatalf("KeyFor outside root: %v, want ErrNotUnderRoot", err)
	}
	if err := c.Queue(ctx, outside, zstor.StoreOptions{}); !errors.Is(err, zstor.ErrNotUnderRoot) {
		t.Fatalf("queue outside root: %v, want ErrNotUnderRoot", err)
	}
	if err := c.Queue(ctx, cl.Root, zstor.StoreOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("queue of a directory: %v", err)
	}

	if n, err := c.Delete(ctx, key); err != nil || n != 0 {
		t.Fatalf("delete = %d, %v", n, err)
	}
	if _, err := c.Check(ctx, key); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("check after delete: %v", err)
	}
	if _, err := c.Delete(ctx, key); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatalf("delete again: %v", err)
	}

	// Another protocol version is refused with one clear error.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, `{"v":99,"op":"ping"}`+"\n")
	line, _ := bufio.NewReader(conn).ReadBytes('\n')
	conn.Close()
	var resp struct {
		Error *wireError `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil || resp.Error == nil || resp.Error.Kind != KindVersion {
		t.Fatalf("v99 request answered %s", line)
	}

	// Nothing listening: ErrNotRunning, for a missing socket and for a
	// stale one.
	if _, err := Dial(ctx, filepath.Join(t.TempDir(), "none.sock")); !isNotRunning(err) {
		t.Fatalf("dial of a missing socket: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := Dial(ctx, stale); !isNotRunning(err) {
		t.Fatalf("dial of a stale socket: %v", err)
	}
}

// A daemon refuses to replace a socket path that is not a socket, and
// needs a socket in its config.
func TestRefusals(t *testing.T) {
	cl := zstortest.New(t, 6)
	ctx := zstortest.Ctx(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	notSock := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notSock, nil, 0o644)
	err := RunOptions(ctx, cl.WriteConfig(zstortest.TestKey, socketExtra(notSock)), quiet, testOptions())
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("socket path is a regular file: %v", err)
	}
	err = RunOptions(ctx, cl.WriteConfig(zstortest.TestKey, ""), quiet, testOptions())
	if err == nil || !strings.Contains(err.Error(), "socket") {
		t.Fatalf("no socket configured: %v", err)
	}
}

var readyQueued = regexp.MustCompile(`zstor daemon ready.* queued=(\d+)`)

// Queued stores survive kill -9 of the daemon: the restarted daemon finds
// them on disk, stores every one, and each retrieves identically.
func TestKill9QueuedStores(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock))
	o := testOptions()
	o.QueueWorkers = 1
	d := startChild(t, cfg, sock, o)
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)

	// The data backends are frozen while the jobs are queued and the
	// daemon is killed, so the kill certainly finds stores pending and
	// one in flight.
	frozen := freeze(t, cl)
	const files = 24
	datas := map[string][]byte{}
	for i := range files {
		name := fmt.Sprintf("q/%02d.bin", i)
		datas[name] = zstortest.RandomBytes(150<<10 + i)
		if err := c.Queue(ctx, cl.WriteFile(name, datas[name]), zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	d.signal(syscall.SIGKILL)
	d.wait(10 * time.Second)
	frozen.thaw()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("kill -9 should leave a stale socket behind: %v", err)
	}

	d2 := startChild(t, cfg, sock, o)
	// The daemon serves its socket before it logs that it is ready.
	waitLog(t, d2.log, "zstor daemon ready", 10*time.Second)
	m := readyQueued.FindStringSubmatch(d2.log.String())
	if m == nil {
		t.Fatalf("no ready line with the queue length:\n%s", d2.log)
	}
	if n, _ := strconv.Atoi(m[1]); n != files {
		t.Fatalf("the restarted daemon found %d queued jobs, want all %d", n, files)
	}
	c = dial(t, sock)
	waitFor(t, "every queued store", 60*time.Second, func() bool {
		for name := range datas {
			want, _ := zstor.LocalChecksum(filepath.Join(cl.Root, name))
			if sum, err := c.Check(ctx, name); err != nil || sum != want {
				return false
			}
		}
		return true
	})
	for name, data := range datas {
		p := filepath.Join(cl.Root, name)
		os.Remove(p)
		if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatalf("%s retrieved differently", name)
		}
	}
	waitLog(t, d2.log, "queued store done", time.Second)
}

// SIGTERM lets an in-flight store finish and answer, then the daemon exits
// 0 and removes its socket and pid file.
func TestSIGTERMDrains(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	pidFile := filepath.Join(t.TempDir(), "zstor.pid")
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock)+fmt.Sprintf("pid_file = %q\n", pidFile))
	d := startChild(t, cfg, sock, testOptions())
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(d.cmd.Process.Pid) {
		t.Fatalf("pid file: %q %v", b, err)
	}
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)
	data := zstortest.RandomBytes(4 << 20)
	p := cl.WriteFile("big.bin", data)
	// The data backends are frozen (SIGSTOP) while the store starts and
	// SIGTERM arrives, so the store is certainly in flight; they are
	// thawed well within the I/O timeout and the store completes.
	frozen := freeze(t, cl)
	type result struct {
		res *zstor.StoreResult
		err error
	}
	ch := make(chan result, 1)
	go func() {
		res, err := c.Store(ctx, p, zstor.StoreOptions{})
		ch <- result{res, err}
	}()
	// A queued store is in flight too.
	qdata := zstortest.RandomBytes(1 << 20)
	qp := cl.WriteFile("queued.bin", qdata)
	if err := c.Queue(ctx, qp, zstor.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	d.signal(syscall.SIGTERM)
	waitLog(t, d.log, "draining", 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("the store returned while the backends were frozen: %+v", r)
	default:
	}
	frozen.thaw()
	r := <-ch
	if r.err != nil {
		t.Fatalf("in-flight store failed at SIGTERM: %v", r.err)
	}
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exit code %d after SIGTERM", code)
	}
	if _, err := Dial(ctx, sock); !isNotRunning(err) {
		t.Fatalf("dial after the daemon stopped: %v", err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("pid file left behind: %v", err)
	}
	want, _ := zstor.LocalChecksum(p)
	if sum, err := direct(t, cfg).Check(ctx, "big.bin"); err != nil || sum != want || r.res.Checksum != want {
		t.Fatalf("after drain: check %s %v, want %s", sum, err, want)
	}
	qwant, _ := zstor.LocalChecksum(qp)
	if sum, err := direct(t, cfg).Check(ctx, "queued.bin"); err != nil || sum != qwant {
		t.Fatalf("after drain: the queued store: %s %v, want %s", sum, err, qwant)
	}
	waitLog(t, d.log, `msg="zstor daemon stopped" queued=0`, time.Second)
}

// SIGHUP with a broken config logs one error and keeps the old config;
// SIGUSR1 with a valid one applies it.
func TestReload(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfgPath := filepath.Join(t.TempDir(), "zstor.toml")
	good := cl.ConfigTOML(zstortest.TestKey, socketExtra(sock))
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startChild(t, cfgPath, sock, testOptions())
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)
	p := cl.WriteFile("x/y.bin", []byte("hello"))
	if k, err := c.KeyFor(p); err != nil || k != "x/y.bin" {
		t.Fatalf("KeyFor = %q %v", k, err)
	}

	broken := strings.Replace(good, "concurrency = 2\n", "concurrency = 2\nbogus_key = 1\n", 1)
	os.WriteFile(cfgPath, []byte(broken), 0o600)
	d.signal(syscall.SIGHUP)
	waitLog(t, d.log, "config reload failed", 10*time.Second)
	var errLines []string
	for _, l := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(l, "level=ERROR") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || !strings.Contains(errLines[0], "bogus_key") || !strings.Contains(errLines[0], "keeping the running config") {
		t.Fatalf("want one error line naming bogus_key, got %q", errLines)
	}
	if k, err := c.KeyFor(p); err != nil || k != "x/y.bin" {
		t.Fatalf("after a broken reload, KeyFor = %q %v (old config should still run)", k, err)
	}
	if _, err := c.Store(ctx, p, zstor.StoreOptions{}); err != nil {
		t.Fatalf("store after a broken reload: %v", err)
	}

	newRoot := filepath.Join(cl.Root, "x")
	valid := strings.Replace(good, fmt.Sprintf("root = %q", cl.Root), fmt.Sprintf("root = %q", newRoot), 1)
	if valid == good {
		t.Fatal("test bug: root line not found")
	}
	os.WriteFile(cfgPath, []byte(valid), 0o600)
	d.signal(syscall.SIGUSR1)
	waitLog(t, d.log, "config reloaded", 10*time.Second)
	if k, err := c.KeyFor(p); err != nil || k != "y.bin" {
		t.Fatalf("after reloading with root %s, KeyFor = %q %v", newRoot, k, err)
	}
	if _, err := c.Check(ctx, "x/y.bin"); err != nil {
		t.Fatalf("the object stored before the reload: %v", err)
	}
}

// The metrics endpoint serves the documented names; the health loop marks
// a killed backend unreachable; the redundancy check sees the loss; the
// background scrub runs.
func TestMetricsHealthScrub(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	port := zdbtest.FreePort(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock)+fmt.Sprintf("prometheus_port = %d\n", port))
	o := testOptions()
	o.ScrubInterval = 500 * time.Millisecond
	startInProcess(t, cfg, sock, o)
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)
	for i := range 2 {
		if _, err := c.Store(ctx, cl.WriteFile(fmt.Sprintf("m%d", i), zstortest.RandomBytes(200<<10)), zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Check(ctx, "nothing"); !errors.Is(err, zstor.ErrNotStored) {
		t.Fatal(err)
	}
	var page string
	waitFor(t, "two objects in the metrics", 10*time.Second, func() bool {
		page = scrape(t, port)
		v, _ := metricValue(page, "zstor_objects")
		return v == "2"
	})
	for _, name := range []string{
		"zstor_backend_connection_status", "zstor_backend_entries", "zstor_backend_data_size_bytes",
		"zstor_backend_data_limit_bytes", "zstor_backend_free_bytes", "zstor_backend_low_space",
		"zstor_commands_total", "zstor_command_duration_seconds_bucket", "zstor_queue_length",
		"zstor_repair_backlog", "zstor_lowest_redundancy", "zstor_objects",
	} {
		if _, ok := metricValue(page, name); !ok {
			t.Errorf("metric %s missing", name)
		}
	}
	for _, want := range []struct {
		name   string
		labels []string
		value  string
	}{
		{"zstor_commands_total", []string{`command="store"`, `result="ok"`}, "2"},
		{"zstor_commands_total", []string{`command="check"`, `result="not_stored"`}, "1"},
		{"zstor_queue_length", nil, "0"},
		{"zstor_repair_backlog", nil, "0"},
		{"zstor_lowest_redundancy", nil, "2"},
		{"zstor_backend_connection_status", []string{`kind="meta"`}, "1"},
		{"zstor_backend_connection_status", []string{`backend="` + cl.Data[0].Addr() + `/zdata"`, `kind="data"`}, "1"},
	} {
		if v, _ := metricValue(page, want.name, want.labels...); v != want.value {
			t.Errorf("%s%v = %q, want %s", want.name, want.labels, v, want.value)
		}
	}
	if t.Failed() {
		t.Fatalf("metrics page:\n%s", page)
	}

	cl.Data[0].Kill()
	waitFor(t, "the killed backend to show unreachable", 10*time.Second, func() bool {
		page = scrape(t, port)
		v, _ := metricValue(page, "zstor_backend_connection_status", `backend="`+cl.Data[0].Addr()+`/zdata"`, `kind="data"`)
		return v == "0"
	})
	waitFor(t, "the redundancy check to see the loss", 10*time.Second, func() bool {
		page = scrape(t, port)
		v, _ := metricValue(page, "zstor_lowest_redundancy")
		b, _ := metricValue(page, "zstor_repair_backlog")
		return v == "1" && b == "2"
	})
	waitFor(t, "a background scrub", 20*time.Second, func() bool {
		page = scrape(t, port)
		_, ok := metricValue(page, "zstor_scrub_last_completed_timestamp_seconds")
		v, _ := metricValue(page, "zstor_scrub_last_problems")
		return ok && v != "0"
	})
}

// With a backend down longer than RepairAfter, the repair loop rebuilds
// the objects that had shards on it onto the others.
func TestRepairDownBackend(t *testing.T) {
	cl := zstortest.New(t, 7)
	sock := socketPath(t)
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock))
	o := testOptions()
	o.RepairAfter = 500 * time.Millisecond
	d := startInProcess(t, cfg, sock, o)
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)
	datas := map[string][]byte{}
	for i := range 3 {
		name := fmt.Sprintf("r%d", i)
		datas[name] = zstortest.RandomBytes(200 << 10)
		if _, err := c.Store(ctx, cl.WriteFile(name, datas[name]), zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := direct(t, cfg).Stat(ctx, "r0")
	if err != nil {
		t.Fatal(err)
	}
	victim := -1
	for i, s := range cl.Data {
		if strings.HasPrefix(rec.Locations[0][0].Backend, s.Addr()+"/") {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("no server for %s", rec.Locations[0][0].Backend)
	}
	cl.Data[victim].Kill()
	// The daemon sees the loss within a health interval and repairs it
	// soon after RepairAfter, faster than a List through it could catch
	// the degraded state: wait for the repair, then check it.
	waitLog(t, d.log, "zstor daemon: repaired", 20*time.Second)
	waitFor(t, "full redundancy again", 30*time.Second, func() bool { return fullRedundancy(ctx, c, 3) })
	for name, data := range datas {
		p := filepath.Join(cl.Root, name)
		os.Remove(p)
		if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatalf("%s differs after repair", name)
		}
	}
}

// A backend replaced in the config (SIGHUP) has its objects' shards
// rebuilt on the new one at once, without waiting for RepairAfter.
func TestRepairReplacedBackend(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cfgPath := filepath.Join(t.TempDir(), "zstor.toml")
	if err := os.WriteFile(cfgPath, []byte(cl.ConfigTOML(zstortest.TestKey, socketExtra(sock))), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startChild(t, cfgPath, sock, testOptions()) // RepairAfter: 1 h
	c := dial(t, sock)
	ctx := zstortest.Ctx(t)
	datas := map[string][]byte{}
	for i := range 3 {
		name := fmt.Sprintf("r%d", i)
		datas[name] = zstortest.RandomBytes(150 << 10)
		if _, err := c.Store(ctx, cl.WriteFile(name, datas[name]), zstor.StoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cl.Data[0].Kill()
	cl.Data[0] = cl.StartData()
	if err := os.WriteFile(cfgPath, []byte(cl.ConfigTOML(zstortest.TestKey, socketExtra(sock))), 0o600); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	waitLog(t, d.log, "config reloaded", 10*time.Second)
	waitFor(t, "full redundancy on the new backend", 30*time.Second, func() bool { return fullRedundancy(ctx, c, 3) })
	waitLog(t, d.log, "zstor daemon: repaired", time.Second)
	for name, data := range datas {
		p := filepath.Join(cl.Root, name)
		os.Remove(p)
		if _, err := c.Retrieve(ctx, p, zstor.RetrieveOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatalf("%s differs after repair", name)
		}
	}
}

// The cache cap evicts, oldest first, only files whose stored checksum
// equals the local one, and never a recently written one.
func TestCacheCap(t *testing.T) {
	cl := zstortest.New(t, 6)
	sock := socketPath(t)
	cache := filepath.Join(cl.Root, "cache")
	cfg := cl.WriteConfig(zstortest.TestKey, socketExtra(sock)+
		fmt.Sprintf("zdb_data_dir_path = %q\nmax_zdb_data_dir_size = 1\n", cache))
	ctx := zstortest.Ctx(t)

	// Prepared with an in-process client before the daemon starts, so
	// the cap never sees a half-prepared directory.
	zc := direct(t, cfg)
	write := func(name string, stored bool, age time.Duration) string {
		p := cl.WriteFile("cache/"+name, zstortest.RandomBytes(400<<10))
		if stored {
			if _, err := zc.Store(ctx, p, zstor.StoreOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if age > 0 {
			old := time.Now().Add(-age)
			os.Chtimes(p, old, old)
		}
		return p
	}
	a := write("a", true, 4*time.Hour)     // stored, unchanged, least recently used: evicted
	e := write("sub/e", true, 3*time.Hour) // stored, unchanged: evicted
	b := write("b", true, 2*time.Hour)     // stored, then modified: stale, kept
	c := write("c", false, time.Hour)      // never stored: kept
	dd := write("d", true, 0)              // stored, but just written: kept
	f, err := os.OpenFile(b, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("changed after store"), 1000)
	f.Close()
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(b, old, old)

	o := testOptions()
	o.CacheMinAge = time.Hour
	d := startInProcess(t, cfg, sock, o)
	waitLog(t, d.log, "nothing more can be evicted", 20*time.Second)
	for _, p := range []string{a, e} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s should have been evicted: %v", p, err)
		}
	}
	for _, p := range []string{b, c, dd} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s should have been kept: %v", p, err)
		}
	}
	if strings.Count(d.log.String(), "cache cap: evicted") != 2 {
		t.Errorf("want exactly 2 evictions logged:\n%s", d.log)
	}
	// An evicted file comes back with retrieve.
	if _, err := dial(t, sock).Retrieve(ctx, a, zstor.RetrieveOptions{}); err != nil {
		t.Fatal(err)
	}
}

// fullRedundancy reports whether the daemon lists n objects, each with all
// its shards on reachable backends.
func fullRedundancy(ctx context.Context, c *Client, n int) bool {
	es, _, err := c.List(ctx, "")
	if err != nil || len(es) != n {
		return false
	}
	for _, e := range es {
		if e.MinShards != e.N {
			return false
		}
	}
	return true
}

// zdbPID finds the pid of a zdbtest server by its command line (zdbtest
// does not export it): the process whose arguments hold its --data dir.
func zdbPID(t *testing.T, s *zdbtest.Server) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--data" && args[i+1] == s.DataDir() {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
				return pid
			}
		}
	}
	t.Fatalf("no process for zdb %s", s.Addr())
	return 0
}

// frozen is a set of stopped (SIGSTOP) data backends.
type frozen []int

// freeze stops every data backend of the cluster; they are thawed by thaw
// or at the end of the test.
func freeze(t *testing.T, cl *zstortest.Cluster) frozen {
	var f frozen
	for _, s := range cl.Data {
		f = append(f, zdbPID(t, s))
	}
	for _, pid := range f {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	t.Cleanup(f.thaw)
	return f
}

func (f frozen) thaw() {
	for _, pid := range f {
		syscall.Kill(pid, syscall.SIGCONT)
	}
}
