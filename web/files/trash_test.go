package files

import (
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

type trashList struct{ Items []TrashItem }

func TestTrashDeleteRestore(t *testing.T) {
	e := newEnv(t, Options{User: func(*http.Request) string { return "alice" }})
	e.write("docs/a.txt", "alpha")
	e.write("docs/sub/b.txt", "beta!")
	e.write("top.txt", "top")
	ino := func(rel string) uint64 {
		st, err := os.Stat(filepath.Join(e.dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	topIno := ino("top.txt")
	start := time.Now().Add(-time.Second)
	r := e.post("/api/files/delete", map[string][]string{"paths": {"/docs", "/top.txt", "/docs/sub/b.txt", "/top.txt"}})
	want(t, r, http.StatusOK)
	trashed := decode[struct{ Trashed []TrashItem }](t, r).Trashed
	if len(trashed) != 3 {
		t.Fatalf("trashed %+v", trashed)
	}
	if e.exists("docs") || e.exists("top.txt") {
		t.Fatal("deleted names still there")
	}
	// The listing hides the trash.
	l := decode[struct{ Entries []Entry }](t, e.get("/api/files/list?path=/"))
	if len(l.Entries) != 0 {
		t.Fatalf("root lists %+v", l.Entries)
	}
	items := decode[trashList](t, e.get("/api/files/trash")).Items
	byPath := map[string]TrashItem{}
	for _, it := range items {
		byPath[it.Path] = it
		if it.Deleted.Before(start) || it.By != "alice" || len(it.ID) != 32 {
			t.Errorf("item %+v", it)
		}
	}
	if d := byPath["/docs"]; d.Kind != "dir" || d.Size != int64(len("alpha")) {
		t.Errorf("folder item %+v (size is its files' sum: b.txt went first)", d)
	}
	if f := byPath["/docs/sub/b.txt"]; f.Kind != "file" || f.Size != 5 {
		t.Errorf("file item %+v", f)
	}
	// Data is moved, not copied: the record and the data are in the trash.
	id := byPath["/top.txt"].ID
	if b, err := os.ReadFile(filepath.Join(e.dir, ".qsfs-trash", id, "top.txt")); err != nil || string(b) != "top" {
		t.Fatalf("trash data: %q %v", b, err)
	}
	if ino(".qsfs-trash/"+id+"/top.txt") != topIno {
		t.Fatal("the deleted file was copied, not renamed")
	}
	// Restore the folder, then b.txt, whose folder came back with it.
	r = e.post("/api/files/trash/restore", map[string][]string{"ids": {byPath["/docs"].ID}})
	want(t, r, http.StatusOK)
	if got := decode[struct{ Restored []string }](t, r).Restored; len(got) != 1 || got[0] != "/docs" {
		t.Fatalf("restored %v", got)
	}
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {byPath["/docs/sub/b.txt"].ID}}), http.StatusOK)
	if e.read("docs/a.txt") != "alpha" || e.read("docs/sub/b.txt") != "beta!" {
		t.Fatal("restored data")
	}
	// Restoring over a taken name picks "name (restored N)".
	e.write("top.txt", "new top")
	r = e.post("/api/files/trash/restore", map[string][]string{"ids": {id}})
	want(t, r, http.StatusOK)
	if got := decode[struct{ Restored []string }](t, r).Restored; got[0] != "/top (restored 1).txt" {
		t.Fatalf("restored to %v", got)
	}
	if e.read("top.txt") != "new top" || e.read("top (restored 1).txt") != "top" {
		t.Fatal("restore replaced a file")
	}
	if n := len(decode[trashList](t, e.get("/api/files/trash")).Items); n != 0 {
		t.Fatalf("trash holds %d after restoring all", n)
	}
	before := snapshot(t, e.dir)
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {id}}), http.StatusNotFound)
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {}}), http.StatusBadRequest)
	want(t, e.post("/api/files/delete", map[string][]string{"paths": {"/top.txt", "/missing"}}), http.StatusNotFound)
	unchanged(t, e.dir, before)
}

// TestTrashRestoreMissingParent: the folder of a restored file is made again.
func TestTrashRestoreMissingParent(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("a/b/c.txt", "c")
	want(t, e.post("/api/files/delete", map[string][]string{"paths": {"/a/b/c.txt"}}), http.StatusOK)
	if err := os.RemoveAll(filepath.Join(e.dir, "a")); err != nil {
		t.Fatal(err)
	}
	items := decode[trashList](t, e.get("/api/files/trash")).Items
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {items[0].ID}}), http.StatusOK)
	if e.read("a/b/c.txt") != "c" {
		t.Fatal("not restored")
	}
}

func TestTrashEmpty(t *testing.T) {
	e := newEnv(t, Options{})
	for _, n := range []string{"a", "b", "c"} {
		e.write(n, n)
	}
	want(t, e.post("/api/files/delete", map[string][]string{"paths": {"/a", "/b", "/c"}}), http.StatusOK)
	items := decode[trashList](t, e.get("/api/files/trash")).Items
	sort.Slice(items, func(i, j int) bool { return items[i].Path < items[j].Path })
	before := snapshot(t, e.dir)
	want(t, e.post("/api/files/trash/empty", map[string][]string{"ids": {items[0].ID, "0123456789abcdef0123456789abcdef"}}), http.StatusNotFound)
	unchanged(t, e.dir, before)
	r := e.post("/api/files/trash/empty", map[string][]string{"ids": {items[0].ID}})
	want(t, r, http.StatusOK)
	if n := decode[struct{ Purged int }](t, r).Purged; n != 1 {
		t.Fatalf("purged %d", n)
	}
	if left := decode[trashList](t, e.get("/api/files/trash")).Items; len(left) != 2 || left[0].Path == "/a" || left[1].Path == "/a" {
		t.Fatalf("left %+v", left)
	}
	r = e.do("POST", "/api/files/trash/empty", nil)
	want(t, r, http.StatusOK)
	if n := decode[struct{ Purged int }](t, r).Purged; n != 2 {
		t.Fatalf("purged %d", n)
	}
	if e.exists(".qsfs-trash") && len(decode[trashList](t, e.get("/api/files/trash")).Items) != 0 {
		t.Fatal("trash not empty")
	}
	if e.exists(".qsfs-trash/" + items[1].ID) {
		t.Fatal("data left")
	}
}

// TestTrashCrashLeftovers: a record without data (a crash between the
// record and the rename) is not listed and the file stays; data without a
// record is listed and restored at the root.
func TestTrashCrashLeftovers(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("x.txt", "x")
	// A delete that stopped after writing its record.
	e.write(".qsfs-trash/00000000000000000000000000000001.json", `{"path":"/x.txt","kind":"file","size":1,"deleted":"2026-01-01T00:00:00Z"}`)
	if err := os.Mkdir(filepath.Join(e.dir, ".qsfs-trash/00000000000000000000000000000001"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Data whose record was lost.
	e.write(".qsfs-trash/00000000000000000000000000000002/orphan.txt", "orphan")
	// Not ours: ignored.
	e.write(".qsfs-trash/README", "?")
	items := decode[trashList](t, e.get("/api/files/trash")).Items
	if len(items) != 1 || items[0].ID != "00000000000000000000000000000002" || items[0].Path != "/orphan.txt" || items[0].Size != 6 {
		t.Fatalf("items %+v", items)
	}
	if e.read("x.txt") != "x" {
		t.Fatal("x.txt touched")
	}
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {"00000000000000000000000000000001"}}), http.StatusNotFound)
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {items[0].ID}}), http.StatusOK)
	if e.read("orphan.txt") != "orphan" {
		t.Fatal("orphan not restored")
	}
	want(t, e.do("POST", "/api/files/trash/empty", nil), http.StatusOK)
	if e.exists(".qsfs-trash/00000000000000000000000000000001.json") {
		t.Fatal("empty left a record")
	}
	if e.read("x.txt") != "x" {
		t.Fatal("x.txt touched")
	}
}
