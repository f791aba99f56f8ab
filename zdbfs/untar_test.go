package zdbfs

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fileFacts is what TestUntarSourceTree compares for every path.
type fileFacts struct {
	mode     fs.FileMode // type and permission bits (setuid/setgid/sticky too)
	uid, gid uint32
	size     int64
	mtime    int64 // seconds: tar's default format keeps seconds
	sum      [32]byte
	target   string // symlink target
	nlink    uint64 // regular files: hard links inside the tree
}

// factsOf reads the facts of one path.
func factsOf(p string) (fileFacts, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return fileFacts{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	f := fileFacts{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
	switch {
	case fi.Mode().IsRegular():
		r, err := os.Open(p)
		if err != nil {
			return f, err
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		r.Close()
		if err != nil {
			return f, fmt.Errorf("read %s: %w", p, err)
		}
		if n != fi.Size() {
			return f, fmt.Errorf("%s: read %d bytes, stat says %d", p, n, fi.Size())
		}
		copy(f.sum[:], h.Sum(nil))
		f.size, f.mtime, f.nlink = fi.Size(), fi.ModTime().Unix(), uint64(st.Nlink)
	case fi.Mode()&fs.ModeSymlink != 0:
		if f.target, err = os.Readlink(p); err != nil {
			return f, err
		}
		f.size = fi.Size()
		if f.size != int64(len(f.target)) {
			return f, fmt.Errorf("symlink %s: size %d, target %d bytes", p, f.size, len(f.target))
		}
	}
	return f, nil
}

// treeFacts walks root and records the facts of root itself (as "."
// joined to prefix) and of every path below it, keyed by prefix joined
// to the path relative to root.
func treeFacts(t *testing.T, root, prefix string, out map[string]fileFacts) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		f, err := factsOf(p)
		if err != nil {
			return err
		}
		out[filepath.Join(prefix, rel)] = f
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
}

func compareFacts(t *testing.T, what string, want, got map[string]fileFacts) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+p)
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%s: got %v %d:%d size %d mtime %d nlink %d %q sum %x, want %v %d:%d size %d mtime %d nlink %d %q sum %x",
				p, g.mode, g.uid, g.gid, g.size, g.mtime, g.nlink, g.target, g.sum[:4],
				w.mode, w.uid, w.gid, w.size, w.mtime, w.nlink, w.target, w.sum[:4]))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "unexpected "+p)
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("… %d more", len(diffs)-20))
		}
		t.Fatalf("%s: %d differences:\n%s", what, len(diffs), strings.Join(diffs, "\n"))
	}
}

// extraTree makes what the Go source tree lacks: symlinks (relative,
// absolute, dangling, long target), hard links, unusual modes, owners
// beyond 16 bits, an empty file, a sparse file, deep nesting and a
// 255-byte name.
func extraTree(t *testing.T, dir string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "deep", strings.Repeat("d/", 30)), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "private"), []byte("secret"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, strings.Repeat("n", 255)), []byte("long name"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "hard1"), bytes.Repeat([]byte("hard link\n"), 10000), 0o640))
	must(t, os.Link(filepath.Join(dir, "hard1"), filepath.Join(dir, "deep", "hard2")))
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(t, err)
	_, err = f.WriteAt([]byte("tail"), 5<<20)
	must(t, err)
	f.Close()
	must(t, os.Symlink("exec.sh", filepath.Join(dir, "rel-link")))
	must(t, os.Symlink("/usr/bin/env", filepath.Join(dir, "abs-link")))
	must(t, os.Symlink("does/not/exist", filepath.Join(dir, "dangling")))
	must(t, os.Symlink(strings.Repeat("x/", 500)+"end", filepath.Join(dir, "long-link")))
	must(t, os.Symlink("../exec.sh", filepath.Join(dir, "deep", "up-link")))
	must(t, os.Mkdir(filepath.Join(dir, "sticky"), 0o1777))
	must(t, os.Chmod(filepath.Join(dir, "sticky"), 0o1777))
	must(t, os.Mkdir(filepath.Join(dir, "closed"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "owned"), []byte("owner"), 0o644))
	must(t, os.Lchown(filepath.Join(dir, "owned"), 100000, 200000))
	must(t, os.Lchown(filepath.Join(dir, "rel-link"), 70000, 70001))
	must(t, os.WriteFile(filepath.Join(dir, "setgid"), []byte("g"), 0o644))
	must(t, os.Chmod(filepath.Join(dir, "setgid"), 0o2755))
}

// TestUntarSourceTree extracts a real source tree — the Go toolchain's
// own src/, all of it (12.8k entries, 130 MiB; extracting it takes 6-10 s
// here, so no subtree is needed), plus extraTree — with the tar
// command into a mount over a real zdb process, checks it, unmounts,
// remounts and compares every path with the original: type, permission
// bits, owner, size, mtime, sha256 of the content, symlink targets, hard
// link counts and the directory structure.
func TestUntarSourceTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestUntarSourceTree needs root (tar keeps owners only as root; the mount is a direct FUSE mount)")
	}
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatal("the tar command is needed (Debian package tar)")
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	src := filepath.Join(goroot, "src")
	if _, err := os.Stat(filepath.Join(src, "go", "build")); err != nil {
		t.Fatalf("Go source tree not found at %s: %v", src, err)
	}
	extraParent := t.TempDir()
	extra := filepath.Join(extraParent, "extra")
	must(t, os.Mkdir(extra, 0o755))
	extraTree(t, extra)

	start := time.Now()
	want := map[string]fileFacts{}
	treeFacts(t, src, "src", want)
	treeFacts(t, extra, "extra", want)
	t.Logf("original: %d paths, walked in %v", len(want), time.Since(start).Round(time.Millisecond))

	b := newBackend(t, "client")
	mt := mountOn(t, b, Config{})
	start = time.Now()
	// tar -c … | tar -x: the archive is streamed, never stored.
	create := exec.Command("tar", "-cf", "-", "-C", goroot, "src", "-C", extraParent, "extra")
	extract := exec.Command("tar", "-xpf", "-", "--same-owner", "-C", mt.Dir)
	pipe, err := create.StdoutPipe()
	must(t, err)
	extract.Stdin = pipe
	var cerr, xerr bytes.Buffer
	create.Stderr, extract.Stderr = &cerr, &xerr
	must(t, extract.Start())
	if err := create.Run(); err != nil {
		extract.Process.Kill()
		extract.Wait()
		t.Fatalf("tar -c: %v\n%s", err, cerr.String())
	}
	if err := extract.Wait(); err != nil {
		t.Fatalf("tar -x into the mount: %v\n%s", err, xerr.String())
	}
	t.Logf("untar into the mount: %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	got := map[string]fileFacts{}
	treeFacts(t, filepath.Join(mt.Dir, "src"), "src", got)
	treeFacts(t, filepath.Join(mt.Dir, "extra"), "extra", got)
	compareFacts(t, "before remount", want, got)
	if es, _ := os.ReadDir(mt.Dir); len(es) != 2 {
		t.Fatalf("mount root holds %d entries, want src and extra", len(es))
	}
	t.Logf("compare before remount: %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	mt.unmount()
	mt = mountOn(t, b, Config{})
	t.Logf("unmount + remount: %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	got = map[string]fileFacts{}
	treeFacts(t, filepath.Join(mt.Dir, "src"), "src", got)
	treeFacts(t, filepath.Join(mt.Dir, "extra"), "extra", got)
	compareFacts(t, "after remount", want, got)
	t.Logf("compare after remount: %v", time.Since(start).Round(time.Millisecond))
	mt.unmount()
}
