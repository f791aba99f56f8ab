package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"qss/internal/zdbtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	zdbtest.RemoveBinary()
	os.Exit(code)
}

// TestDefaultRun starts the binary the way the README does, with no data
// flags: it must create ./zdb-data and ./zdb-index, listen on loopback and
// print its address.
func TestDefaultRun(t *testing.T) {
	bin := zdbtest.Binary(t)
	dir := t.TempDir()
	port := zdbtest.FreePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port))
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		want := "zdb listening on 127.0.0.1:" + strconv.Itoa(port)
		if strings.TrimSpace(l) != want {
			t.Fatalf("printed %q, want %q", l, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no address printed")
	}
	for _, d := range []string{"zdb-data", "zdb-index"} {
		if _, err := os.Stat(filepath.Join(dir, d, "default")); err != nil {
			t.Errorf("%s/default not created: %v", d, err)
		}
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestRedisCLI drives our server with redis-cli, a real RESP client that
// 0-db users rely on. test.sh installs redis-tools.
func TestRedisCLI(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not installed: run ./test.sh, which installs redis-tools")
	}
	s := zdbtest.Start(t)
	run := func(args ...string) string {
		t.Helper()
		argv := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}, args...)
		out, err := exec.Command(cli, argv...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "hello", "world"}, "hello"},
		{[]string{"GET", "hello"}, "world"},
		{[]string{"EXISTS", "hello"}, "1"},
		{[]string{"DEL", "hello"}, "OK"},
		{[]string{"DEL", "hello"}, "Key not found"},
		{[]string{"NSLIST"}, "default"},
	} {
		if got := run(c.args...); got != c.want {
			t.Errorf("redis-cli %v = %q, want %q", c.args, got, c.want)
		}
	}
}

func TestFlagErrors(t *testing.T) {
	bin := zdbtest.Binary(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "fast"}, "--mode must be user or seq"},
		{[]string{"--datasize", "1000"}, "--datasize must be at least"},
		{[]string{"--protect"}, "--protect needs --admin"},
		{[]string{"--dualnet"}, "--dualnet needs --socket"},
		{[]string{"--compact-interval", "1ms"}, "--compact-interval at least 100ms"},
		{[]string{"--nosuchflag"}, "flag provided but not defined"},
	} {
		cmd := exec.Command(bin, c.args...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("zdb %v: exit 0, want an error", c.args)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("zdb %v: output %q lacks %q", c.args, out, c.want)
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "zdb ") {
		t.Errorf("--version: %q, %v", out, err)
	}
}

// TestModeMismatch: starting with --mode seq on files made in user mode
// exits with an error.
func TestModeMismatch(t *testing.T) {
	s := zdbtest.Start(t)
	s.Stop()
	bin := zdbtest.Binary(t)
	out, err := exec.Command(bin, "--data", s.DataDir(), "--index", s.IndexDir(), "--mode", "seq",
		"--port", strconv.Itoa(zdbtest.FreePort(t))).CombinedOutput()
	if err == nil {
		t.Fatal("started in seq mode on user-mode files")
	}
	if !strings.Contains(string(out), "user mode but the server runs in seq mode") {
		t.Errorf("unclear error: %s", out)
	}
}

// TestLoopbackWarning: listening beyond loopback without --admin warns.
func TestLoopbackWarning(t *testing.T) {
	s := zdbtest.Start(t)
	if strings.Contains(s.Log(), "beyond loopback") {
		t.Error("warned on loopback")
	}
	bin := zdbtest.Binary(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--listen", "0.0.0.0", "--port", strconv.Itoa(zdbtest.FreePort(t)),
		"--data", filepath.Join(dir, "d"), "--index", filepath.Join(dir, "i"))
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening beyond loopback without --admin") {
				found <- true
				return
			}
		}
	}()
	select {
	case <-found:
	case <-time.After(10 * time.Second):
		t.Fatal("no warning when listening on 0.0.0.0 without --admin")
	}
}

// TestPasswordNotLogged: the admin password never appears in the logs.
func TestPasswordNotLogged(t *testing.T) {
	const pw = "s3cret-Admin-pw"
	s := zdbtest.Start(t, "--admin", pw, "--verbose")
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n*2\r\n$4\r\nAUTH\r\n$15\r\n"+pw+"\r\n")
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := io.ReadAtLeast(c, buf, len("-Access denied\r\n+OK\r\n"))
	if got := string(buf[:n]); got != "-Access denied\r\n+OK\r\n" {
		t.Fatalf("AUTH replies %q", got)
	}
	c.Close()
	s.Stop()
	if strings.Contains(s.Log(), pw) {
		t.Fatal("admin password found in the log")
	}
}

// exitCode runs zdb with args in a fresh directory and returns its exit
// status and output.
func exitCode(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(zdbtest.Binary(t), args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err == nil {
		return 0, string(out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("zdb %v: %v", args, err)
	}
	return ee.ExitCode(), string(out)
}

// TestExitCodes: 0-db exits 1 (EXIT_FAILURE) after printing its usage for
// --help and on any command-line mistake.
func TestExitCodes(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-help"}, {"--nosuchflag"}, {"--mode", "fast"}, {"--port"},
		{"--datasize", "1000"}, {"--protect"}, {"extra-argument"},
	} {
		if code, out := exitCode(t, args...); code != 1 {
			t.Errorf("zdb %v: exit %d, want 1\n%s", args, code, out)
		}
	}
	if code, out := exitCode(t, "--help"); !strings.Contains(out, "--datasize") {
		t.Errorf("--help (exit %d) does not print the usage: %q", code, out)
	}
	if code, _ := exitCode(t, "--version"); code != 0 {
		t.Errorf("--version: exit %d", code)
	}
}

// TestDumpCreatesDirectories: like 0-db, --dump creates missing data and
// index directories (and finds nothing in them).
func TestDumpCreatesDirectories(t *testing.T) {
	dir := t.TempDir()
	data, index := filepath.Join(dir, "a", "data"), filepath.Join(dir, "b", "index")
	code, out := exitCode(t, "--dump", "--data", data, "--index", index)
	if code != 0 {
		t.Fatalf("--dump on missing directories: exit %d\n%s", code, out)
	}
	for _, d := range []string{data, index} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
}

// TestModeDirect: 0-db takes --mode direct as seq (with a warning).
func TestModeDirect(t *testing.T) {
	s := zdbtest.Start(t, "--mode", "direct")
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$1\r\nv\r\n")
	want := "$8\r\n\x00\x00\x00\x00\x00\x00\x00\x00\r\n"
	buf := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("SET \"\" v in direct mode: %q, %v (want the first sequential id)", buf, err)
	}
	if !strings.Contains(s.Log(), "direct") {
		t.Errorf("no warning that direct is seq:\n%s", s.Log())
	}
}

// TestSignalDuringReadyHook: SIGTERM sent while the ready hook runs (here
// by the hook itself) is a clean shutdown — close hook, exit 0 — not Go's
// default death by signal: the handler is installed before the hook runs
// and before the address is printed.
func TestSignalDuringReadyHook(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "hook.log")
	hook := filepath.Join(dir, "hook.sh")
	script := "#!/bin/sh\necho \"$1\" >> '" + log + "'\n" +
		"if [ \"$1\" = ready ]; then kill -TERM $PPID; sleep 0.3; fi\nexit 0\n"
	syscall.ForkLock.RLock()
	err := os.WriteFile(hook, []byte(script), 0o755)
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(zdbtest.Binary(t), "--port", strconv.Itoa(zdbtest.FreePort(t)), "--hook", hook,
		"--data", filepath.Join(dir, "data"), "--index", filepath.Join(dir, "index"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("zdb after SIGTERM during the ready hook: %v (%v)\n%s", err, cmd.ProcessState, out.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("zdb did not stop\n%s", out.String())
	}
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), "close") {
		t.Errorf("close hook did not run; hook log:\n%s", b)
	}
}
