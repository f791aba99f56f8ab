package server_test

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"qss/internal/racetest"
	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// §2 shared checks and their precedence, §4 admin, passwords, namespace
// properties and modes.

func TestPrecedence(t *testing.T) {
	t.Parallel()
	s, c := start(t, "--admin", "pw")
	long := strings.Repeat("n", 129)
	t.Run("argc-before-empty-before-permission", func(t *testing.T) {
		with(t, c)
		c.expectErr("Unexpected arguments", "NSSET", "x")
		c.expectErr("Unexpected arguments", "NSSET", "x", "a")
		c.expectErr("Invalid argument", "NSSET", "", "a", "b")
		c.expectErr("Invalid argument", "NSSET", "x", "a", "")
		c.expectErr("Permission denied", "NSSET", "x", "a", "b")
		c.expectErr("Unexpected arguments", "DATA", "RAW")
		c.expectErr("Unexpected arguments", "RELOAD")
		c.expectErr("Invalid argument", "RELOAD", "")
	})
	t.Run("permission-before-namespace-too-long", func(t *testing.T) {
		with(t, c)
		c.expectErr("Permission denied", "NSNEW", long)
		c.expectErr("Permission denied", "NSDEL", long)
		c.expectErr("Permission denied", "NSSET", long, "public", "1")
		c.expectErr("Permission denied", "RELOAD", long)
	})
	t.Run("namespace-too-long", func(t *testing.T) {
		with(t, c)
		c.expectErr("Namespace too long", "SELECT", long)
		c.expectErr("Namespace too long", "NSINFO", long)
		c.ok("AUTH", "pw")
		c.expectErr("Namespace too long", "NSNEW", long)
		c.expectErr("Namespace too long", "NSDEL", long)
		c.expectErr("Namespace too long", "NSSET", long, "public", "1")
		c.expectErr("Namespace too long", "RELOAD", long)
	})
	t.Run("invalid-key-on-read-commands", func(t *testing.T) {
		u := dial(t, s)
		key := strings.Repeat("k", 256)
		for _, cmd := range []string{"GET", "MGET", "DEL", "EXISTS", "CHECK", "LENGTH", "KEYTIME"} {
			u.expectErr("Invalid key", cmd, key)
		}
		u.expectErr("Key too large", "SET", key, "v")
		u.expectErr("Key too large", "SETX", key, "v")
	})
	t.Run("empty-key-on-read-commands", func(t *testing.T) {
		u := dial(t, s)
		for _, cmd := range []string{"GET", "DEL", "EXISTS", "CHECK", "LENGTH", "KEYTIME", "KEYCUR", "HISTORY"} {
			u.expectErr("Invalid argument", cmd, "")
		}
	})
}

func TestFrozenAndLocked(t *testing.T) {
	t.Parallel()
	s, adm := start(t)
	adm.ok("NSNEW", "f")
	c := dial(t, s)
	c.ok("SELECT", "f")
	c.expect(`"k"`, "SET", "k", "v")
	cur := c.bulk("KEYCUR", "k")
	frozen := "-Namespace is temporarily frozen (read-write disabled)"
	locked := "-Namespace is temporarily locked (read-only)"
	keyCommands := [][]any{
		{"SET", "k", "v2"}, {"SETX", "n", "v"}, {"DEL", "k"}, {"GET", "k"}, {"MGET", "k"},
		{"EXISTS", "k"}, {"CHECK", "k"}, {"LENGTH", "k"}, {"KEYTIME", "k"}, {"KEYCUR", "k"},
		{"SCAN"}, {"SCAN", cur}, {"RSCAN"}, {"HISTORY", "k"},
	}
	t.Run("freeze/every-key-command", func(t *testing.T) {
		with(t, adm, c)
		adm.ok("NSSET", "f", "freeze", "1")
		if in := adm.nsinfo("f"); in.values["locked"] != "yes" {
			t.Errorf("NSINFO locked = %s while frozen", in.values["locked"])
		}
		for _, req := range keyCommands {
			c.expect(frozen, req...)
		}
		c.expect("+PONG", "PING")
		// other namespaces are not affected
		adm.expect(`"x"`, "SET", "x", "y")
	})
	t.Run("freeze-0-unfreezes", func(t *testing.T) {
		with(t, adm, c)
		adm.ok("NSSET", "f", "freeze", "0")
		c.expect(`"v"`, "GET", "k")
	})
	t.Run("lock/writes-refused-reads-allowed", func(t *testing.T) {
		with(t, adm, c)
		adm.ok("NSSET", "f", "lock", "1")
		if in := adm.nsinfo("f"); in.values["locked"] != "yes" {
			t.Errorf("NSINFO locked = %s", in.values["locked"])
		}
		c.expect(locked, "SET", "k", "v2")
		c.expect(locked, "SET", "new", "v")
		c.expect(locked, "DEL", "k")
		c.expect(locked, "DEL", "missing")
		c.expect(`"v"`, "GET", "k")
		c.expect(`["v"]`, "MGET", "k")
		c.expect(":1", "EXISTS", "k")
		c.expect(":1", "CHECK", "k")
		c.expect(":1", "LENGTH", "k")
		if _, keys := scanReply(t, c.do("SCAN")); len(keys) != 1 {
			t.Errorf("SCAN while locked: %v", keys)
		}
	})
	t.Run("freeze-0-also-unlocks", func(t *testing.T) {
		with(t, adm, c)
		adm.ok("NSSET", "f", "freeze", "0")
		c.expect(`"k"`, "SET", "k", "v2")
		if in := adm.nsinfo("f"); in.values["locked"] != "no" {
			t.Errorf("NSINFO locked = %s", in.values["locked"])
		}
	})
	t.Run("lock-0-unlocks", func(t *testing.T) {
		with(t, adm, c)
		adm.ok("NSSET", "f", "lock", "1")
		adm.ok("NSSET", "f", "lock", "0")
		c.expect(`"k"`, "SET", "k", "v3")
	})
	t.Run("default-namespace-can-be-locked", func(t *testing.T) {
		with(t, adm)
		adm.ok("NSSET", "default", "lock", "1")
		adm.expect(locked, "SET", "x", "z")
		adm.ok("NSSET", "default", "freeze", "1")
		adm.expect(frozen, "GET", "x")
		adm.ok("NSSET", "default", "freeze", "0")
		adm.expect(`"y"`, "GET", "x")
	})
	t.Run("not-persisted", func(t *testing.T) {
		with(t, adm)
		adm.ok("NSSET", "f", "lock", "1")
		s.Restart()
		c := dial(t, s)
		c.ok("SELECT", "f")
		c.expect(`"k"`, "SET", "k", "after-restart")
		adm := dial(t, s)
		adm.ok("NSSET", "f", "freeze", "1")
		s.Restart()
		c = dial(t, s)
		c.ok("SELECT", "f")
		c.expect(`"after-restart"`, "GET", "k")
	})
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	t.Run("everyone-is-admin-without-admin-flag", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "x")
		c.ok("NSSET", "x", "public", "0")
		c.expect("[]", "HOOKS")
		in := c.nsinfo("x")
		if _, ok := in.values["data_path"]; !ok {
			t.Errorf("NSINFO without --admin shows no paths")
		}
	})
	t.Run("admin-commands-need-AUTH", func(t *testing.T) {
		t.Parallel()
		s, c := start(t, "--admin", "pw")
		c.expect(`"k"`, "SET", "k", "v")
		for _, req := range [][]any{
			{"NSNEW", "x"}, {"NSDEL", "x"}, {"NSSET", "default", "lock", "1"}, {"NSJUMP"}, {"HOOKS"},
			{"INDEX", "DIRTY"}, {"DATA", "RAW", "0", "28"}, {"RELOAD", "default"}, {"STOP"},
			{"SET", "k", "v", "5"}, {"DEL", "k", "5"},
		} {
			c.expectErr("Permission denied", req...)
		}
		// everything else works for a non-admin
		c.expect("+PONG", "PING")
		c.expect(`"v"`, "GET", "k")
		c.expect(`["default"]`, "NSLIST")
		c.expect(":1", "DBSIZE")
		c.ok("SELECT", "default")
		c.bulk("INFO")
		c.bulk("NSINFO", "default")
		c.ok("DEL", "k")
		// AUTH is per connection
		other := dial(t, s)
		c.ok("AUTH", "pw")
		c.ok("NSNEW", "x")
		other.expectErr("Permission denied", "NSNEW", "y")
		c.ok("NSDEL", "x")
	})
	t.Run("protect-default", func(t *testing.T) {
		t.Parallel()
		s, c := start(t, "--admin", "pw", "--protect")
		c.expectErr("Namespace is in read-only mode", "SET", "k", "v")
		c.expectErr("Namespace is in read-only mode", "DEL", "k")
		c.expect("$-1", "GET", "k")
		in := c.nsinfo("default")
		if in.values["password"] != "yes" {
			t.Errorf("protected default: password = %s", in.values["password"])
		}
		c.ok("SELECT", "default")
		c.expectErr("Namespace is in read-only mode", "SET", "k", "v")
		c.expectErr("Access denied", "SELECT", "default", "wrong")
		c.ok("SELECT", "default", "pw")
		c.expect(`"k"`, "SET", "k", "v")
		// SELECT with the password does not make the client admin
		c.expectErr("Permission denied", "NSNEW", "x")
		// AUTH alone does not make default writable
		a := dial(t, s)
		a.ok("AUTH", "pw")
		a.expectErr("Namespace is in read-only mode", "SET", "k2", "v")
		a.expect(`"v"`, "GET", "k")
		a.ok("SELECT", "default", "pw")
		a.expect(`"k2"`, "SET", "k2", "v")
		// the SECURE form works too
		b := dial(t, s)
		ch := b.challenge()
		b.ok("SELECT", "default", "SECURE", secure(ch, "pw"))
		b.expect(`"k3"`, "SET", "k3", "v")
	})
	t.Run("protect-needs-admin", func(t *testing.T) {
		t.Parallel()
		code, out := runZdb(t, t.TempDir(), "--protect")
		if code == 0 {
			t.Errorf("--protect without --admin started (exit 0):\n%s", out)
		}
	})
}

// runZdb runs the binary in the foreground on dir and returns its exit code
// (-1 when it was still running after 10 s and had to be killed).
func runZdb(t *testing.T, dir string, flags ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	argv := append([]string{"--listen", "127.0.0.1", "--port", strconv.Itoa(zdbtest.FreePort(t)),
		"--data", dir + "/data", "--index", dir + "/index"}, flags...)
	cmd := exec.CommandContext(ctx, zdbtest.Binary(t), argv...)
	out, err := cmd.CombinedOutput()
	racetest.Check(t, "zdb "+strings.Join(flags, " "), string(out))
	if ctx.Err() != nil {
		return -1, string(out)
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("run zdb: %v", err)
	}
	return 0, string(out)
}

func TestSELECT(t *testing.T) {
	t.Parallel()
	s, adm := start(t, "--admin", "pw")
	adm.ok("AUTH", "pw")
	adm.ok("NSNEW", "open")
	adm.ok("NSNEW", "pub")
	adm.ok("NSSET", "pub", "password", "pp")
	adm.ok("NSNEW", "priv")
	adm.ok("NSSET", "priv", "password", "sp")
	adm.ok("NSSET", "priv", "public", "0")
	adm.ok("SELECT", "pub", "pp")
	adm.expect(`"k"`, "SET", "k", "pub-value")

	t.Run("no-password-read-write", func(t *testing.T) {
		c := dial(t, s)
		c.ok("SELECT", "open")
		c.expect(`"k"`, "SET", "k", "v")
		c.ok("DEL", "k")
	})
	t.Run("public-with-password-read-only", func(t *testing.T) {
		c := dial(t, s)
		c.ok("SELECT", "pub")
		c.expect(`"pub-value"`, "GET", "k")
		c.expectErr("Namespace is in read-only mode", "SET", "k", "v")
		c.expectErr("Namespace is in read-only mode", "SET", "new", "v")
		c.expectErr("Namespace is in read-only mode", "DEL", "k")
		c.expect(`"pub-value"`, "GET", "k")
	})
	t.Run("public-with-password-given", func(t *testing.T) {
		c := dial(t, s)
		c.ok("SELECT", "pub", "pp")
		c.expect(`"k2"`, "SET", "k2", "v")
		c.expectErr("Access denied", "SELECT", "pub", "wrong")
	})
	t.Run("private-needs-password", func(t *testing.T) {
		c := dial(t, s)
		c.expectErr("Namespace protected and private", "SELECT", "priv")
		c.expectErr("Access denied", "SELECT", "priv", "wrong")
		// a failed SELECT leaves the client where it was
		c.expect(`"d"`, "SET", "d", "on-default")
		c.ok("SELECT", "priv", "sp")
		c.expect(`"k"`, "SET", "k", "secret")
		c.expect("$-1", "GET", "d")
	})
	t.Run("SECURE", func(t *testing.T) {
		c := dial(t, s)
		ch := c.challenge()
		c.ok("SELECT", "priv", "SECURE", secure(ch, "sp"))
		c.expect(`"secret"`, "GET", "k")
		c.expect(`"k-secure"`, "SET", "k-secure", "v")
		// A challenge is good for one SELECT (0-db's is not used up): the
		// same hash again is refused, successful or not the first time.
		c.ok("SELECT", "default")
		c.expectErr("No CHALLENGE requested, secure authentication not available", "SELECT", "priv", "SECURE", secure(ch, "sp"))
		c.expect(`"d"`, "SET", "d", "still-on-default")
		ch = c.challenge()
		c.ok("SELECT", "pub", "secure", secure(ch, "pp"))
		c.expect(`"k3"`, "SET", "k3", "v")
		ch = c.challenge()
		c.expectErr("Access denied", "SELECT", "priv", "SECURE", secure(ch, "wrong"))
		c.expectErr("No CHALLENGE requested, secure authentication not available", "SELECT", "priv", "SECURE", secure(ch, "sp"))
		// and a challenge used by SELECT no longer serves AUTH SECURE
		ch = c.challenge()
		c.ok("SELECT", "priv", "SECURE", secure(ch, "sp"))
		c.expectErr("No CHALLENGE requested, secure authentication not available", "AUTH", "SECURE", secure(ch, "pw"))
	})
	t.Run("errors", func(t *testing.T) {
		c := dial(t, s)
		c.expectErr("Namespace not found", "SELECT", "nope")
		c.expectErr("Password too long", "SELECT", "priv", strings.Repeat("p", 256))
		c.expectErr("Only SECURE extra method supported", "SELECT", "priv", "PLAIN", "x")
		c.challenge()
		c.expectErr("Invalid hash length", "SELECT", "priv", "SECURE", "abc")
		c.expectErr("Unexpected arguments", "SELECT")
		c.expectErr("Invalid argument", "SELECT", "")
	})
	t.Run("password-cleared", func(t *testing.T) {
		with(t, adm)
		adm.ok("NSNEW", "tmp")
		adm.ok("NSSET", "tmp", "password", "x")
		adm.ok("NSSET", "tmp", "public", "0")
		c := dial(t, s)
		c.expectErr("Namespace protected and private", "SELECT", "tmp")
		adm.ok("NSSET", "tmp", "password", "*")
		if in := adm.nsinfo("tmp"); in.values["password"] != "no" {
			t.Errorf("password after clearing: %s", in.values["password"])
		}
		c.ok("SELECT", "tmp")
		c.expect(`"k"`, "SET", "k", "v")
	})
}

func TestNSSET(t *testing.T) {
	t.Parallel()
	t.Run("maxsize", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "m")
		c.ok("NSSET", "m", "maxsize", "10")
		c.ok("SELECT", "m")
		c.expect(`"a"`, "SET", "a", "12345")
		c.expect(`"b"`, "SET", "b", "12345") // used + new == maxsize: allowed
		c.expectErr("No space left on this namespace", "SET", "c", "x")
		// replacing: used 10 + new 6 > maxsize 10 + replaced 5
		c.expectErr("No space left on this namespace", "SET", "a", "123456")
		// used 10 + new 5 <= 10 + 5
		c.expect(`"a"`, "SET", "a", "54321")
		c.expect(`"a"`, "SET", "a", "1234")
		c.ok("DEL", "b")
		c.expect(`"c"`, "SET", "c", "123456") // used 4 + 6 == 10
		in := c.nsinfo("m")
		if in.values["data_size_bytes"] != "10" || in.values["space_available"] != "0" || in.values["data_limits_bytes"] != "10" {
			t.Errorf("NSINFO: data_size_bytes %s, space_available %s, data_limits_bytes %s",
				in.values["data_size_bytes"], in.values["space_available"], in.values["data_limits_bytes"])
		}
		c.ok("NSSET", "m", "maxsize", "0") // unlimited
		c.expect(`"big"`, "SET", "big", strings.Repeat("x", 100000))
		if _, ok := c.nsinfo("m").values["space_available"]; ok {
			t.Errorf("space_available shown without a maxsize")
		}
	})
	t.Run("maxsize-flag-default", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--maxsize", "4")
		c.ok("NSNEW", "m")
		c.ok("SELECT", "m")
		c.expect(`"a"`, "SET", "a", "1234")
		c.expectErr("No space left on this namespace", "SET", "b", "1")
	})
	t.Run("public-and-password", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "p")
		c.ok("NSSET", "p", "password", "x")
		c.ok("NSSET", "p", "public", "0")
		in := c.nsinfo("p")
		if in.values["public"] != "no" || in.values["password"] != "yes" {
			t.Errorf("public %s password %s", in.values["public"], in.values["password"])
		}
		u := dial(t, s)
		u.expectErr("Namespace protected and private", "SELECT", "p")
		c.ok("NSSET", "p", "public", "1")
		u.ok("SELECT", "p")
		u.expectErr("Namespace is in read-only mode", "SET", "k", "v")
	})
	t.Run("worm", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "w")
		c.ok("NSSET", "w", "worm", "1")
		if c.nsinfo("w").values["worm"] != "yes" {
			t.Errorf("worm not shown")
		}
		c.ok("SELECT", "w")
		c.expect(`"k"`, "SET", "k", "v")
		c.expect(`"k2"`, "SET", "k2", "v")
		c.expectErr("Namespace is protected by worm mode", "SET", "k", "v2")
		c.expectErr("Cannot delete a key when namespace is in worm mode", "DEL", "k")
		c.ok("NSSET", "w", "worm", "0")
		c.expect(`"k"`, "SET", "k", "v2")
		c.ok("DEL", "k")
	})
	t.Run("settings-persist", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "p")
		c.ok("NSSET", "p", "password", "x")
		c.ok("NSSET", "p", "public", "0")
		c.ok("NSSET", "p", "worm", "1")
		c.ok("NSSET", "p", "maxsize", "1234")
		s.Restart()
		c = dial(t, s)
		in := c.nsinfo("p")
		for k, want := range map[string]string{"public": "no", "password": "yes", "worm": "yes", "data_limits_bytes": "1234"} {
			if in.values[k] != want {
				t.Errorf("after restart %s = %s, want %s", k, in.values[k], want)
			}
		}
		c.expectErr("Namespace protected and private", "SELECT", "p")
		c.ok("SELECT", "p", "x")
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "x")
		c.expectErr("Invalid property", "NSSET", "x", "colour", "1")
		c.expectErr("Namespace not found", "NSSET", "nope", "public", "1")
		for _, prop := range []string{"maxsize", "password", "public", "worm"} {
			c.expectErr("Cannot update default namespace", "NSSET", "default", prop, "1")
		}
		c.expectErr("Invalid property value (expected: user, seq)", "NSSET", "x", "mode", "fast")
	})
}

func TestModes(t *testing.T) {
	t.Parallel()
	t.Run("mode-change-only-while-empty", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "a")
		c.ok("NSSET", "a", "mode", "seq")
		c.ok("NSSET", "a", "mode", "user") // still empty
		c.ok("SELECT", "a")
		c.expect(`"k"`, "SET", "k", "v")
		c.expectErr("Cannot change mode of used namespace", "NSSET", "a", "mode", "seq")
		c.ok("DEL", "k")
		c.expectErr("Cannot change mode of used namespace", "NSSET", "a", "mode", "seq")
		if c.nsinfo("a").values["mode"] != "userkey" {
			t.Errorf("mode changed")
		}
	})
	t.Run("default-namespace-may-change-mode", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSSET", "default", "mode", "seq")
		if c.nsinfo("default").values["mode"] != "sequential" {
			t.Errorf("default mode not sequential")
		}
		c.expect(quoted(le8(0)), "SET", "", "a")
		c.expect(quoted(le8(1)), "SET", "", "b")
		s.Restart()
		c = dial(t, s)
		c.expect(`"a"`, "GET", le8(0))
		c.expect(quoted(le8(2)), "SET", "", "c")
		if c.nsinfo("default").values["mode"] != "sequential" {
			t.Errorf("default mode not sequential after restart")
		}
	})
	t.Run("mixed-namespaces", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSNEW", "s")
		c.ok("NSSET", "s", "mode", "seq")
		c.ok("NSNEW", "u")
		c.ok("SELECT", "s")
		c.expect(quoted(le8(0)), "SET", "", "x")
		c.expectErr("Invalid key, only update authorized", "SET", "name", "x")
		c.ok("SELECT", "u")
		c.expect(`"name"`, "SET", "name", "x")
		c.expectErr("Invalid argument, key needed", "SET", "", "x")
		if c.nsinfo("s").values["mode"] != "sequential" || c.nsinfo("u").values["mode"] != "userkey" {
			t.Errorf("modes not per namespace")
		}
	})
	t.Run("seq-ids-skip-after-updates", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "s")
		c.ok("NSSET", "s", "mode", "seq")
		c.ok("SELECT", "s")
		c.expect(quoted(le8(0)), "SET", "", "a")
		c.expect(quoted(le8(1)), "SET", "", "b")
		c.expect(quoted(le8(0)), "SET", le8(0), "a2")
		c.expect(quoted(le8(3)), "SET", "", "c")
		c.expect(quoted(le8(1)), "SET", le8(1), "b2")
		c.expect(quoted(le8(5)), "SET", "", "d")
		c.expect(`"a2"`, "GET", le8(0))
		c.expect("$-1", "GET", le8(2)) // the slot of the copy
		c.expect(`"b2"`, "GET", le8(1))
		c.expect(":4", "DBSIZE")
		c.expect("$-1", "GET", "abc")
		c.expect("$-1", "GET", []byte{0, 0, 0, 0})
		c.ok("DEL", le8(3))
		c.expect("$-1", "GET", le8(3))
		c.expect(":3", "DBSIZE")
		if in := c.nsinfo("s"); in.values["next_internal_id"] != "0x600000000000000" {
			t.Errorf("next_internal_id = %s, want 0x600000000000000", in.values["next_internal_id"])
		}
		s.Restart()
		c = dial(t, s)
		c.ok("SELECT", "s")
		c.expect(`["a2", "b2", $-1, "d"]`, "MGET", le8(0), le8(1), le8(3), le8(5))
		c.expect(quoted(le8(6)), "SET", "", "e")
	})
	t.Run("seq-scan-and-history", func(t *testing.T) {
		t.Parallel()
		_, c := start(t)
		c.ok("NSSET", "default", "mode", "seq")
		c.expect(quoted(le8(0)), "SET", "", "a")
		c.expect(quoted(le8(1)), "SET", "", "b")
		c.expect(quoted(le8(0)), "SET", le8(0), "c") // slot 0 rewritten, copy at slot 2
		c.expect(quoted(le8(3)), "SET", "", "d")
		_, keys := scanReply(t, c.do("SCAN"))
		if want := []string{string(le8(0)), string(le8(1)), string(le8(3))}; strings.Join(keys, "|") != strings.Join(want, "|") {
			t.Errorf("SCAN in seq mode = %q, want %q", keys, want)
		}
		// slots are 42 bytes from offset 29: the copy of slot 0 is at 29+2*42
		copyKey := append(le32(0), le32(29+2*42)...)
		v := c.do("HISTORY", le8(0))
		if v.Kind != resp.KindArray || len(v.Array) != 3 || v.Array[0].String() != quoted(copyKey) || v.Array[2].String() != `"c"` {
			t.Errorf("HISTORY id 0 = %s, want [%s, ts, \"c\"]", v, quoted(copyKey))
		}
		v = c.do("HISTORY", le8(0), copyKey)
		if v.Kind != resp.KindArray || len(v.Array) != 3 || !v.Array[0].Nil || v.Array[2].String() != `"a"` {
			t.Errorf("HISTORY id 0 <copy> = %s, want [$-1, ts, \"a\"]", v)
		}
		if cur := c.bulk("KEYCUR", le8(3)); !bytes.Equal(cur, cursor(8, 0, 1, 29+3*42, zcrc([]byte("d")))) {
			t.Errorf("KEYCUR id 3 = %x", cur)
		}
	})
	t.Run("mode-flag-seq", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--mode", "seq")
		c.expect(quoted(le8(0)), "SET", "", "a")
		c.expectErr("Invalid key, only update authorized", "SET", "k", "v")
		c.ok("NSNEW", "x")
		if c.nsinfo("x").values["mode"] != "sequential" {
			t.Errorf("new namespace under --mode seq is not sequential")
		}
		c.expectErr("This server instance is configured to use a single runtime mode", "NSSET", "x", "mode", "user")
		c.expectErr("This server instance is configured to use a single runtime mode", "NSSET", "default", "mode", "user")
	})
	t.Run("mode-flag-user", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, "--mode", "user")
		c.expectErr("Invalid argument, key needed", "SET", "", "v")
		c.ok("NSNEW", "x")
		c.expectErr("This server instance is configured to use a single runtime mode", "NSSET", "x", "mode", "seq")
	})
	t.Run("mode-flag-on-other-mode-files-exits", func(t *testing.T) {
		t.Parallel()
		s, c := start(t)
		c.ok("NSNEW", "s")
		c.ok("NSSET", "s", "mode", "seq")
		c.ok("SELECT", "s")
		c.expect(quoted(le8(0)), "SET", "", "a")
		s.Stop()
		if code, out := runZdb(t, s.Dir, "--mode", "user"); code <= 0 {
			t.Errorf("--mode user on a seq namespace: exit %d (want an error exit)\n%s", code, out)
		}
		if code, out := runZdb(t, s.Dir, "--mode", "seq"); code <= 0 {
			t.Errorf("--mode seq on a user namespace (default): exit %d (want an error exit)\n%s", code, out)
		}
	})
}

// TestAccessEndsWhenRulesChange: NSSET password and NSSET public 0 end the
// access of the sessions that entered under the old rule; their next
// command on the namespace is refused until they SELECT again.
func TestAccessEndsWhenRulesChange(t *testing.T) {
	t.Parallel()
	const changed = "Namespace access changed, select it again"
	s, adm := start(t, "--admin", "pw")
	adm.ok("AUTH", "pw")
	adm.ok("NSNEW", "r")
	adm.ok("NSSET", "r", "password", "p1")
	adm.ok("SELECT", "r", "p1")
	adm.expect(`"k"`, "SET", "k", "v")
	adm.ok("NSNEW", "other")

	withPw := dial(t, s)
	withPw.ok("SELECT", "r", "p1")
	readOnly := dial(t, s)
	readOnly.ok("SELECT", "r") // public: read-only without the password
	readOnly.expect(`"v"`, "GET", "k")
	elsewhere := dial(t, s)
	elsewhere.ok("SELECT", "other")
	elsewhere.expect(`"x"`, "SET", "x", "1")

	t.Run("password-change", func(t *testing.T) {
		with(t, adm, withPw, readOnly, elsewhere)
		adm.ok("NSSET", "r", "password", "p2")
		for _, c := range []*client{withPw, readOnly} {
			c.expectErr(changed, "GET", "k")
			c.expectErr(changed, "DBSIZE")
			c.expectErr(changed, "SCAN")
			c.expectErr(changed, "SET", "k", "w")
			c.expect("+PONG", "PING") // not a command on the namespace
		}
		withPw.expectErr("Access denied", "SELECT", "r", "p1")
		withPw.expectErr(changed, "GET", "k") // still out
		withPw.ok("SELECT", "r", "p2")
		withPw.expect(`"k"`, "SET", "k", "v2")
		readOnly.ok("SELECT", "r")
		readOnly.expect(`"v2"`, "GET", "k")
		// the session that made the change keeps its access
		adm.expect(`"v2"`, "GET", "k")
		// other namespaces are not affected
		elsewhere.expect(`"1"`, "GET", "x")
	})
	t.Run("made-private", func(t *testing.T) {
		with(t, adm, withPw, readOnly)
		adm.ok("NSSET", "r", "public", "0")
		readOnly.expectErr(changed, "GET", "k")
		readOnly.expectErr("Namespace protected and private", "SELECT", "r")
		readOnly.expectErr(changed, "GET", "k")
		// entered with the password, which still holds
		withPw.expect(`"v2"`, "GET", "k")
		adm.expect(`"v2"`, "GET", "k")
	})
	t.Run("password-cleared", func(t *testing.T) {
		with(t, adm, withPw)
		adm.ok("NSSET", "r", "password", "*")
		withPw.expectErr(changed, "GET", "k")
		withPw.ok("SELECT", "r")
		withPw.expect(`"v2"`, "GET", "k")
	})
	t.Run("other-properties-keep-access", func(t *testing.T) {
		with(t, adm, withPw)
		adm.ok("NSSET", "r", "maxsize", "1000000")
		adm.ok("NSSET", "r", "public", "1")
		withPw.expect(`"v2"`, "GET", "k")
	})
}
