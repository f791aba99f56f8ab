package zdb

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of the given size (mount's syntax: "2m") on a
// fresh directory: its free space is exact and it fills up quickly.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and must run as root (as ./test.sh does in CI)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestWriteErrorsKeepTheirCause: a write that fails for lack of disk space
// is ErrWrite (what the client is told) and ENOSPC (why), both found by
// errors.Is.
func TestWriteErrorsKeepTheirCause(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	e := openTestEngine(t, dir)
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = ns.Set([]byte(fmt.Sprintf("k%d", i)), make([]byte, 64<<10), 0)
	}
	var code Error
	if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &code) || code != ErrWrite {
		t.Fatalf("filling the disk: %v", err)
	}
}

// TestWithCause: the code and the cause are both found; the text names
// both; no cause gives the bare code; a cause that already carries the
// code is kept as is.
func TestWithCause(t *testing.T) {
	cause := &os.PathError{Op: "write", Path: "/d/default/d3", Err: syscall.EIO}
	err := withCause(ErrWrite, cause)
	var code Error
	if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.EIO) || !errors.As(err, &code) || code != ErrWrite {
		t.Errorf("withCause: %v", err)
	}
	if want := "Cannot write data/index right now: write /d/default/d3: input/output error"; err.Error() != want {
		t.Errorf("text %q, want %q", err.Error(), want)
	}
	if err := withCause(ErrInternal, nil); err != ErrInternal {
		t.Errorf("no cause: %#v", err)
	}
	if again := withCause(ErrWrite, err); again != err {
		t.Errorf("wrapped twice: %v", again)
	}
}
