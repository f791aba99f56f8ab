package fsys

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClean(t *testing.T) {
	good := map[string]string{
		"": ".", "/": ".", "//": ".", "/a": "a", "a/": "a", "/a//b/": "a/b", "a/b c/d.txt": "a/b c/d.txt",
		"%2e%2e": "%2e%2e", "/.qsfs-trashy": ".qsfs-trashy", "a/.qsfs-trash": "a/.qsfs-trash", "...": "...",
	}
	for in, want := range good {
		if got, err := Clean(in); err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"..", "/..", "/a/../b", "a/..", "./a", "a/./b", "a\x00b", "/.qsfs-trash", ".qsfs-uploads/x",
		"/" + strings.Repeat("n", MaxName+1), strings.Repeat("a/", MaxPath/2+1)}
	for _, in := range bad {
		if got, err := Clean(in); !errors.Is(err, ErrBadPath) {
			t.Errorf("Clean(%q) = %q, %v; want ErrBadPath", in, got, err)
		}
	}
	if got, err := CleanInternal("/.qsfs-trash/1"); err != nil || got != ".qsfs-trash/1" {
		t.Errorf("CleanInternal: %q %v", got, err)
	}
	if Join(".", "a") != "a" || Join("a", "b") != "a/b" || Display(".") != "/" || Display("a/b") != "/a/b" {
		t.Error("Join/Display")
	}
}

// Symlinks that leave the root are refused, whatever the operation;
// FIFOs are refused without blocking.
func TestRootConfinesAndRefusesSpecialFiles(t *testing.T) {
	for _, open := range []func(string) (*Root, error){OpenRoot, OpenDir} {
		dir := t.TempDir()
		outside := t.TempDir()
		os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
		os.Symlink(outside, filepath.Join(dir, "evil"))
		os.Symlink("/etc/passwd", filepath.Join(dir, "abs"))
		if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Open("evil/secret"); err == nil {
			t.Error("read through a symlink out of the root")
		}
		if _, err := r.Open("abs"); err == nil {
			t.Error("read through an absolute symlink")
		}
		if _, err := r.OpenFile("evil/new", os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			t.Error("created through a symlink out of the root")
		}
		if err := r.Rename("evil/secret", "stolen"); err == nil {
			t.Error("renamed through a symlink out of the root")
		}
		if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
			t.Error("a file appeared outside the root")
		}
		done := make(chan error, 1)
		go func() {
			_, err := r.Open("fifo")
			if err == nil {
				_, err = r.OpenFile("fifo", os.O_WRONLY, 0)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("open of a FIFO: %v, want ErrNotRegular", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("open of a FIFO blocked")
		}
		f, err := r.OpenFile("a.txt", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("hello"))
		f.Close()
		g, err := r.Open("a.txt")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(g)
		g.Close()
		if string(b) != "hello" {
			t.Errorf("read back %q", b)
		}
		r.Close()
	}
}

// An OpenDir root holds no descriptor (a mount under it can be
// unmounted), and refuses to serve the directory underneath afterwards.
func TestOpenDirReleasesAndNoticesUnmount(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test mounts a tmpfs: run it as root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	r, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Mkdir("in-the-mount", 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount with the root idle: %v %s", err, out)
	}
	if _, err := r.Stat("."); !errors.Is(err, ErrGone) {
		t.Fatalf("stat after the unmount: %v, want ErrGone", err)
	}
	if err := r.Mkdir("underneath", 0o755); !errors.Is(err, ErrGone) {
		t.Fatalf("mkdir after the unmount: %v, want ErrGone", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "underneath")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("wrote into the directory under the mount")
	}
}
