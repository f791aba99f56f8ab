package users

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests hash with small argon2id parameters; TestDefaultParams checks the
// real ones.
func TestMain(m *testing.M) {
	params = argonParams{memoryKiB: 64, time: 1, threads: 1}
	if os.Getenv("QSFS_USERS_HELPER") != "" {
		helper()
		return
	}
	os.Exit(m.Run())
}

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerify(t *testing.T, s *Store, name, pw string, want bool) {
	t.Helper()
	ok, err := s.Verify(name, pw)
	if err != nil {
		t.Fatalf("Verify(%q): %v", name, err)
	}
	if ok != want {
		t.Errorf("Verify(%q, %q) = %v, want %v", name, pw, ok, want)
	}
}

func TestLifecycle(t *testing.T) {
	s := open(t)
	mustVerify(t, s, "alice", "password1", false) // no file yet
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("List of no file: %v %v", l, err)
	}
	before := time.Now().UTC().Truncate(time.Second)
	if err := s.Add("alice", "password1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("bob", "hunter2hunter2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("alice", "otherpass"); !errors.Is(err, ErrExists) {
		t.Errorf("second Add alice: %v", err)
	}
	mustVerify(t, s, "alice", "password1", true)
	mustVerify(t, s, "alice", "password2", false) // wrong password
	mustVerify(t, s, "alice", "hunter2hunter2", false)
	mustVerify(t, s, "bob", "hunter2hunter2", true)
	mustVerify(t, s, "carol", "password1", false) // unknown user
	mustVerify(t, s, "Alice", "password1", false) // names are case-sensitive
	mustVerify(t, s, "../x", "password1", false)  // invalid name: just false
	mustVerify(t, s, "alice", "", false)

	l, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || l[0].Name != "alice" || l[1].Name != "bob" || l[0].Created.Before(before) || l[0].Created.After(time.Now()) {
		t.Errorf("List %+v", l)
	}

	if err := s.SetPassword("alice", "newpassword"); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s, "alice", "password1", false)
	mustVerify(t, s, "alice", "newpassword", true)
	if l2, _ := s.List(); !l2[0].Created.Equal(l[0].Created) {
		t.Error("SetPassword changed the creation time")
	}
	if err := s.SetPassword("carol", "newpassword"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPassword of unknown: %v", err)
	}

	if err := s.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s, "alice", "newpassword", false)
	mustVerify(t, s, "bob", "hunter2hunter2", true)
	if err := s.Remove("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}

	info, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("users.json mode %v, want 0600", info.Mode().Perm())
	}
	if _, err := os.Stat(s.Path() + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temp file left: %v", err)
	}
}

// The file holds PHC strings, never the password.
func TestFileFormat(t *testing.T) {
	s := open(t)
	if err := s.Add("alice", "password1"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("password1")) {
		t.Fatal("password stored in clear")
	}
	phc := regexp.MustCompile(`"hash": "\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}"`)
	if !phc.Match(data) || !bytes.Contains(data, []byte(`"version": 1`)) || !bytes.Contains(data, []byte(`"created": "`)) {
		t.Errorf("users.json:\n%s", data)
	}
}

func TestDefaultParams(t *testing.T) {
	saved := params
	params = argonParams{memoryKiB: 64 << 10, time: 1, threads: 2}
	defer func() { params = saved }()
	h, err := hashPassword("password1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=1,p=2$") {
		t.Errorf("hash %s", h)
	}
	// A stored hash keeps its parameters when the defaults change.
	params = saved
	if !verify(h, "password1") || verify(h, "password2") {
		t.Error("verify with the hash's own parameters")
	}
}

// An unknown user costs the same argon2id work as a known one.
func TestUnknownUserSameWork(t *testing.T) {
	s := open(t)
	if err := s.Add("alice", "password1"); err != nil {
		t.Fatal(err)
	}
	type call struct {
		time, mem uint32
		threads   uint8
		keyLen    uint32
	}
	var calls []call
	saved := idKey
	idKey = func(pw, salt []byte, time, mem uint32, threads uint8, keyLen uint32) []byte {
		calls = append(calls, call{time, mem, threads, keyLen})
		return saved(pw, salt, time, mem, threads, keyLen)
	}
	defer func() { idKey = saved }()
	for _, c := range []struct{ name, pw string }{
		{"alice", "password1"}, {"alice", "wrongpass"}, {"nobody", "password1"}, {"alice", "short"}, {"alice", strings.Repeat("x", 5000)},
	} {
		if _, err := s.Verify(c.name, c.pw); err != nil {
			t.Fatal(err)
		}
	}
	if len(calls) != 5 {
		t.Fatalf("%d argon2id calls for 5 Verify, want one each", len(calls))
	}
	for i, c := range calls {
		if c != calls[0] {
			t.Errorf("Verify %d hashed with %+v, Verify 0 with %+v", i, c, calls[0])
		}
	}
}

func TestNames(t *testing.T) {
	s := open(t)
	for _, n := range []string{"a", "Alice", "bob.smith", "x_y-z", "0", "a.", strings.Repeat("n", 64)} {
		if err := s.Add(n, "password1"); err != nil {
			t.Errorf("Add(%q): %v", n, err)
		}
	}
	for _, n := range []string{"", ".hidden", "..", "a b", "a/b", "é", "a\x00", "a:b", strings.Repeat("n", 65)} {
		if err := s.Add(n, "password1"); !errors.Is(err, ErrBadName) {
			t.Errorf("Add(%q): %v, want ErrBadName", n, err)
		}
		if err := s.SetPassword(n, "password1"); !errors.Is(err, ErrBadName) {
			t.Errorf("SetPassword(%q): %v", n, err)
		}
		if err := s.Remove(n); !errors.Is(err, ErrBadName) {
			t.Errorf("Remove(%q): %v", n, err)
		}
	}
}

func TestPasswords(t *testing.T) {
	s := open(t)
	for i, pw := range []string{"12345678", strings.Repeat("p", 1024), "pässwörd"} {
		name := "u" + strconv.Itoa(i)
		if err := s.Add(name, pw); err != nil {
			t.Errorf("Add with a %d-byte password: %v", len(pw), err)
		}
		mustVerify(t, s, name, pw, true)
	}
	for _, pw := range []string{"", "1234567", strings.Repeat("p", 1025)} {
		if err := s.Add("x", pw); !errors.Is(err, ErrBadPassword) {
			t.Errorf("Add with a %d-byte password: %v", len(pw), err)
		}
		if err := s.SetPassword("u0", pw); !errors.Is(err, ErrBadPassword) {
			t.Errorf("SetPassword with a %d-byte password: %v", len(pw), err)
		}
	}
	// A password longer than the maximum never matches, even if its first
	// 1024 bytes are the password.
	mustVerify(t, s, "u1", strings.Repeat("p", 1025), false)
}

func TestCorruptFile(t *testing.T) {
	good := func(t *testing.T) (*Store, []byte) {
		s := open(t)
		if err := s.Add("alice", "password1"); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		return s, data
	}
	_, sample := good(t)
	phc := regexp.MustCompile(`\$argon2id[^"]*`)
	hash := phc.Find(sample)
	cases := map[string]func([]byte) []byte{
		"not json":      func([]byte) []byte { return []byte("garbage{") },
		"truncated":     func(d []byte) []byte { return d[:len(d)/2] },
		"empty":         func([]byte) []byte { return nil },
		"trailing":      func(d []byte) []byte { return append(d, []byte("{}")...) },
		"unknown field": func(d []byte) []byte { return bytes.Replace(d, []byte(`"name"`), []byte(`"admin": true, "name"`), 1) },
		"version":       func(d []byte) []byte { return bytes.Replace(d, []byte(`"version": 1`), []byte(`"version": 2`), 1) },
		"bad name":      func(d []byte) []byte { return bytes.Replace(d, []byte(`"alice"`), []byte(`".alice"`), 1) },
		"bad hash":      func(d []byte) []byte { return phc.ReplaceAll(d, []byte("$2b$10$bcrypt")) },
		"huge memory":   func(d []byte) []byte { return bytes.Replace(d, []byte("m=64,"), []byte("m=99999999,"), 1) },
		"duplicate": func(d []byte) []byte {
			e := fmt.Sprintf(`{"name": "alice", "hash": %q, "created": "2026-01-01T00:00:00Z"}`, hash)
			return bytes.Replace(d, []byte(`"users": [`), []byte(`"users": [`+e+`,`), 1)
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			s, data := good(t)
			bad := corrupt(bytes.Clone(data))
			if bytes.Equal(bad, data) {
				t.Fatal("test did not change the file")
			}
			if err := os.WriteFile(s.Path(), bad, 0o600); err != nil {
				t.Fatal(err)
			}
			checks := map[string]error{}
			checks["Add"] = s.Add("bob", "password1")
			checks["SetPassword"] = s.SetPassword("alice", "password2")
			checks["Remove"] = s.Remove("alice")
			_, checks["List"] = s.List()
			_, checks["Verify"] = s.Verify("alice", "password1")
			for op, err := range checks {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), s.Path()) {
					t.Errorf("%s on a corrupt file: %v, want ErrCorrupt naming the file", op, err)
				}
			}
			after, _ := os.ReadFile(s.Path())
			if !bytes.Equal(after, bad) {
				t.Error("the corrupt file was overwritten")
			}
		})
	}
}

func TestOpenNeedsDir(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("Open of a missing directory")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Open(f); err == nil {
		t.Error("Open of a file")
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	s := open(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if err := s.Add(fmt.Sprintf("g%d", i), "password1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if l, err := s.List(); err != nil || len(l) != 16 {
		t.Fatalf("%d users after 16 concurrent Add (%v)", len(l), err)
	}
}

// Two processes adding users at once lose no entry.
func TestConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 3, 25
	var cmds []*exec.Cmd
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "QSFS_USERS_HELPER="+dir, "QSFS_USERS_PREFIX=p"+strconv.Itoa(p), "QSFS_USERS_N="+strconv.Itoa(each))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	s, _ := Open(dir)
	l, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != procs*each {
		t.Fatalf("%d users after %d processes added %d each", len(l), procs, each)
	}
	mustVerify(t, s, "p1-7", "password-p1-7", true)
}

// helper is the child of TestConcurrentProcesses.
func helper() {
	s, err := Open(os.Getenv("QSFS_USERS_HELPER"))
	if err == nil {
		n, _ := strconv.Atoi(os.Getenv("QSFS_USERS_N"))
		for i := range n {
			name := fmt.Sprintf("%s-%d", os.Getenv("QSFS_USERS_PREFIX"), i)
			if err = s.Add(name, "password-"+name); err != nil {
				break
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
