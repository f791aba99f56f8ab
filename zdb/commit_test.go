package zdb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func openTestEngine(t *testing.T, dir string) *Engine {
	t.Helper()
	e, err := Open(Options{DataDir: filepath.Join(dir, "data"), IndexDir: filepath.Join(dir, "index"),
		DataSize: 1 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestDeferredWritesAreVisible: a write buffered by SetDeferred is visible
// to GET, SCAN, HISTORY and DEL before its commit, and Close commits it.
func TestDeferredWritesAreVisible(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir)
	ns := e.Namespace(DefaultNamespace)
	if _, err := ns.Set([]byte("a"), []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	// Both the new entry and the flag on the committed one are pending.
	if _, _, err := ns.SetDeferred([]byte("a"), []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ns.SetDeferred([]byte("b"), []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := ns.Get([]byte("a"), nil); err != nil || string(v) != "2" {
		t.Fatalf("GET a = %q, %v", v, err)
	}
	items, _, err := ns.Scan(nil, false, 10)
	if err != nil || len(items) != 2 || string(items[0].Key) != "a" || string(items[1].Key) != "b" {
		t.Fatalf("SCAN before commit = %+v, %v", items, err)
	}
	h, err := ns.History([]byte("a"), nil)
	if err != nil || string(h.Payload) != "2" || h.Parent == nil {
		t.Fatalf("HISTORY a = %+v, %v", h, err)
	}
	if h, err = ns.History([]byte("a"), h.Parent); err != nil || string(h.Payload) != "1" {
		t.Fatalf("HISTORY a parent = %+v, %v", h, err)
	}
	if _, err := ns.DelDeferred([]byte("b"), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTestEngine(t, dir)
	defer e.Close()
	ns = e.Namespace(DefaultNamespace)
	if v, err := ns.Get([]byte("a"), nil); err != nil || string(v) != "2" {
		t.Fatalf("after reopen GET a = %q, %v", v, err)
	}
	if _, err := ns.Get([]byte("b"), nil); err != ErrNotFound {
		t.Fatalf("after reopen GET b: %v", err)
	}
	if items, _, err := ns.Scan(nil, false, 10); err != nil || len(items) != 1 {
		t.Fatalf("after reopen SCAN = %+v, %v", items, err)
	}
}

// TestCommitCoversEarlierTickets: committing a later ticket makes the
// earlier ones durable too.
func TestCommitCoversEarlierTickets(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	defer e.Close()
	ns := e.Namespace(DefaultNamespace)
	_, t1, err := ns.SetDeferred([]byte("x"), []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, t2, err := ns.SetDeferred([]byte("y"), []byte("2"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Commit(t2); err != nil {
		t.Fatal(err)
	}
	if err := ns.Commit(t1); err != nil {
		t.Fatalf("an earlier ticket after a later commit: %v", err)
	}
	if len(ns.pend.data) != 0 || len(ns.pend.index) != 0 {
		t.Fatal("buffers not empty after commit")
	}
}

// TestDiskFull runs the engine on a 2 MiB tmpfs: once the disk is full a
// commit fails with ErrWrite, nothing that was acknowledged is lost, no
// failed write is served after a reopen, and the engine keeps answering.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and must run as root (as ./test.sh does in CI)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })

	e := openTestEngine(t, dir)
	ns := e.Namespace(DefaultNamespace)
	acked := map[string][]byte{}
	var failed error
	for i := 0; i < 1000 && failed == nil; i++ {
		k := fmt.Sprintf("key-%04d", i)
		v := bytes.Repeat([]byte{byte(i)}, 16<<10)
		if _, err := ns.Set([]byte(k), v, 0); err != nil {
			failed = err
			break
		}
		acked[k] = v
	}
	if !errors.Is(failed, ErrWrite) {
		t.Fatalf("filling the disk: got %v, want ErrWrite", failed)
	}
	// Still serving, and what was acknowledged reads back.
	for k, v := range acked {
		got, err := ns.Get([]byte(k), nil)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("after the failure GET %s: %d bytes, %v", k, len(got), err)
		}
	}
	e.Close()
	e = openTestEngine(t, dir)
	defer e.Close()
	ns = e.Namespace(DefaultNamespace)
	if ns.Len() != len(acked) {
		t.Errorf("after reopen %d keys, want the %d acknowledged", ns.Len(), len(acked))
	}
	for k, v := range acked {
		got, err := ns.Get([]byte(k), nil)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("after reopen GET %s: %d bytes, %v", k, len(got), err)
		}
	}
}
