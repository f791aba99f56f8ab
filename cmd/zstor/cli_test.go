package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/internal/etcdtest"
	"qss/internal/racetest"
	"qss/zstor"
	"qss/zstor/zstortest"
)

// TestRoundTrips stores files of the sizes around the chunk boundaries and
// of many chunks, retrieves them into place, and exercises check, list,
// the unchanged-file skip, overwrite, delete, a never-stored file and a
// wrong key.
func TestRoundTrips(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	chunk := cl.ChunkSize
	var paths []string
	for i, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 37*chunk + 11} {
		name := fmt.Sprintf("rt/f%d-%d.bin", i, size)
		data := zstortest.RandomBytes(size)
		p := cl.WriteFile(name, data)
		paths = append(paths, p)
		sum, err := zstor.LocalChecksum(p)
		if err != nil {
			t.Fatal(err)
		}
		r := zstorRun(t, cfg, "store", "-f", p).ok(t)
		mustContain(t, "store output", r.stdout, "stored "+p+" as "+name, fmt.Sprintf("(%d bytes", size), "checksum "+sum.String())
		if r.stderr != "" {
			t.Fatalf("store wrote on stderr: %s", r.stderr)
		}
		if got := zstorRun(t, cfg, "check", "-f", p).ok(t).stdout; got != sum.String()+"\n" {
			t.Fatalf("check printed %q, want %q", got, sum.String()+"\n")
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		r = zstorRun(t, cfg, "retrieve", "-f", p).ok(t)
		mustContain(t, "retrieve output", r.stdout, "retrieved "+p+" from "+name)
		if got := fileSHA(t, p); got != dataSHA(data) {
			t.Fatalf("%s: retrieved bytes differ (sha256 %s, want %s)", name, got, dataSHA(data))
		}
	}
	noTempFiles(t, filepath.Join(cl.Root, "rt"))

	// Unchanged: skipped. Changed: stored again, replacing the old version.
	last := paths[len(paths)-1]
	r := zstorRun(t, cfg, "store", "-f", last).ok(t)
	mustContain(t, "store of an unchanged file", r.stdout, "skipped "+last+": unchanged")
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("more")
	f.Close()
	r = zstorRun(t, cfg, "store", "-f", last).ok(t)
	mustContain(t, "store of a changed file", r.stdout, "stored "+last, "replaced the previous version")
	want := fileSHA(t, last)
	os.Remove(last)
	zstorRun(t, cfg, "retrieve", "-f", last).ok(t)
	if fileSHA(t, last) != want {
		t.Fatal("the changed version did not come back")
	}

	// list: a header, then one healthy line per object, key last.
	ls := lines(zstorRun(t, cfg, "list").ok(t).stdout)
	if len(ls) != 7 || !strings.HasPrefix(ls[0], "SIZE") {
		t.Fatalf("list: %d lines, want a header and 6:\n%s", len(ls), strings.Join(ls, "\n"))
	}
	for _, l := range ls[1:] {
		fields := strings.Fields(l)
		if len(fields) != 5 || fields[2] != "healthy" || fields[3] != "6/6" || !strings.HasPrefix(fields[4], "rt/f") {
			t.Fatalf("list line %q", l)
		}
		if _, err := time.Parse(time.RFC3339, fields[1]); err != nil {
			t.Fatalf("list line %q: time: %v", l, err)
		}
	}
	ls = lines(zstorRun(t, cfg, "list", "rt/f1-").ok(t).stdout)
	if len(ls) != 2 || !strings.HasSuffix(ls[1], " rt/f1-1.bin") || !strings.HasPrefix(ls[1], "1B ") {
		t.Fatalf("list rt/f1-:\n%s", strings.Join(ls, "\n"))
	}
	mustContain(t, "list of an empty prefix", zstorRun(t, cfg, "list", "nothing/").ok(t).stdout, "no stored objects")

	// delete, then check: exit 1.
	victim := paths[1]
	mustContain(t, "delete output", zstorRun(t, cfg, "delete", "-f", victim).ok(t).stdout, "deleted rt/f1-1.bin")
	zstorRun(t, cfg, "check", "-f", victim).fails(t, 1, "no stored object", "rt/f1-1.bin")
	zstorRun(t, cfg, "delete", "-f", victim).fails(t, 1, "no stored object")

	// A file never stored: a clear error, no file.
	never := filepath.Join(cl.Root, "never", "stored.bin")
	zstorRun(t, cfg, "retrieve", "-f", never).fails(t, 1, "no stored object", "never/stored.bin")
	mustNotExist(t, never)
	// A path outside root.
	zstorRun(t, cfg, "check", "-f", "/etc/hostname").fails(t, 1, "not under the configured root")

	// The wrong key: a clear error, no file and no temporary file.
	bad := cl.WriteConfig(zstortest.OtherKey, "")
	p := paths[5]
	os.Remove(p)
	zstorRun(t, bad, "retrieve", "-f", p).fails(t, 1, "wrong encryption key")
	mustNotExist(t, p)
	noTempFiles(t, filepath.Dir(p))
	r = zstorRun(t, bad, "list").ok(t)
	mustContain(t, "list with the wrong key", r.stderr, "cannot be decrypted with this config's key")
	mustContain(t, "list with the wrong key", r.stdout, "no stored objects")
	p2 := cl.WriteFile("rt/other-key.bin", []byte("x"))
	zstorRun(t, bad, "store", "-f", p2).fails(t, 1, "wrong encryption key")
}

// TestStoreOptions covers store -f DIR, -k KEYDIR, -d, and store -n with a
// socket configured but no daemon.
func TestStoreOptions(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")

	// A directory: its regular files, not what is below.
	files := map[string][]byte{
		"dir/a.txt": []byte("alpha"), "dir/b.bin": zstortest.RandomBytes(3*cl.ChunkSize + 5), "dir/empty": nil,
	}
	for name, data := range files {
		cl.WriteFile(name, data)
	}
	inner := cl.WriteFile("dir/sub/inner.txt", []byte("not stored"))
	dir := filepath.Join(cl.Root, "dir")
	r := zstorRun(t, cfg, "store", "-f", dir).ok(t)
	if n := strings.Count(r.stdout, "stored "); n != 3 {
		t.Fatalf("store -f DIR: %d files stored, want 3", n)
	}
	for name, data := range files {
		p := filepath.Join(cl.Root, name)
		os.Remove(p)
		zstorRun(t, cfg, "retrieve", "-f", p).ok(t)
		if fileSHA(t, p) != dataSHA(data) {
			t.Fatalf("%s differs", name)
		}
	}
	zstorRun(t, cfg, "check", "-f", inner).fails(t, 1, "no stored object")
	mustContain(t, "store of an empty directory", zstorRun(t, cfg, "store", "-f", t.TempDir()).ok(t).stdout, "nothing to store")

	// -k: the key the file would have inside KEYDIR (the file itself is
	// elsewhere).
	outside := filepath.Join(t.TempDir(), "x.bin")
	xdata := zstortest.RandomBytes(1000)
	os.WriteFile(outside, xdata, 0o644)
	keyDir := filepath.Join(cl.Root, "kd")
	r = zstorRun(t, cfg, "store", "-f", outside, "-k", keyDir).ok(t)
	mustContain(t, "store -k", r.stdout, "as kd/x.bin")
	want := zstorRun(t, cfg, "check", "-f", filepath.Join(keyDir, "x.bin")).ok(t).stdout
	if sum, _ := zstor.LocalChecksum(outside); want != sum.String()+"\n" {
		t.Fatalf("check of kd/x.bin: %q, want %s", want, sum)
	}
	zstorRun(t, cfg, "retrieve", "-f", filepath.Join(keyDir, "x.bin")).ok(t)
	if fileSHA(t, filepath.Join(keyDir, "x.bin")) != dataSHA(xdata) {
		t.Fatal("kd/x.bin differs")
	}
	zstorRun(t, cfg, "store", "-f", dir, "--key-path", filepath.Join(cl.Root, "kd2")).ok(t)
	zstorRun(t, cfg, "check", "-f", filepath.Join(cl.Root, "kd2", "a.txt")).ok(t)
	zstorRun(t, cfg, "store", "-f", outside, "-k", "/elsewhere").fails(t, 1, "not under the configured root")

	// -d: the local file goes only after the upload.
	ddata := zstortest.RandomBytes(2*cl.ChunkSize + 1)
	dp := cl.WriteFile("del/d.bin", ddata)
	r = zstorRun(t, cfg, "store", "-d", "-f", dp).ok(t)
	mustContain(t, "store -d", r.stdout, "stored "+dp, "local file deleted")
	mustNotExist(t, dp)
	zstorRun(t, cfg, "retrieve", "-f", dp).ok(t)
	if fileSHA(t, dp) != dataSHA(ddata) {
		t.Fatal("del/d.bin differs")
	}
	// Unchanged and -d: skipped, and deleted.
	r = zstorRun(t, cfg, "store", "--delete", "-f", dp).ok(t)
	mustContain(t, "store -d of an unchanged file", r.stdout, "skipped "+dp, "local file deleted")
	mustNotExist(t, dp)

	// store -n with a socket configured and no daemon: stored now, and
	// said so on stderr.
	sock := cl.WriteConfig(zstortest.TestKey, fmt.Sprintf("socket = %q\n", filepath.Join(t.TempDir(), "zstor.sock")))
	np := cl.WriteFile("n/queued.txt", []byte("queue me"))
	r = zstorRun(t, sock, "store", "-n", "-f", np).ok(t)
	mustContain(t, "store -n without a daemon", r.stdout, "stored "+np)
	if ls := lines(r.stderr); len(ls) != 1 || !strings.Contains(ls[0], "no daemon is running") {
		t.Fatalf("store -n without a daemon: stderr %q", r.stderr)
	}
	zstorRun(t, sock, "check", "-f", np).ok(t)
	zstorRun(t, cfg, "store", "-n", "-f", cl.WriteFile("n/other.txt", []byte("x"))).ok(t)

	// -d when the upload fails: the file stays. (With one of the n
	// backends down the store succeeds degraded; two leave fewer than
	// min_store_shards.)
	kept := cl.WriteFile("del/kept.bin", ddata)
	cl.Data[0].Kill()
	deg := cl.WriteFile("del/degraded.bin", ddata)
	r = zstorRun(t, cfg, "store", "-f", deg).ok(t)
	mustContain(t, "store with a backend down", r.stdout, "stored "+deg, "degraded: del/degraded.bin has 5 of 6 shards")
	cl.Data[1].Kill()
	zstorRun(t, cfg, "store", "-d", "-f", kept).fails(t, 1, "no placement")
	if fileSHA(t, kept) != dataSHA(ddata) {
		t.Fatal("store -d deleted or changed the file after a failed upload")
	}
	zstorRun(t, cfg, "check", "-f", kept).fails(t, 1, "no stored object")
	// A directory with a failing file: one line per failure, then the
	// summary; exit 1.
	cl.WriteFile("fail/x1", []byte("one"))
	cl.WriteFile("fail/x2", []byte("two"))
	r = zstorRun(t, cfg, "store", "-f", filepath.Join(cl.Root, "fail"))
	if r.code != 1 || len(lines(r.stderr)) != 3 || !strings.Contains(r.stderr, "2 of the 2 files") {
		t.Fatalf("store of a directory with failures: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestMaintenance: test and status against up and down backends, scrub,
// rebuild and repair after a corrupt shard, a dead backend and its
// replacement, and n−k+1 backends lost.
func TestMaintenance(t *testing.T) {
	cl := zstortest.New(t, 6)
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	adata := zstortest.RandomBytes(5*cl.ChunkSize + 77)
	bdata := []byte("small file")
	a := cl.WriteFile("m/a.bin", adata)
	b := cl.WriteFile("m/b.txt", bdata)
	zstorRun(t, cfg, "store", "-f", a).ok(t)
	zstorRun(t, cfg, "store", "-f", b).ok(t)

	// Everything up.
	r := zstorRun(t, cfg, "test").ok(t)
	if ls := lines(r.stdout); len(ls) != 4+6+2 {
		t.Fatalf("test: %d lines, want 12", len(ls))
	}
	mustContain(t, "test", r.stdout, "placement", "config OK: 4 of 4 metadata and 6 of 6 data backends usable")
	if strings.Contains(r.stdout, "FAIL") {
		t.Fatal("test reports a failure with every backend up")
	}
	st := statusRows(t, zstorRun(t, cfg, "status").ok(t).stdout)
	for addr, row := range st {
		if row[3] != "yes" {
			t.Fatalf("status: %s not reachable: %v", addr, row)
		}
	}
	if row := st[cl.Data[0].Addr()+"/"+zstortest.DataNS]; row[0] != "data" || row[4] != "sequential" || row[5] == "0" || row[5] == "-" {
		t.Fatalf("status of a data backend: %v", row)
	}
	if row := st[cl.Meta[0].Addr()+"/"+zstortest.MetaNS]; row[0] != "meta" || row[4] != "userkey" {
		t.Fatalf("status of a metadata backend: %v", row)
	}

	// A corrupt shard: scrub finds it, rebuild fixes it.
	c := openClient(t, cfg)
	zstortest.FlipShardByte(t, c, cl, "m/a.bin")
	r = zstorRun(t, cfg, "scrub")
	r.fails(t, 1, "1 missing or corrupt shards", "zstor repair")
	mustContain(t, "scrub", r.stdout, "bad shard: m/a.bin chunk 0 shard 2", "scrubbed 2 objects, 42 shards: 1 missing or corrupt")
	os.Remove(a)
	zstorRun(t, cfg, "retrieve", "-f", a).ok(t)
	if fileSHA(t, a) != dataSHA(adata) {
		t.Fatal("m/a.bin differs with a corrupt shard")
	}
	mustContain(t, "rebuild", zstorRun(t, cfg, "rebuild", "-f", a).ok(t).stdout, "rebuilt m/a.bin: 1 shards re-created in 1 chunks")
	mustContain(t, "scrub after rebuild", zstorRun(t, cfg, "scrub").ok(t).stdout, "0 missing or corrupt")
	mustContain(t, "rebuild -k", zstorRun(t, cfg, "rebuild", "-k", "m/b.txt").ok(t).stdout, "nothing to rebuild")
	zstorRun(t, cfg, "rebuild", "-k", "m/none").fails(t, 1, "no stored object")
	zstorRun(t, cfg, "rebuild").fails(t, 2, "exactly one of -f PATH and -k KEY")

	// A data and a metadata backend down.
	cl.Data[3].Kill()
	cl.Meta[1].Kill()
	// status fails, naming both problems.
	r = zstorRun(t, cfg, "status")
	r.fails(t, 1, "2 backends unreachable", "2 objects below full redundancy")
	st = statusRows(t, r.stdout)
	for addr, row := range st {
		down := addr == cl.Data[3].Addr()+"/"+zstortest.DataNS || addr == cl.Meta[1].Addr()+"/"+zstortest.MetaNS
		if (row[3] == "no") != down {
			t.Fatalf("status: %s reachable=%s", addr, row[3])
		}
		if down && (row[5] != "-" || !strings.Contains(strings.Join(row[9:], " "), "connect")) {
			t.Fatalf("status of a down backend: %v", row)
		}
	}
	r = zstorRun(t, cfg, "test")
	r.fails(t, 1, "the config cannot work", "no placement of 6 shards on the 5 usable data backends")
	if n := strings.Count(r.stdout, "FAIL"); n != 3 {
		t.Fatalf("test: %d FAIL lines, want 3 (a metadata and a data backend, the placement)", n)
	}
	ls := lines(zstorRun(t, cfg, "list", "m/").ok(t).stdout)
	for _, l := range ls[1:] {
		if !strings.Contains(l, "degraded 5/6") {
			t.Fatalf("list with a backend down: %q", l)
		}
	}
	os.Remove(a)
	zstorRun(t, cfg, "retrieve", "-f", a).ok(t)
	if fileSHA(t, a) != dataSHA(adata) {
		t.Fatal("m/a.bin differs with a backend down")
	}
	r = zstorRun(t, cfg, "scrub")
	r.fails(t, 1, "7 missing or corrupt shards")

	// The dead backend replaced by an empty one: repair restores full
	// redundancy.
	cl.Data[3] = cl.StartData()
	cfg = cl.WriteConfig(zstortest.TestKey, "")
	r = zstorRun(t, cfg, "repair").ok(t)
	mustContain(t, "repair", r.stdout, "rebuilt m/a.bin: 6 shards re-created in 6 chunks", "rebuilt m/b.txt: 1 shards",
		"checked 2 objects: 2 repaired (7 shards re-created)")
	for _, l := range lines(zstorRun(t, cfg, "list").ok(t).stdout)[1:] {
		if !strings.Contains(l, "healthy 6/6") {
			t.Fatalf("list after repair: %q", l)
		}
	}
	zstorRun(t, cfg, "scrub").ok(t)
	mustContain(t, "repair with nothing to do", zstorRun(t, cfg, "repair", "m/").ok(t).stdout, "checked 2 objects: 0 repaired")

	// n−k+1 backends lost: retrieve fails clearly and leaves nothing.
	for _, i := range []int{0, 1, 2} {
		cl.Data[i].Kill()
	}
	os.Remove(a)
	zstorRun(t, cfg, "retrieve", "-f", a).fails(t, 1, "m/a.bin", "not enough valid shards")
	mustNotExist(t, a)
	noTempFiles(t, filepath.Dir(a))
	zstorRun(t, cfg, "repair").fails(t, 1, "2 objects could not be repaired")
	for _, l := range lines(zstorRun(t, cfg, "list").ok(t).stdout)[1:] {
		if !strings.Contains(l, "UNREADABLE 3/6") {
			t.Fatalf("list with 3 of 6 backends down: %q", l)
		}
	}
}

// statusRows parses status's table: backend → its fields.
func statusRows(t *testing.T, out string) map[string][]string {
	t.Helper()
	ls := lines(out)
	if n := len(ls); n > 0 && strings.HasPrefix(ls[n-1], "objects: ") {
		ls = ls[:n-1]
	}
	if len(ls) != 1+4+6 || !strings.HasPrefix(ls[0], "KIND") {
		t.Fatalf("status: %d lines, want a header and 10:\n%s", len(ls), out)
	}
	rows := map[string][]string{}
	for _, l := range ls[1:] {
		f := strings.Fields(l)
		if len(f) < 9 {
			t.Fatalf("status line %q", l)
		}
		rows[f[2]] = f
	}
	return rows
}

// TestConfigErrors: every bad config is one line on stderr naming the
// problem, and exit status 1; command line mistakes exit 2.
func TestConfigErrors(t *testing.T) {
	root := t.TempDir()
	inRoot := filepath.Join(root, "x")
	base := fmt.Sprintf(`minimal_shards = 2
expected_shards = 3
root = %q

[encryption]
algorithm = "AES"
key = %q

[compression]
algorithm = "snappy"

[meta]
type = "zdb"

[meta.config]
prefix = "p"

[[meta.config.backends]]
address = "127.0.0.1:1"

[[groups]]
[[groups.backends]]
address = "127.0.0.1:2"
[[groups.backends]]
address = "127.0.0.1:3"
[[groups.backends]]
address = "127.0.0.1:4"
`, root, zstortest.TestKey)
	write := func(text string) string {
		p := filepath.Join(t.TempDir(), "zstor_config.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "bogus_setting = 1\n" + base, []string{"bogus_setting", "unknown key"}},
		{"unknown nested key", strings.Replace(base, `algorithm = "snappy"`, "algorithm = \"snappy\"\nlevel = 3", 1), []string{"compression.level"}},
		{"k greater than n", strings.Replace(base, "minimal_shards = 2", "minimal_shards = 4", 1), []string{"minimal_shards", "greater than expected_shards"}},
		{"bad hex key", strings.Replace(base, zstortest.TestKey, "zz"+zstortest.TestKey[2:], 1), []string{"encryption.key"}},
		{"short key", strings.Replace(base, zstortest.TestKey, "abcd", 1), []string{"encryption.key"}},
		{"unknown compression", strings.Replace(base, `"snappy"`, `"brotli"`, 1), []string{"compression.algorithm", "brotli"}},
		{"unknown encryption", strings.Replace(base, `"AES"`, `"DES"`, 1), []string{"encryption.algorithm", "DES"}},
		{"unknown meta type", strings.Replace(base, `type = "zdb"`, `type = "redis"`, 1), []string{"meta.type", "redis"}},
		{"bad address", strings.Replace(base, "127.0.0.1:4", "127.0.0.1", 1), []string{"groups[0].backends[2].address"}},
		{"syntax", base + "[[groups\n", []string{"line"}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			r := zstorRun(t, write(tc.text), "check", "-f", "/x")
			r.fails(t, 1, tc.want...)
			if r.stdout != "" {
				t.Fatalf("stdout: %q", r.stdout)
			}
		})
	}

	zstorRun(t, "", "status").fails(t, 1, "zstor_config.toml: no such file")
	zstorRun(t, filepath.Join(t.TempDir(), "missing.toml"), "test").fails(t, 1, "missing.toml: no such file")
	// A valid config whose backends are all down: test says it cannot
	// work; status still reports.
	good := write(base)
	zstorRun(t, good, "test").fails(t, 1, "the config cannot work", "0 of 1 metadata backends usable")
	r := zstorRun(t, good, "status")
	r.fails(t, 1, "4 backends unreachable", "the objects cannot be listed")
	if n := strings.Count(r.stdout, " no "); n != 4 {
		t.Fatalf("status with every backend down: %d unreachable rows, want 4", n)
	}
	zstorRun(t, good, "check", "-f", inRoot).fails(t, 1, "not enough metadata backends")

	// Command line mistakes.
	zstorRun(t, good, "store").fails(t, 2, `"file" not set`, "zstor store --help")
	zstorRun(t, good, "frobnicate").fails(t, 2, `unknown command "frobnicate"`)
	zstorRun(t, good, "store", "-f", "/x", "--bogus").fails(t, 2, "unknown flag: --bogus")
	zstorRun(t, good).fails(t, 2, "missing command")
	zstorRun(t, good, "store", "-f", "/nonexistent/file").fails(t, 1, "no such file")
	logFile := filepath.Join(t.TempDir(), "zstor.log")
	zstorRun(t, "", "-c", good, "-d", "--log_file", logFile, "check", "-f", inRoot).fails(t, 1, "not enough metadata backends")
	if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "level=") {
		t.Fatalf("--log_file: %q, %v", b, err)
	}
}

// TestEtcdMetadata stores and retrieves with [meta] type = "etcd" against a
// real etcd.
func TestEtcdMetadata(t *testing.T) {
	srv := etcdtest.Start(t)
	cl := zstortest.New(t, 6)
	text := cl.ConfigTOML(zstortest.TestKey, "")
	i, j := strings.Index(text, "[meta]"), strings.Index(text, "[[groups]]")
	text = text[:i] + fmt.Sprintf("[meta]\ntype = \"etcd\"\n\n[meta.config]\nprefix = \"zstor-cli\"\nendpoints = [%q]\n\n", srv.Endpoint) + text[j:]
	cfg := filepath.Join(t.TempDir(), "zstor_config.toml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	data := zstortest.RandomBytes(4*cl.ChunkSize + 9)
	p := cl.WriteFile("e/file.bin", data)
	zstorRun(t, cfg, "store", "-f", p).ok(t)
	zstorRun(t, cfg, "store", "-f", cl.WriteFile("e/two.txt", []byte("two"))).ok(t)
	sum, _ := zstor.LocalChecksum(p)
	if got := zstorRun(t, cfg, "check", "-f", p).ok(t).stdout; got != sum.String()+"\n" {
		t.Fatalf("check: %q", got)
	}
	os.Remove(p)
	zstorRun(t, cfg, "retrieve", "-f", p).ok(t)
	if fileSHA(t, p) != dataSHA(data) {
		t.Fatal("retrieved bytes differ")
	}
	if ls := lines(zstorRun(t, cfg, "list", "e/").ok(t).stdout); len(ls) != 3 {
		t.Fatalf("list: %v", ls)
	}
	r := zstorRun(t, cfg, "test").ok(t)
	mustContain(t, "test", r.stdout, "config OK: 1 of 1 metadata")
	if f := strings.Fields(lines(r.stdout)[0]); len(f) < 3 || f[0] != "meta" || f[1] != "ok" || f[2] != srv.Endpoint {
		t.Fatalf("test: first line %v, want etcd ok", f)
	}
	st := zstorRun(t, cfg, "status").ok(t).stdout
	for _, l := range lines(st) {
		if strings.Contains(l, srv.Endpoint) {
			if f := strings.Fields(l); f[3] != "yes" || f[5] != "2" {
				t.Fatalf("status of etcd: %q (want reachable, 2 records)", l)
			}
		}
	}
	zstorRun(t, cfg, "delete", "-f", p).ok(t)
	zstorRun(t, cfg, "check", "-f", p).fails(t, 1, "no stored object")

	srv.Kill()
	zstorRun(t, cfg, "check", "-f", p).fails(t, 1, "etcd")
}

// TestBigFile is a 1 GiB round trip through the command line, generated
// and compared as streams.
func TestBigFile(t *testing.T) {
	cl := zstortest.New(t, 6)
	cl.ChunkSize = 4 << 20
	cfg := cl.WriteConfig(zstortest.TestKey, "")
	p := filepath.Join(cl.Root, "big", "1GiB.bin")
	os.MkdirAll(filepath.Dir(p), 0o755)
	start := time.Now()
	want := writeRandom(t, p, 1<<30)
	t.Logf("generated 1 GiB in %v", time.Since(start))

	// SIGINT in the middle of the upload: the command fails, and frees
	// every shard it wrote.
	c := openClient(t, cfg)
	cmd := exec.Command(zstorBin, "-c", cfg, "store", "-f", p)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if entries(t, c) >= 6*4 {
			break
		}
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	racetest.Check(t, "zstor store (interrupted)", stderr.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || strings.Count(stderr.String(), "\n") != 1 ||
		!strings.Contains(stderr.String(), "(interrupted)") {
		t.Fatalf("store interrupted: %v, stderr %q", err, stderr.String())
	}
	t.Logf("interrupted: %s", stderr.String())
	zstorRun(t, cfg, "check", "-f", p).fails(t, 1, "no stored object")
	if n := entries(t, c); n != 0 {
		t.Fatalf("%d shards left on the backends after an interrupted store", n)
	}

	start = time.Now()
	r := zstorRun(t, cfg, "store", "-f", p).ok(t)
	t.Logf("stored 1 GiB in %v", time.Since(start))
	mustContain(t, "store", r.stdout, "(1073741824 bytes, 256 chunks")
	os.Remove(p)
	start = time.Now()
	zstorRun(t, cfg, "retrieve", "-f", p).ok(t)
	t.Logf("retrieved 1 GiB in %v", time.Since(start))
	if got := fileSHA(t, p); got != want {
		t.Fatalf("1 GiB file differs: sha256 %s, want %s", got, want)
	}
}

// entries is the number of shards on the data backends.
func entries(t *testing.T, c *zstor.Client) int64 {
	var n int64
	for _, h := range c.Backends().HealthAll(zstortest.Ctx(t)) {
		n += h.Entries
	}
	return n
}

// writeRandom writes size pseudo-random bytes to path, a megabyte at a
// time, and returns their SHA-256.
func writeRandom(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seed [32]byte
	copy(seed[:], zstortest.RandomBytes(32))
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8(seed), size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
