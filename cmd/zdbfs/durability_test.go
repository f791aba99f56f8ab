package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qss/internal/zdbtest"
	"qss/zdb/client"
)

func writeOpen(t *testing.T, p string, data []byte) *os.File {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSyncClose: with syncclose, a close that returned means the file is
// in zdb: a kill -9 right after it loses nothing, even with a flush age
// far longer than the test. Read-only opens and closes change nothing.
func TestSyncClose(t *testing.T) {
	bin := buildZdbfs(t)
	srv := zdbtest.Start(t)
	mnt := t.TempDir()
	p := startZdbfs(t, bin, mnt, srv.Port, "syncclose", "flushage=1h")
	want := map[string][]byte{}
	for i := range 20 {
		name := fmt.Sprintf("d%d/f%d", i%3, i)
		data := bytes.Repeat([]byte(fmt.Sprintf("close %d;", i)), 500*i) // inline and block files
		if err := os.MkdirAll(filepath.Join(mnt, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mnt, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s read back: %v", name, err)
		}
		want[name] = data
	}
	p.kill9(t)
	startZdbfs(t, bin, mnt, srv.Port)
	checkTree(t, mnt, want)
}

// TestSyncMountpoint: `sync MOUNTPOINT` (an fsync of the root directory)
// stores everything — files still open and never fsync'ed, the
// directories leading to them — as syncfs would if Linux sent it to FUSE
// servers (it sends FUSE_SYNCFS to virtiofs only: sync -f never reaches
// zdbfs). The flush age is far longer than the test, so nothing is
// stored in the background.
func TestSyncMountpoint(t *testing.T) {
	bin := buildZdbfs(t)
	srv := zdbtest.Start(t)
	mnt := t.TempDir()
	p := startZdbfs(t, bin, mnt, srv.Port, "flushage=1h")
	want := map[string][]byte{}
	for i := range 12 {
		name := fmt.Sprintf("t/%d/%d/file", i%3, i)
		data := bytes.Repeat([]byte(fmt.Sprintf("sync %d;", i)), 3000*i) // inline and block files
		writeOpen(t, filepath.Join(mnt, name), data)                     // left open
		want[name] = data
	}
	if out, err := exec.Command("sync", mnt).CombinedOutput(); err != nil {
		t.Fatalf("sync %s: %v %s", mnt, err, out)
	}
	p.kill9(t)
	startZdbfs(t, bin, mnt, srv.Port)
	checkTree(t, mnt, want)
}

// TestDurabilityPoints: after a kill -9 of zdbfs and a remount, what each
// durability point covered is there: fdatasync'ed and syncfs'ed files with
// the directories leading to them, closed files (stored within the flush age),
// data and directories older than the flush age in a directory kept busy
// all along (0-db-fs never wrote a busy directory's inode), and an
// unlinked-but-open file's blocks are reclaimed (0-db-fs had a temporary
// namespace that was never reclaimed). The namespace names given by mn=
// and dn= are the ones used.
func TestDurabilityPoints(t *testing.T) {
	bin := buildZdbfs(t)
	srv := zdbtest.Start(t)
	mnt := t.TempDir()
	p := startZdbfs(t, bin, mnt, srv.Port) // flushage=200ms
	path := func(s string) string { return filepath.Join(mnt, s) }
	want := map[string][]byte{}

	// fdatasync
	d1 := bytes.Repeat([]byte("fdatasync;"), 20000)
	f := writeOpen(t, path("a/b/fdatasync"), d1)
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	want["a/b/fdatasync"] = d1

	// sync of the mount point covers files and directories nobody
	// fsync'ed (syncfs itself never reaches a FUSE server)
	for i := range 5 {
		d := bytes.Repeat([]byte(fmt.Sprintf("syncfs %d;", i)), 1000*(i+1))
		writeOpen(t, path(fmt.Sprintf("s/%d/file", i)), d)
		want[fmt.Sprintf("s/%d/file", i)] = d
	}
	if out, err := exec.Command("sync", mnt).CombinedOutput(); err != nil {
		t.Fatalf("sync %s: %v %s", mnt, err, out)
	}

	// a closed file is stored in the background, within the flush age
	closed := bytes.Repeat([]byte("closed;"), 30000)
	if err := os.WriteFile(path("closed"), closed, 0o644); err != nil {
		t.Fatal(err)
	}
	want["closed"] = closed

	// unlinked while open: reclaimed after the crash
	orphanData := bytes.Repeat([]byte("orphan;"), 50000)
	of := writeOpen(t, path("orphan"), orphanData)
	if err := of.Sync(); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path("orphan"), &st); err != nil {
		t.Fatal(err)
	}
	orphanIno := st.Ino
	if err := os.Remove(path("orphan")); err != nil {
		t.Fatal(err)
	}

	// a busy directory: data and a directory, written without fsync, then
	// the directory changes all the time for several flush ages
	aged := bytes.Repeat([]byte("aged;"), 40000)
	writeOpen(t, path("busy/aged"), aged) // left open, never fsync'ed
	want["busy/aged"] = aged
	if err := os.Mkdir(path("busy/agedir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		for i := range 20 {
			n := path(fmt.Sprintf("busy/churn%d", i))
			os.WriteFile(n, []byte("x"), 0o644)
			os.Remove(n)
		}
	}
	p.kill9(t)

	startZdbfs(t, bin, mnt, srv.Port)
	checkTree(t, mnt, want)
	if fi, err := os.Stat(path("busy/agedir")); err != nil || !fi.IsDir() {
		t.Fatalf("directory made in a busy directory, older than the flush age: %v", err)
	}
	if _, err := os.Stat(path("orphan")); !os.IsNotExist(err) {
		t.Fatalf("unlinked file came back: %v", err)
	}

	// What zdb holds: the orphan's inode and blocks are gone, and the
	// namespaces are the ones named by mn= and dn=.
	ctx := context.Background()
	admin, err := client.New(ctx, client.Options{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	names, err := admin.NSList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	if !has["m1"] || !has["d1"] || has["zdbfs-meta"] || has["zdbfs-data"] {
		t.Fatalf("namespaces %v: want m1 and d1 (mn=, dn=), not the defaults", names)
	}
	for ns, key := range map[string][]byte{"m1": inoKey('i', orphanIno), "d1": append(inoKey('b', orphanIno), 0, 0, 0, 0, 0, 0, 0, 0)} {
		c, err := client.New(ctx, client.Options{Addr: srv.Addr(), Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		ok, err := c.Exists(ctx, key)
		c.Close()
		if err != nil || ok {
			t.Fatalf("orphan inode %d: key %q in %s still exists after the remount (%v)", orphanIno, key, ns, err)
		}
	}
}

func inoKey(prefix byte, ino uint64) []byte {
	k := []byte{prefix, 0, 0, 0, 0, 0, 0, 0, 0}
	for i := 0; i < 8; i++ {
		k[8-i] = byte(ino >> (8 * i))
	}
	return k
}
