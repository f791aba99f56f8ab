package files

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultMaxText(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("big.txt", strings.Repeat("a", DefaultMaxText+1))
	want(t, e.get("/api/files/text?path=/big.txt"), http.StatusRequestEntityTooLarge)
}

func TestMkdirNew(t *testing.T) {
	e := newEnv(t, Options{})
	r := e.post("/api/files/mkdir", map[string]string{"path": "/a"})
	want(t, r, http.StatusCreated)
	if en := decode[Entry](t, r); en.Kind != "dir" || en.Path != "/a" || en.Name != "a" {
		t.Fatalf("mkdir entry %+v", en)
	}
	r = e.post("/api/files/new", map[string]string{"path": "/a/f.txt"})
	want(t, r, http.StatusCreated)
	if en := decode[Entry](t, r); en.Kind != "file" || en.Size != 0 || en.Path != "/a/f.txt" {
		t.Fatalf("new entry %+v", en)
	}
	e.write("a/f.txt", "data")
	before := snapshot(t, e.dir)
	want(t, e.post("/api/files/mkdir", map[string]string{"path": "/a"}), http.StatusConflict)
	want(t, e.post("/api/files/new", map[string]string{"path": "/a/f.txt"}), http.StatusConflict)
	want(t, e.post("/api/files/new", map[string]string{"path": "/a"}), http.StatusConflict)
	want(t, e.post("/api/files/mkdir", map[string]string{"path": "/missing/b"}), http.StatusNotFound)
	want(t, e.post("/api/files/mkdir", map[string]string{"path": "/"}), http.StatusBadRequest)
	unchanged(t, e.dir, before)
	if e.read("a/f.txt") != "data" {
		t.Fatal("new replaced a file")
	}
}

func TestMove(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("a/x/deep.txt", "deep")
	e.write("b.txt", "b")
	e.write("c.txt", "c")
	before := snapshot(t, e.dir)
	// Into itself, onto itself, over an existing name, to a missing folder.
	want(t, e.post("/api/files/move", map[string]any{"from": "/a", "to": "/a/x/a"}), http.StatusBadRequest)
	want(t, e.post("/api/files/move", map[string]any{"from": "/a", "to": "/a/"}), http.StatusBadRequest)
	want(t, e.post("/api/files/move", map[string]any{"from": "/b.txt", "to": "/c.txt"}), http.StatusConflict)
	want(t, e.post("/api/files/move", map[string]any{"from": "/b.txt", "to": "/nope/c.txt"}), http.StatusNotFound)
	want(t, e.post("/api/files/move", map[string]any{"from": "/nope", "to": "/z"}), http.StatusNotFound)
	want(t, e.post("/api/files/move", map[string]any{"from": "/b.txt", "to": "/c.txt/z"}), http.StatusBadRequest)
	want(t, e.post("/api/files/move", map[string]any{"from": "/", "to": "/z"}), http.StatusBadRequest)
	want(t, e.post("/api/files/move", map[string]any{"from": "/a/x", "to": "/a", "overwrite": true}), http.StatusBadRequest)
	want(t, e.post("/api/files/copy", map[string]any{"from": "/a/x", "to": "/a", "overwrite": true}), http.StatusBadRequest)
	unchanged(t, e.dir, before)
	// A folder prefix that is not the folder ("/a" → "/ab") is fine.
	r := e.post("/api/files/move", map[string]any{"from": "/a", "to": "/ab"})
	want(t, r, http.StatusOK)
	if en := decode[Entry](t, r); en.Path != "/ab" || en.Kind != "dir" || e.read("ab/x/deep.txt") != "deep" || e.exists("a") {
		t.Fatalf("move: %+v", en)
	}
	// Overwrite: the replaced file goes to the trash, not away.
	want(t, e.post("/api/files/move", map[string]any{"from": "/b.txt", "to": "/c.txt", "overwrite": true}), http.StatusOK)
	if e.read("c.txt") != "b" || e.exists("b.txt") {
		t.Fatal("overwrite move")
	}
	items := decode[struct{ Items []TrashItem }](t, e.get("/api/files/trash")).Items
	if len(items) != 1 || items[0].Path != "/c.txt" {
		t.Fatalf("the replaced file is not in the trash: %+v", items)
	}
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {items[0].ID}}), http.StatusOK)
	if e.read("c (restored 1).txt") != "c" {
		t.Fatal("replaced data lost")
	}
}

func TestCopy(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("src/a.txt", "A")
	e.write("src/d/b.bin", strings.Repeat("\x00\x01", 70000))
	if err := os.MkdirAll(filepath.Join(e.dir, "src/empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.write("dst.txt", "keep")
	before := snapshot(t, e.dir)
	want(t, e.post("/api/files/copy", map[string]any{"from": "/src/a.txt", "to": "/dst.txt"}), http.StatusConflict)
	want(t, e.post("/api/files/copy", map[string]any{"from": "/src", "to": "/src/d/again"}), http.StatusBadRequest)
	want(t, e.post("/api/files/copy", map[string]any{"from": "/src", "to": "/missing/x"}), http.StatusNotFound)
	want(t, e.post("/api/files/copy", `{"from":"/src","to":"/x","overwrite":"yes"}`), http.StatusBadRequest)
	unchanged(t, e.dir, before)
	if e.read("dst.txt") != "keep" {
		t.Fatal("copy without overwrite replaced the file")
	}
	r := e.post("/api/files/copy", map[string]any{"from": "/src", "to": "/copy"})
	want(t, r, http.StatusOK)
	if en := decode[Entry](t, r); en.Path != "/copy" || en.Kind != "dir" {
		t.Fatalf("copy entry %+v", en)
	}
	src := snapshot(t, filepath.Join(e.dir, "src"))
	dst := snapshot(t, filepath.Join(e.dir, "copy"))
	for k, v := range src {
		if k == "" {
			continue
		}
		// Same mode, size, mtime and content (directory sizes aside).
		if dst[k] != v && !strings.HasPrefix(v, "d") {
			t.Errorf("copy of %q: %q, want %q", k, dst[k], v)
		}
		if _, ok := dst[k]; !ok {
			t.Errorf("copy misses %q", k)
		}
	}
	if len(dst) != len(src) {
		t.Errorf("copy has %d names, source %d", len(dst), len(src))
	}
	want(t, e.post("/api/files/copy", map[string]any{"from": "/src/a.txt", "to": "/dst.txt", "overwrite": true}), http.StatusOK)
	if e.read("dst.txt") != "A" || e.read("src/a.txt") != "A" {
		t.Fatal("copy with overwrite")
	}
	// No temporary names are left.
	des, _ := os.ReadDir(e.dir)
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".qsfs-copy") {
			t.Fatalf("left %s", de.Name())
		}
	}
}

func TestStatAndResident(t *testing.T) {
	e := newEnv(t, Options{Resident: func(name string, _ fs.FileInfo) (bool, bool) {
		switch name {
		case "far.bin":
			return true, true
		case "near.bin":
			return false, true
		}
		return false, false
	}})
	e.write("far.bin", "f")
	e.write("near.bin", "n")
	e.write("dunno.bin", "d")
	l := decode[struct {
		Path    string
		Entries []Entry
	}](t, e.get("/api/files/list?path=/"))
	if l.Path != "/" || len(l.Entries) != 3 {
		t.Fatalf("list %+v", l)
	}
	got := map[string]string{}
	for _, en := range l.Entries {
		switch {
		case en.Remote == nil:
			got[en.Name] = "unknown"
		case *en.Remote:
			got[en.Name] = "remote"
		default:
			got[en.Name] = "local"
		}
	}
	if got["far.bin"] != "remote" || got["near.bin"] != "local" || got["dunno.bin"] != "unknown" {
		t.Fatalf("badges %v", got)
	}
	r := e.get("/api/files/stat?path=/far.bin")
	want(t, r, http.StatusOK)
	s := decode[statEntry](t, r)
	if s.Path != "/far.bin" || s.Size != 1 || s.ETag == "" || s.Remote == nil || !*s.Remote {
		t.Fatalf("stat %+v", s)
	}
	if d := e.get("/api/files/download?path=/far.bin"); d.h.Get("ETag") != s.ETag {
		t.Fatalf("stat etag %q, download etag %q", s.ETag, d.h.Get("ETag"))
	}
	want(t, e.get("/api/files/list?path=/far.bin"), http.StatusBadRequest)
	want(t, e.get("/api/files/nope"), http.StatusNotFound)
}

func TestDownloadRange(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("v.mp4", "0123456789")
	r := e.do("GET", "/api/files/download?path=/v.mp4&inline=1", nil, "Range", "bytes=2-5")
	if r.code != http.StatusPartialContent || string(r.body) != "2345" {
		t.Fatalf("range: %s", r)
	}
	if cd := r.h.Get("Content-Disposition"); !strings.HasPrefix(cd, "inline;") || r.h.Get("Content-Type") != "video/mp4" {
		t.Fatalf("inline video: %q %q", cd, r.h.Get("Content-Type"))
	}
	etag := r.h.Get("ETag")
	r = e.do("GET", "/api/files/download?path=/v.mp4", nil, "Range", "bytes=2-5", "If-Range", `"stale"`)
	if r.code != http.StatusOK || string(r.body) != "0123456789" {
		t.Fatalf("If-Range stale: %s", r)
	}
	r = e.do("GET", "/api/files/download?path=/v.mp4", nil, "Range", "bytes=8-", "If-Range", etag)
	if r.code != http.StatusPartialContent || string(r.body) != "89" {
		t.Fatalf("If-Range current: %s", r)
	}
}

// TestPrivateNotCached: the user's files, folders as zips and error
// answers carry Cache-Control: no-store, so neither a shared cache nor
// the browser's disk keeps private data (after a logout, on a shared
// computer).
func TestPrivateNotCached(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("d/a.txt", "private")
	for _, target := range []string{
		"/api/files/download?path=/d/a.txt",
		"/api/files/download?path=/d/a.txt&inline=1",
		"/api/files/download?path=/d",
		"/api/files/zip?path=/d&path=/d/a.txt",
		"/api/files/download?path=/missing",
		"/api/files/list?path=/missing",
	} {
		r := e.get(target)
		if cc := r.h.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("%s: %d Cache-Control %q, want no-store", target, r.code, cc)
		}
	}
}

// TestCopyIntoItselfThroughLink: a copy whose target folder is the source
// (or inside it) reached through a symbolic link is refused with 400, as
// the direct form is, instead of copying its own copy forever; nothing
// is left behind.
func TestCopyIntoItselfThroughLink(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("src/a.txt", "A")
	e.write("src/sub/b.txt", "B")
	if err := os.Symlink("src", filepath.Join(e.dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("src/sub", filepath.Join(e.dir, "subalias")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, e.dir)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, to := range []string{"/alias/copy", "/subalias/copy", "/alias/sub/copy"} {
		b, _ := json.Marshal(map[string]any{"from": "/src", "to": to})
		res, err := client.Post(e.srv.URL+"/api/files/copy", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatalf("copy /src to %s: %v", to, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want(t, resp{res.StatusCode, res.Header, body}, http.StatusBadRequest)
	}
	// The refused copy's temporary folder came and went: the folders'
	// times moved, nothing else.
	after := snapshot(t, e.dir)
	for k, v := range before {
		if after[k] != v && !strings.HasPrefix(v, "d") {
			t.Errorf("changed: %q: %q → %q", k, v, after[k])
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d names before, %d after", len(before), len(after))
	}
	// A copy beside it through the link still works.
	want(t, e.post("/api/files/copy", map[string]any{"from": "/src/sub", "to": "/alias/sub2"}), http.StatusOK)
	if e.read("src/sub2/b.txt") != "B" {
		t.Fatal("copy through a link to a folder elsewhere")
	}
}
