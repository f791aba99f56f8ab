package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"qss/internal/resp"
	"qss/internal/zdbtest"
)

// §8 hooks, with a shell script that logs its arguments.

// hook is a hook script and the file it logs to: one line per run, the
// arguments joined and ended by '|'.
type hook struct {
	path, log string
}

// writeHook writes an executable /bin/sh hook that logs its argv and then
// runs body (shell code that sees the event in $1 and may exit).
func writeHook(t *testing.T, body string) hook {
	t.Helper()
	dir := t.TempDir()
	h := hook{path: filepath.Join(dir, "hook.sh"), log: filepath.Join(dir, "hook.log")}
	script := fmt.Sprintf("#!/bin/sh\nline=$(printf '%%s|' \"$@\")\necho \"$line\" >> '%s'\n%s\nexit 0\n", h.log, body)
	// Hold ForkLock while the file is open for writing, so that no child
	// forked meanwhile by a parallel test inherits the descriptor (which
	// would make executing the hook fail with ETXTBSY).
	syscall.ForkLock.RLock()
	err := os.WriteFile(h.path, []byte(script), 0o755)
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h hook) lines() []string {
	b, _ := os.ReadFile(h.log)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// waitLine waits for a logged line equal to want (hooks that do not block
// run in the background).
func (h hook) waitLine(t *testing.T, want string) {
	t.Helper()
	if !eventually(5*time.Second, func() bool { return h.index(want) >= 0 }) {
		t.Errorf("hook never ran with %q; log:\n%s", want, strings.Join(h.lines(), "\n"))
	}
}

func (h hook) index(want string) int {
	for i, l := range h.lines() {
		if l == want {
			return i
		}
	}
	return -1
}

func instance(s *zdbtest.Server) string { return "tcp://" + s.Addr() }

func TestHookEvents(t *testing.T) {
	t.Parallel()
	probe := t.TempDir()
	listing, listening := filepath.Join(probe, "listing"), filepath.Join(probe, "listening")
	// namespaces-init lists the index root (nothing loaded or created yet);
	// ready connects to the server's own port (it listens already).
	h := writeHook(t, fmt.Sprintf(`case "$1" in
namespaces-init) ls "$3" > '%s' ;;
ready) hp=${2#tcp://}; bash -c "exec 3<>/dev/tcp/${hp%%:*}/${hp##*:}" && echo yes > '%s' ;;
esac`, listing, listening))
	s, c := start(t, "--hook", h.path)
	id := instance(s)
	idx, data := s.IndexDir(), s.DataDir()

	t.Run("namespaces-init-then-ready", func(t *testing.T) {
		init := "namespaces-init|" + id + "|" + idx + "|" + data + "|"
		ready := "ready|" + id + "|"
		h.waitLine(t, init)
		h.waitLine(t, ready)
		if i, r := h.index(init), h.index(ready); i != 0 || r < i {
			t.Errorf("namespaces-init at line %d, ready at line %d; log:\n%s", i, r, strings.Join(h.lines(), "\n"))
		}
		if b, err := os.ReadFile(listing); err != nil || len(b) != 0 {
			t.Errorf("namespaces-init did not run before the namespaces were created: index root held %q (%v)", b, err)
		}
		if b, err := os.ReadFile(listening); err != nil || string(b) != "yes\n" {
			t.Errorf("ready hook could not connect to the server: %q %v", b, err)
		}
	})
	t.Run("namespace-created", func(t *testing.T) {
		with(t, c)
		c.ok("NSNEW", "x")
		h.waitLine(t, "namespace-created|"+id+"|x|")
	})
	t.Run("namespace-updated", func(t *testing.T) {
		with(t, c)
		c.ok("NSSET", "x", "public", "0")
		h.waitLine(t, "namespace-updated|"+id+"|x|")
	})
	t.Run("namespace-reloaded", func(t *testing.T) {
		with(t, c)
		c.ok("RELOAD", "x")
		h.waitLine(t, "namespace-reloaded|"+id+"|x|")
	})
	t.Run("namespace-deleted", func(t *testing.T) {
		with(t, c)
		c.ok("NSDEL", "x")
		h.waitLine(t, "namespace-deleted|"+id+"|x|")
	})
	t.Run("jump-index-and-jump-data", func(t *testing.T) {
		with(t, c)
		c.expect(`"k"`, "SET", "k", "v")
		c.ok("NSJUMP")
		h.waitLine(t, fmt.Sprintf("jump-index|%s|%s|%s|0|", id, nsFile(idx, "default", "i0"), nsFile(idx, "default", "i1")))
		h.waitLine(t, fmt.Sprintf("jump-data|%s|%s|%s|", id, nsFile(data, "default", "d0"), nsFile(data, "default", "d1")))
		// jump-index exited 0: the dirty set is reset
		c.expect("[]", "INDEX", "DIRTY")
		c.expect(`"k"`, "SET", "k", "v2") // flags i0, appends to i1
		c.ok("NSJUMP")
		h.waitLine(t, fmt.Sprintf("jump-index|%s|%s|%s|0 1|", id, nsFile(idx, "default", "i1"), nsFile(idx, "default", "i2")))
		h.waitLine(t, fmt.Sprintf("jump-data|%s|%s|%s|", id, nsFile(data, "default", "d1"), nsFile(data, "default", "d2")))
	})
	t.Run("HOOKS-lists-runs", func(t *testing.T) {
		with(t, c)
		v := c.do("HOOKS")
		if v.Kind != resp.KindArray || len(v.Array) < 8 {
			t.Fatalf("HOOKS = %s", v)
		}
		found := false
		for _, r := range v.Array {
			if r.Kind != resp.KindArray || len(r.Array) != 6 || r.Array[0].Kind != resp.KindBulk ||
				r.Array[1].Kind != resp.KindArray || r.Array[2].Kind != resp.KindInteger ||
				r.Array[3].Kind != resp.KindInteger || r.Array[4].Kind != resp.KindInteger || r.Array[5].Kind != resp.KindInteger {
				t.Fatalf("HOOKS entry: want *6 [$name, *k, :pid, :created, :finished, :status], got %s", r)
			}
			if string(r.Array[0].Str) == "namespace-created" {
				found = true
				if r.Array[1].String() != `["x"]` {
					t.Errorf("namespace-created args %s", r.Array[1])
				}
			}
			if string(r.Array[0].Str) == "ready" {
				pid, created, finished, status := r.Array[2].Int, r.Array[3].Int, r.Array[4].Int, r.Array[5].Int
				if r.Array[1].String() != "[]" || pid <= 0 || status != 0 || finished < created {
					t.Errorf("ready entry %s", r)
				}
				within(t, "ready created", created)
			}
		}
		if !found {
			t.Errorf("HOOKS has no namespace-created: %s", v)
		}
	})
	t.Run("close-and-namespace-closing-on-SIGTERM", func(t *testing.T) {
		s.Stop()
		if h.index("close|"+id+"|") < 0 {
			t.Errorf("no close hook after SIGTERM; log:\n%s", strings.Join(h.lines(), "\n"))
		}
		prefix := "namespace-closing|" + id + "|default|"
		ok := eventually(2*time.Second, func() bool {
			for _, l := range h.lines() {
				if strings.HasPrefix(l, prefix) {
					return true
				}
			}
			return false
		})
		if !ok {
			t.Errorf("no namespace-closing for default; log:\n%s", strings.Join(h.lines(), "\n"))
		}
	})
}

func TestHookJumpIndexFailureKeepsDirty(t *testing.T) {
	t.Parallel()
	h := writeHook(t, `[ "$1" = jump-index ] && exit 1`)
	_, c := start(t, "--hook", h.path)
	c.expect(`"k"`, "SET", "k", "v")
	c.ok("NSJUMP")
	c.expect("[:0]", "INDEX", "DIRTY")
	c.expect(`"k2"`, "SET", "k2", "v")
	c.expect("[:0, :1]", "INDEX", "DIRTY")
}

func TestHookReadyFailureAbortsStartup(t *testing.T) {
	t.Parallel()
	h := writeHook(t, `[ "$1" = ready ] && exit 3`)
	code, out := runZdb(t, t.TempDir(), "--hook", h.path)
	if code <= 0 {
		t.Errorf("ready hook exiting 3: zdb exit %d, want an error exit\n%s", code, out)
	}
	if !strings.Contains(strings.Join(h.lines(), "\n"), "\nready|tcp://127.0.0.1:") {
		t.Errorf("ready hook did not run; log:\n%s", strings.Join(h.lines(), "\n"))
	}
}

// offloaded starts a server whose default namespace has key k0 in d0 and
// k1 in the active d1, then moves d0 aside. It returns the server, a
// client, and the path d0 was moved to.
func offloaded(t *testing.T, h hook, aside string) (*zdbtest.Server, *client, string) {
	t.Helper()
	s, c := start(t, "--hook", h.path)
	c.expect(`"k0"`, "SET", "k0", "old-value")
	c.ok("NSJUMP")
	c.expect(`"k1"`, "SET", "k1", "new-value")
	c.ok("NSNEW", "other")
	c.ok("SELECT", "other")
	c.expect(`"o"`, "SET", "o", "other-value")
	c.ok("SELECT", "default")
	d0 := nsFile(s.DataDir(), "default", "d0")
	if err := os.Rename(d0, aside); err != nil {
		t.Fatal(err)
	}
	return s, c, d0
}

func TestHookMissingData(t *testing.T) {
	t.Parallel()
	t.Run("hook-brings-file-back", func(t *testing.T) {
		t.Parallel()
		aside := filepath.Join(t.TempDir(), "d0.offloaded")
		h := writeHook(t, fmt.Sprintf(`[ "$1" = missing-data ] && mv '%s' "$3"`, aside))
		s, c, d0 := offloaded(t, h, aside)
		c.expect(`"old-value"`, "GET", "k0")
		h.waitLine(t, "missing-data|"+instance(s)+"|"+d0+"|")
		if _, err := os.Stat(d0); err != nil {
			t.Errorf("d0 not back: %v", err)
		}
		c.expect(":1", "CHECK", "k0")
		c.expect(`["old-value", "new-value"]`, "MGET", "k0", "k1")
	})
	t.Run("hook-fails", func(t *testing.T) {
		t.Parallel()
		aside := filepath.Join(t.TempDir(), "d0.offloaded")
		h := writeHook(t, `[ "$1" = missing-data ] && exit 1`)
		s, c, d0 := offloaded(t, h, aside)
		c.expectErr("Internal Error", "GET", "k0")
		h.waitLine(t, "missing-data|"+instance(s)+"|"+d0+"|")
		c.expect(`"new-value"`, "GET", "k1")
	})
	t.Run("slow-hook-stalls-only-its-readers", func(t *testing.T) {
		t.Parallel()
		aside := filepath.Join(t.TempDir(), "d0.offloaded")
		const delay = 2 * time.Second
		h := writeHook(t, fmt.Sprintf(`[ "$1" = missing-data ] && sleep 2 && mv '%s' "$3"`, aside))
		s, c, _ := offloaded(t, h, aside)
		type result struct {
			v   resp.Value
			err error
			d   time.Duration
		}
		done := make(chan result, 1)
		begin := time.Now()
		go func() {
			v, err := c.tryDo("GET", "k0")
			done <- result{v, err, time.Since(begin)}
		}()
		time.Sleep(300 * time.Millisecond) // the hook is running now

		fast := func(name string, cl *client, want string, a ...any) {
			t.Helper()
			b := time.Now()
			cl.expect(want, a...)
			if d := time.Since(b); d > time.Second {
				t.Errorf("%s took %v while the missing-data hook ran", name, d)
			}
		}
		same := dial(t, s)
		fast("GET of a key in the active file", same, `"new-value"`, "GET", "k1")
		fast("SET in the same namespace", same, `"k2"`, "SET", "k2", "v")
		fast("MGET in the same namespace", same, `["new-value", "v"]`, "MGET", "k1", "k2")
		other := dial(t, s)
		other.ok("SELECT", "other")
		fast("GET in another namespace", other, `"other-value"`, "GET", "o")
		fast("PING", dial(t, s), "+PONG", "PING")

		select {
		case r := <-done:
			t.Fatalf("GET k0 returned after %v, before the hook finished: %s %v", r.d, r.v, r.err)
		default:
		}
		r := <-done
		if r.err != nil || r.v.String() != `"old-value"` {
			t.Errorf("GET k0 = %s, %v", r.v, r.err)
		}
		if r.d < delay-100*time.Millisecond {
			t.Errorf("GET k0 took %v, shorter than the hook", r.d)
		}
	})
}

// signalled starts a server whose ready hook records the server's pid
// (the hook's parent), and returns the server, its hook and its pid.
func signalled(t *testing.T) (*zdbtest.Server, hook, int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := writeHook(t, fmt.Sprintf(`[ "$1" = ready ] && echo $PPID > '%s'`, pidFile))
	s := zdbtest.Start(t, "--hook", h.path)
	var pid int
	if !eventually(5*time.Second, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	}) {
		t.Fatal("ready hook did not record the server pid")
	}
	return s, h, pid
}

func TestHookSignals(t *testing.T) {
	t.Parallel()
	t.Run("close-on-SIGINT", func(t *testing.T) {
		t.Parallel()
		s, h, pid := signalled(t)
		dial(t, s).expect(`"k"`, "SET", "k", "v")
		if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if !s.Wait(10 * time.Second) {
			t.Fatal("server still running 10 s after SIGINT")
		}
		if h.index("close|"+instance(s)+"|") < 0 {
			t.Errorf("no close hook after SIGINT; log:\n%s", strings.Join(h.lines(), "\n"))
		}
	})
	t.Run("crash-on-fatal-signal", func(t *testing.T) {
		t.Parallel()
		s, h, pid := signalled(t)
		if err := syscall.Kill(pid, syscall.SIGSEGV); err != nil {
			t.Fatal(err)
		}
		if !s.Wait(10 * time.Second) {
			t.Fatal("server still running 10 s after SIGSEGV")
		}
		if !eventually(3*time.Second, func() bool { return h.index("crash|"+instance(s)+"|") >= 0 }) {
			t.Errorf("no crash hook after SIGSEGV; log:\n%s", strings.Join(h.lines(), "\n"))
		}
		if h.index("close|"+instance(s)+"|") >= 0 {
			t.Errorf("close hook ran on a crash")
		}
	})
}
