package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"qss/internal/racetest"
	"qss/internal/zdbtest"
)

// ensureFusermount3 makes sure fusermount3 is installed: as root it
// installs Debian's fuse3 when missing; otherwise the test fails with a
// message saying what to install (it is never skipped silently).
func ensureFusermount3(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("fusermount3"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Fatal("fusermount3 is missing and this test is not root: install Debian's fuse3 package")
	}
	t.Log("fusermount3 missing: apt-get install fuse3")
	var log bytes.Buffer
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", "fuse3"}} {
		if err := aptGet(&log, args...); err != nil {
			t.Fatalf("fusermount3 is missing and apt-get %s failed: %v\n%s", args[0], err, log.String())
		}
	}
	p, err := exec.LookPath("fusermount3")
	if err != nil {
		t.Fatalf("fusermount3 still missing after apt-get install fuse3: %v\n%s", err, log.String())
	}
	return p
}

// aptGet runs apt-get and, like test.sh, waits up to 10 minutes for
// another apt-get or dpkg to let go of its lock: install waits for the dpkg
// lock by itself (DPkg::Lock::Timeout), update fails at once on the package
// lists' lock and is tried again.
func aptGet(log *bytes.Buffer, args ...string) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var out bytes.Buffer
		cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=600"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		log.Write(out.Bytes())
		if err == nil || !strings.Contains(out.String(), "Could not get lock") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Second)
	}
}

// asUser is how the test runs commands as the unprivileged user.
type asUser struct {
	uid, gid uint32
	env      []string
}

func (u *asUser) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	if u.uid != uint32(os.Geteuid()) {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}}
	}
	c.Env = u.env
	c.Dir = "/"
	return c
}

// sh runs a shell command as the user and returns its output.
func (u *asUser) sh(t *testing.T, script string) (string, error) {
	t.Helper()
	out, err := u.cmd("/bin/sh", "-c", script).CombinedOutput()
	return string(out), err
}

// TestMountAsUser mounts zdbfs as an unprivileged user (nobody, when the
// test runs as root) through fusermount3, in a directory that user owns,
// writes and reads a file, checks that permissions are enforced
// (default_permissions), unmounts with fusermount3 -u, remounts to see the
// data persisted, and checks that without fusermount3 on PATH zdbfs fails
// with one clear error line.
func TestMountAsUser(t *testing.T) {
	fm := ensureFusermount3(t)
	u := &asUser{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("user nobody: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		u.uid, u.gid = uint32(uid), uint32(gid)
	}
	if u.uid != 0 {
		devFuseForUsers(t)
	}
	u.env = []string{"PATH=" + filepath.Dir(fm) + ":/usr/bin:/bin", "HOME=/", "LANG=C"}

	// A directory tree the user can reach: t.TempDir() is private to root.
	base, err := os.MkdirTemp("", "zdbfs-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "zdbfs")
	copyFile(t, buildZdbfs(t), bin, 0o755)
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, int(u.uid), int(u.gid)); err != nil {
		t.Fatal(err)
	}
	srv := zdbtest.Start(t)
	opts := fmt.Sprintf("host=127.0.0.1,port=%d,autons,mn=um,dn=ud", srv.Port)

	start := func() (*exec.Cmd, *bytes.Buffer) {
		t.Helper()
		var log bytes.Buffer
		c := u.cmd(bin, "-o", opts, mnt)
		c.Stdout, c.Stderr = &log, &log
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Process.Kill()
			c.Wait()
			exec.Command(fm, "-u", "-z", mnt).Run()
			exec.Command("umount", "-l", mnt).Run()
			racetest.Check(t, "zdbfs as a user", log.String())
		})
		for i := 0; i < 200 && !isMounted(mnt); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if !isMounted(mnt) {
			t.Fatalf("zdbfs as uid %d did not mount: %s", u.uid, log.String())
		}
		return c, &log
	}
	stop := func(c *exec.Cmd, log *bytes.Buffer) {
		t.Helper()
		if out, err := u.cmd(fm, "-u", mnt).CombinedOutput(); err != nil {
			t.Fatalf("fusermount3 -u as uid %d: %v\n%s", u.uid, err, out)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("zdbfs exit after fusermount3 -u: %v\n%s", err, log.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("zdbfs still running 30 s after fusermount3 -u\n%s", log.String())
		}
		if isMounted(mnt) {
			t.Fatal("still mounted after fusermount3 -u")
		}
	}

	c, log := start()
	if m := mountLine(mnt); !strings.Contains(m, "user_id="+strconv.Itoa(int(u.uid))) || !strings.Contains(m, "default_permissions") {
		t.Fatalf("mount options: %s", m)
	}
	script := fmt.Sprintf(`cd %s && echo hello > f && cat f && stat -c '%%u:%%g %%a' f . && chmod 400 f && { echo more >> f; echo status=$?; } 2>&1`, mnt)
	out, err := u.sh(t, script)
	if err != nil {
		t.Fatalf("as uid %d in the mount: %v\n%s", u.uid, err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	owner := fmt.Sprintf("%d:%d", u.uid, u.gid)
	if len(lines) < 4 || lines[0] != "hello" || lines[1] != owner+" 644" || lines[2] != owner+" 755" ||
		!strings.Contains(out, "Permission denied") || !strings.HasPrefix(lines[len(lines)-1], "status=") || lines[len(lines)-1] == "status=0" {
		t.Fatalf("as uid %d in the mount: unexpected output\n%s", u.uid, out)
	}
	stop(c, log)

	c, log = start()
	out, err = u.sh(t, fmt.Sprintf("cat %s/f && stat -c %%a %s/f", mnt, mnt))
	if err != nil || out != "hello\n400\n" {
		t.Fatalf("after remount: %v %q", err, out)
	}
	stop(c, log)

	// No fusermount3 on PATH: one clear error, no mount, no zdb traffic.
	if u.uid != 0 {
		var stderr bytes.Buffer
		c := u.cmd(bin, "-o", opts, mnt)
		c.Env = []string{"PATH=/nonexistent", "HOME=/"}
		c.Stdout, c.Stderr = io.Discard, &stderr
		err := c.Run()
		msg := strings.TrimSpace(stderr.String())
		if err == nil || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "fusermount3") || !strings.Contains(msg, "fuse3") {
			t.Fatalf("zdbfs without fusermount3: %v, stderr %q (want one line naming fusermount3 and fuse3)", err, msg)
		}
		t.Logf("without fusermount3: %s", msg)
		if isMounted(mnt) {
			t.Fatal("mounted without fusermount3")
		}
	}
}

// devFuseForUsers makes /dev/fuse mode 0666 for the test when it is not
// (Debian's default is 0666; some containers create it 0600, and then
// fusermount3 cannot open it for a user), and restores the mode after.
func devFuseForUsers(t *testing.T) {
	t.Helper()
	fi, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatalf("/dev/fuse: %v", err)
	}
	if fi.Mode().Perm()&0o006 == 0o006 {
		return
	}
	if err := os.Chmod("/dev/fuse", fi.Mode().Perm()|0o666); err != nil {
		t.Fatalf("/dev/fuse is %v and cannot be opened for users: %v", fi.Mode(), err)
	}
	t.Logf("/dev/fuse was %v: made 0666 for this test (Debian's default)", fi.Mode().Perm())
	t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
}

func mountLine(dir string) string {
	m, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(m), "\n") {
		if strings.Contains(l, " "+dir+" ") {
			return l
		}
	}
	return ""
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}
