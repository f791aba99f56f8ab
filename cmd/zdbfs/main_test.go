package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"qss/internal/racetest"
	"qss/internal/zdbtest"
)

func buildZdbfs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zdbfs")
	args := append(append([]string{"build"}, racetest.BuildFlags()...), "-o", bin, ".")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	cmd *exec.Cmd
	dir string
	log *bytes.Buffer
}

func isMounted(dir string) bool {
	m, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(m), " "+dir+" ")
}

func startZdbfs(t *testing.T, bin, dir string, port int, extra ...string) *proc {
	t.Helper()
	p := &proc{dir: dir, log: &bytes.Buffer{}}
	opts := fmt.Sprintf("host=127.0.0.1,port=%d,autons,mn=m1,dn=d1,flushage=200ms", port)
	for _, o := range extra {
		opts += "," + o // a later option overrides an earlier one
	}
	p.cmd = exec.Command(bin, "-o", opts, dir)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait() // also for the output: nothing writes p.log after it
		exec.Command("fusermount3", "-u", "-z", dir).Run()
		exec.Command("umount", "-l", dir).Run()
		racetest.Check(t, "zdbfs on "+dir, p.log.String())
	})
	for i := 0; i < 100; i++ {
		if isMounted(dir) {
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("zdbfs did not mount: %s", p.log)
	return nil
}

func (p *proc) kill9(t *testing.T) {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	exec.Command("fusermount3", "-u", "-z", p.dir).Run()
	exec.Command("umount", "-l", p.dir).Run()
}

// writeTree writes and fsyncs files in a new tree and returns their
// contents by path.
func writeTree(t *testing.T, root, tag string) map[string][]byte {
	want := map[string][]byte{}
	for i := range 20 {
		dir := filepath.Join(root, tag, fmt.Sprintf("d%d", i%4), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		data := bytes.Repeat([]byte(fmt.Sprintf("%s-%d;", tag, i)), 1+i*3000)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(data)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		// Left open and unflushed on purpose: only fsync protects it.
		t.Cleanup(func() { f.Close() })
		rel, _ := filepath.Rel(root, p)
		want[rel] = data
	}
	return want
}

func checkTree(t *testing.T, root string, want map[string][]byte) {
	t.Helper()
	for rel, data := range want {
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s after crash: %d bytes, %v (want %d bytes)", rel, len(got), err, len(data))
		}
	}
}

// TestCrash: every fsync'ed file and the path to it survive a kill -9 of
// zdbfs, and separately a kill -9 of zdb.
func TestCrash(t *testing.T) {
	bin := buildZdbfs(t)
	srv := zdbtest.Start(t)
	mnt := t.TempDir()

	p := startZdbfs(t, bin, mnt, srv.Port)
	want := writeTree(t, mnt, "a")
	p.kill9(t)

	p = startZdbfs(t, bin, mnt, srv.Port)
	checkTree(t, mnt, want)
	for k, v := range writeTree(t, mnt, "b") {
		want[k] = v
	}
	srv.RestartAfterKill() // kill -9 of zdb (it comes back on a new port)
	p.kill9(t)

	p = startZdbfs(t, bin, mnt, srv.Port)
	checkTree(t, mnt, want)
	p.cmd.Process.Signal(syscall.SIGTERM) // clean unmount on SIGTERM
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("zdbfs after SIGTERM: %v\n%s", err, p.log)
	}
	if isMounted(mnt) {
		t.Fatal("still mounted after SIGTERM")
	}
}

func TestParseArgs(t *testing.T) {
	c, err := parseArgs([]string{"-o", "host=h,port=1,mp=2,dh=x,mn=M,dn=D,ms=pw,size=2G,autons,allow_other,noatime,syncclose,readahead=8M,procs=3", "/mnt"})
	if err != nil {
		t.Fatal(err)
	}
	if c.meta.addr() != "h:2" || c.data.addr() != "x:1" || c.meta.name != "M" || c.data.name != "D" ||
		c.meta.password != "pw" || c.size != 2<<30 || !c.autons || !c.mo.AllowOther || !c.syncClose || c.mo.ReadAhead != 8<<20 || c.procs != 3 ||
		len(c.mo.Options) != 1 || c.mountpoint != "/mnt" {
		t.Fatalf("%+v", c)
	}
	if _, err := parseArgs(nil); err == nil {
		t.Fatal("no mountpoint accepted")
	}
	for _, bad := range []string{"procs=0", "readahead=512", "closetimeout=0", "closetimeout=x"} {
		if _, err := parseArgs([]string{"-o", bad, "/mnt"}); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
	if procs(0) != 0 || procs(3) != 3 {
		t.Errorf("procs(0) = %d, procs(3) = %d: want the runtime's choice (0) and 3", procs(0), procs(3))
	}
}

// TestHelpVersion: --help prints every option parseArgs takes, --version
// the version, both on stdout with status 0; a mistake is one error line
// with one "zdbfs: " prefix, and the error of a failed mount too.
func TestHelpVersion(t *testing.T) {
	bin := buildZdbfs(t)
	for _, flag := range []string{"--help", "-h"} {
		out, err := exec.Command(bin, flag).Output()
		if err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
		for _, opt := range []string{"host=", "port=", "unix=", "mh=", "mp=", "mu=", "dh=", "dp=", "du=",
			"mn=", "dn=", "ms=", "ds=", "autons", "size=", "cache=", "flushage=", "syncclose", "asyncclose",
			"closetimeout=", "readahead=", "procs=", "background", "allow_other", "ro", "fsname=", "debug", "--version"} {
			if !strings.Contains(string(out), opt) {
				t.Errorf("%s does not list %s", flag, opt)
			}
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "zdbfs ") || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("--version: %q, %v", out, err)
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-o", "procs=0", dir},
		{"--bogus", dir},
		{"-o", "port=1,closetimeout=1s", dir}, // nothing listens on port 1
	} {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Fatalf("%v: exit status 0", args)
		}
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "zdbfs: ") || strings.Count(last, "zdbfs:") != 1 {
			t.Errorf("%v: error line %q: want one zdbfs: prefix", args, last)
		}
	}
	if isMounted(dir) {
		t.Fatal("mounted after a failed start")
	}
}

func TestPrintError(t *testing.T) {
	var b bytes.Buffer
	printError(&b, errors.New("zdbfs: line one\nline two\n"))
	if got := b.String(); got != "zdbfs: line one\nzdbfs: line two\n" {
		t.Fatalf("%q", got)
	}
}
