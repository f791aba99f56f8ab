package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	qconfig "qss/qsfs/config"
	"qss/qsfs/users"
)

// TestStatusJSONAndExitCodes: status exits 3 (with running false in JSON)
// when nothing serves the directory, 0 with the documented JSON fields
// when all is well, and 1 on a config error.
func TestStatusJSONAndExitCodes(t *testing.T) {
	f := newFixture(t, `cache_size = "16M"
rpo = "3s"
data_file_size = "1M"`)
	s, code := f.status()
	if code != exitStopped || s.Running || s.Dir != f.dir {
		t.Errorf("status, not mounted: exit %d, %+v (want %d, running false, dir %s)", code, s, exitStopped, f.dir)
	}
	if r := f.run(nil, "status"); r.code != exitStopped || !strings.Contains(r.stderr, "not running") {
		t.Errorf("status (text), not mounted: exit %d, stderr %q", r.code, r.stderr)
	}

	p := f.mount()
	if err := os.WriteFile(filepath.Join(f.mnt, "a"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.mustRun(nil, "sync")
	r := f.run(nil, "status", "--json")
	if r.code != 0 {
		t.Fatalf("status --json, healthy: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"running", "dir", "rpo_seconds", "rpo_target_seconds", "last_point", "queue", "cache",
		"remote_objects", "remote_bytes", "backends", "lowest_redundancy", "expected_shards", "at_risk"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status --json has no %q: %s", k, r.stdout)
		}
	}
	s, _ = f.status()
	if !s.Running || s.RPOTarget != 3 || s.Cache.Cap != 16<<20 || len(s.Backends) != 6 || s.Expected != 6 ||
		s.LowestRedundancy != 6 || len(s.AtRisk) != 0 || s.LastPoint.Generation == 0 || s.RemoteObjects == 0 {
		t.Errorf("status, healthy: %+v", s)
	}
	r = f.mustRun(nil, "status")
	for _, want := range []string{"live RPO", "upload queue", "6 of 6 reachable", "at risk           nothing"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status text lacks %q:\n%s", want, r.stdout)
		}
	}
	p.stop()

	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[qsfs]\npath = \"x\"\ncache_size = \"lots\"\n"), 0o600)
	if r := runQsfs(t, nil, "-c", bad, "status"); r.code != exitError || !strings.Contains(r.stderr, bad) {
		t.Errorf("status with a bad config: exit %d, stderr %q (want %d, naming the file)", r.code, r.stderr, exitError)
	}
}

// TestInitWritesPrivateConfig: init writes a loadable config of mode 0600
// with the flags' values, and refuses to overwrite an existing file.
func TestInitWritesPrivateConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "qsfs.toml")
	r := runQsfs(t, nil, "-c", cfg, "init", "--path", "local", "--cache-size", "2G", "--rpo", "5m", "--web", "-")
	if r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	fi, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %o, want 600", fi.Mode().Perm())
	}
	c, err := qconfig.Load(cfg)
	if err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	if c.Path != filepath.Join(dir, "local") || c.CacheSize != 2<<30 || c.RPO != 5*time.Minute || c.Web != "" {
		t.Errorf("config: path %s, cache %d, rpo %v, web %q", c.Path, c.CacheSize, c.RPO, c.Web)
	}
	before, _ := os.ReadFile(cfg)
	r = runQsfs(t, nil, "-c", cfg, "init")
	if r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("init over an existing config: exit %d, stderr %q", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(cfg); string(after) != string(before) {
		t.Error("init changed an existing config")
	}
	// Two inits give two different keys.
	other := filepath.Join(dir, "other.toml")
	runQsfs(t, nil, "-c", other, "init")
	c2, err := qconfig.Load(other)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Zstor.Encryption.Key == c.Zstor.Encryption.Key {
		t.Error("two inits wrote the same encryption key")
	}
}

// TestUserAdd: the password comes from stdin; users.json is mode 0600 and
// holds an argon2id hash, never the password.
func TestUserAdd(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "qsfs.toml")
	runQsfs(t, nil, "-c", cfg, "init", "--path", "local")
	const pw = "correct horse battery staple"
	r := runQsfs(t, strings.NewReader(pw+"\n"), "-c", cfg, "user", "add", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "alice") {
		t.Fatalf("user add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	path := filepath.Join(dir, "local", users.FileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %o, want 600", path, fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), pw) || strings.Contains(string(raw), "horse") {
		t.Errorf("users.json holds the password: %s", raw)
	}
	if !strings.Contains(string(raw), "$argon2id$") || !strings.Contains(string(raw), "alice") {
		t.Errorf("users.json has no argon2id hash for alice: %s", raw)
	}
	st, err := users.Open(filepath.Join(dir, "local"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := st.Verify("alice", pw); err != nil || !ok {
		t.Errorf("verify alice: %v %v", ok, err)
	}
	if ok, _ := st.Verify("alice", "wrong"); ok {
		t.Error("a wrong password verifies")
	}
	if r := runQsfs(t, strings.NewReader(""), "-c", cfg, "user", "add", "bob"); r.code != exitError || !strings.Contains(r.stderr, "password") {
		t.Errorf("user add without a password: exit %d, stderr %q", r.code, r.stderr)
	}
	// passwd, list, remove.
	const pw2 = "another fine password"
	if r := runQsfs(t, strings.NewReader(pw2+"\n"), "-c", cfg, "user", "passwd", "alice"); r.code != 0 {
		t.Fatalf("user passwd: exit %d %s", r.code, r.stderr)
	}
	if ok, _ := st.Verify("alice", pw2); !ok {
		t.Error("the new password does not verify")
	}
	if ok, _ := st.Verify("alice", pw); ok {
		t.Error("the old password still verifies")
	}
	r = runQsfs(t, nil, "-c", cfg, "user", "list", "--json")
	var list []struct{ Name string }
	if err := json.Unmarshal([]byte(r.stdout), &list); r.code != 0 || err != nil || len(list) != 1 || list[0].Name != "alice" {
		t.Fatalf("user list --json: exit %d %v %q", r.code, err, r.stdout)
	}
	if r := runQsfs(t, nil, "-c", cfg, "user", "remove", "alice"); r.code != 0 {
		t.Fatalf("user remove: exit %d %s", r.code, r.stderr)
	}
	if r := runQsfs(t, nil, "-c", cfg, "user", "remove", "alice"); r.code != exitError || !strings.Contains(r.stderr, "alice") {
		t.Errorf("user remove of a missing user: exit %d %q", r.code, r.stderr)
	}
	if ok, _ := st.Verify("alice", pw2); ok {
		t.Error("a removed user verifies")
	}
}

// TestHelpAndVersion: --help lists the commands, --version names the
// manifest version, and usage errors exit 1 with a message.
func TestHelpAndVersion(t *testing.T) {
	r := runQsfs(t, nil, "--help")
	if r.code != 0 {
		t.Fatalf("--help: exit %d", r.code)
	}
	for _, c := range []string{"mount", "sync", "status", "restore", "user", "init", "demo"} {
		if !strings.Contains(r.stdout, "  "+c+" ") {
			t.Errorf("--help does not list %s:\n%s", c, r.stdout)
		}
	}
	r = runQsfs(t, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "qsfs ") || !strings.Contains(r.stdout, "manifest v") {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
	for _, args := range [][]string{{"nosuchcommand"}, {"mount"}, {"status", "extra"}} {
		r := runQsfs(t, nil, args...)
		if r.code != exitError || !strings.HasPrefix(r.stderr, "qsfs: ") {
			t.Errorf("qsfs %v: exit %d, stderr %q (want %d and one error)", args, r.code, r.stderr, exitError)
		}
	}
}

// TestDemoStartsAndStops: `qsfs demo DIR` prints its mount point, the mount
// takes a file, and SIGINT unmounts and exits 0.
func TestDemoStartsAndStops(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command(qsfsBin, "demo", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	mnt := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "mount point:"); ok {
				mnt <- strings.TrimSpace(m)
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		detach(filepath.Join(dir, "mnt"))
	})
	var m string
	select {
	case m = <-mnt:
	case err := <-done:
		t.Fatalf("demo exited before mounting: %v\n%s", err, errb)
	case <-time.After(60 * time.Second):
		t.Fatalf("demo printed no mount point within 60 s\n%s", errb)
	}
	if m != filepath.Join(dir, "mnt") || !isMounted(m) {
		t.Fatalf("demo mount point %q (mounted %v), want %s", m, isMounted(m), filepath.Join(dir, "mnt"))
	}
	if err := os.WriteFile(filepath.Join(m, "hello.txt"), []byte("hello qsfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runQsfs(t, nil, "-c", filepath.Join(dir, "qsfs.toml"), "status"); r.code != 0 {
		t.Errorf("status of the demo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo after SIGINT: %v\n%s", err, errb)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("demo did not stop within 60 s of SIGINT\n%s", errb)
	}
	if isMounted(m) {
		t.Error("the demo's mount is still there after SIGINT")
	}
}
