package files

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostileTree is a small tree every hostile request is tried against.
func hostileTree(t *testing.T) *env {
	e := newEnv(t, Options{})
	e.write("docs/a.txt", "alpha")
	e.write("docs/sub/b.txt", "beta")
	e.write(".qsfs-trash/keep", "not yours")
	return e
}

// TestHostilePathsRefused sends bad paths to every route that takes one:
// each gets one clear 400 and the tree does not change.
func TestHostilePathsRefused(t *testing.T) {
	e := hostileTree(t)
	before := snapshot(t, e.dir)
	bad := []string{
		"..", "/..", "/../", "docs/../..", "/docs/../../etc/passwd",
		"%2e%2e%2f..%2fetc", // raw: decoded once by Go to ../../etc
		"a%00b", "/docs/%00",
		"/.qsfs-trash", "/.qsfs-trash/keep", ".qsfs-uploads/x",
		"/" + strings.Repeat("n", 256),
	}
	for _, p := range bad {
		q := "path=" + p
		if !strings.Contains(p, "%") {
			q = "path=" + url.QueryEscape(p)
		}
		for _, route := range []string{"list", "stat", "download", "zip", "thumb", "text", "search"} {
			target := "/api/files/" + route + "?" + q
			if route == "search" {
				target += "&q=a"
			}
			want(t, e.get(target), http.StatusBadRequest)
		}
		want(t, e.do("PUT", "/api/files/text?"+q, strings.NewReader("x"), "If-None-Match", "*"), http.StatusBadRequest)
		dp, err := url.QueryUnescape(p)
		if err != nil {
			t.Fatal(err)
		}
		want(t, e.post("/api/files/mkdir", map[string]string{"path": dp}), http.StatusBadRequest)
		want(t, e.post("/api/files/new", map[string]string{"path": dp}), http.StatusBadRequest)
		want(t, e.post("/api/files/delete", map[string][]string{"paths": {"/docs/a.txt", dp}}), http.StatusBadRequest)
		want(t, e.post("/api/files/move", map[string]any{"from": "/docs/a.txt", "to": dp}), http.StatusBadRequest)
		want(t, e.post("/api/files/move", map[string]any{"from": dp, "to": "/x"}), http.StatusBadRequest)
		want(t, e.post("/api/files/copy", map[string]any{"from": "/docs", "to": dp}), http.StatusBadRequest)
	}
	// Bad ids and bodies.
	want(t, e.post("/api/files/trash/restore", map[string][]string{"ids": {"../../docs"}}), http.StatusBadRequest)
	want(t, e.post("/api/files/trash/empty", map[string][]string{"ids": {"keep"}}), http.StatusBadRequest)
	want(t, e.post("/api/files/delete", `{"paths":["/docs/a.txt"],"extra":1}`), http.StatusBadRequest)
	want(t, e.post("/api/files/delete", `{"paths":["/docs/a.txt"]} {"paths":["/docs"]}`), http.StatusBadRequest)
	want(t, e.post("/api/files/delete", `{"paths":`), http.StatusBadRequest)
	want(t, e.post("/api/files/delete", `{"paths":[]}`), http.StatusBadRequest)
	want(t, e.post("/api/files/delete", `{"paths":["/"]}`), http.StatusBadRequest)
	big := `{"paths":["/docs/a.txt"],"pad":"` + strings.Repeat("x", 2<<20) + `"}`
	want(t, e.post("/api/files/delete", big), http.StatusRequestEntityTooLarge)
	want(t, e.post("/api/files/mkdir", `{"path":"/new", "path2": "x"}`), http.StatusBadRequest)
	unchanged(t, e.dir, before)
}

// TestDoubleSlashStaysInside: "//etc/passwd" is the tree's etc/passwd,
// which does not exist, never the host's.
func TestDoubleSlashStaysInside(t *testing.T) {
	e := hostileTree(t)
	before := snapshot(t, e.dir)
	for _, p := range []string{"//etc/passwd", "///etc//passwd", "%2F%2Fetc%2Fpasswd"} {
		r := e.get("/api/files/download?path=" + p)
		want(t, r, http.StatusNotFound)
		if bytes.Contains(r.body, []byte("root:")) {
			t.Fatalf("%s served the host's /etc/passwd", p)
		}
		want(t, e.get("/api/files/list?path="+p), http.StatusNotFound)
	}
	// %2e%2e decoded once is a name literally "%2e%2e": not found, not the parent.
	want(t, e.get("/api/files/list?path=%252e%252e"), http.StatusNotFound)
	// The same names are created inside the tree.
	want(t, e.post("/api/files/mkdir", map[string]string{"path": "//etc"}), http.StatusCreated)
	if !e.exists("etc") {
		t.Fatal("//etc was not created as the tree's etc")
	}
	delete(before, "")
	after := snapshot(t, e.dir)
	delete(after, "")
	delete(after, "/etc")
	for k, v := range before {
		if after[k] != v {
			t.Errorf("changed %q", k)
		}
	}
}

// TestSymlinkOutside: a link inside the tree to /etc never reaches /etc.
func TestSymlinkOutside(t *testing.T) {
	e := hostileTree(t)
	if err := os.Symlink("/etc", filepath.Join(e.dir, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(e.dir, "docs/evilfile")); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, e.dir)
	for _, target := range []string{
		"/api/files/list?path=/evil",
		"/api/files/download?path=/evil",
		"/api/files/download?path=/evil/hostname",
		"/api/files/download?path=/docs/evilfile",
		"/api/files/text?path=/docs/evilfile",
		"/api/files/thumb?path=/evil/hostname",
		"/api/files/stat?path=/evil/hostname",
		"/api/files/search?path=/evil&q=host",
	} {
		r := e.get(target)
		want(t, r, http.StatusForbidden)
		if bytes.Contains(r.body, host) || bytes.Contains(r.body, []byte("passwd")) {
			t.Fatalf("%s leaked the host's /etc: %s", target, r.body)
		}
	}
	want(t, e.post("/api/files/delete", map[string][]string{"paths": {"/evil/hostname"}}), http.StatusForbidden)
	want(t, e.post("/api/files/move", map[string]any{"from": "/evil/hostname", "to": "/stolen"}), http.StatusForbidden)
	want(t, e.post("/api/files/copy", map[string]any{"from": "/evil/hostname", "to": "/stolen"}), http.StatusForbidden)
	want(t, e.post("/api/files/copy", map[string]any{"from": "/docs/a.txt", "to": "/evil/x"}), http.StatusForbidden)
	want(t, e.do("PUT", "/api/files/text?path=/evil/x", strings.NewReader("x"), "If-None-Match", "*"), http.StatusForbidden)
	want(t, e.do("PUT", "/api/files/text?path=/docs/evilfile", strings.NewReader("x"), "If-Match", "*"), http.StatusForbidden)
	want(t, e.post("/api/files/mkdir", map[string]string{"path": "/evil/x"}), http.StatusForbidden)
	// A zip of the whole tree holds the link as nothing, and no /etc data.
	r := e.get("/api/files/zip?path=/")
	want(t, r, http.StatusOK)
	if bytes.Contains(r.body, host) {
		t.Fatal("the zip holds /etc/hostname")
	}
	// A search from the root does not walk into /etc.
	r = e.get("/api/files/search?path=/&q=passwd")
	want(t, r, http.StatusOK)
	if got := decode[struct{ Entries []Entry }](t, r); len(got.Entries) != 0 {
		t.Fatalf("search followed the link: %+v", got.Entries)
	}
	// The listing shows the link as a link.
	l := decode[struct{ Entries []Entry }](t, e.get("/api/files/list?path=/"))
	found := false
	for _, en := range l.Entries {
		if en.Name == "evil" {
			found = en.Kind == "link"
		}
	}
	if !found {
		t.Fatalf("evil not listed as a link: %+v", l.Entries)
	}
	unchanged(t, e.dir, before)
	if b, _ := os.ReadFile("/etc/hostname"); !bytes.Equal(b, host) {
		t.Fatal("/etc/hostname changed")
	}
	// Deleting the link itself moves the link, not /etc.
	want(t, e.post("/api/files/delete", map[string][]string{"paths": {"/evil"}}), http.StatusOK)
	if _, err := os.Stat("/etc/hostname"); err != nil {
		t.Fatal(err)
	}
}

// TestFIFONeverOpened: a download or an edit of a FIFO answers 403 at once.
func TestFIFONeverOpened(t *testing.T) {
	e := hostileTree(t)
	if err := syscall.Mkfifo(filepath.Join(e.dir, "docs/pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, e.dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, target := range []string{
		"/api/files/download?path=/docs/pipe",
		"/api/files/text?path=/docs/pipe",
		"/api/files/thumb?path=/docs/pipe",
	} {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+target, nil)
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v (hung on the FIFO?)", target, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: %d, want 403", target, res.StatusCode)
		}
	}
	want(t, e.do("PUT", "/api/files/text?path=/docs/pipe", strings.NewReader("x"), "If-Match", "*"), http.StatusForbidden)
	want(t, e.post("/api/files/copy", map[string]any{"from": "/docs/pipe", "to": "/p2"}), http.StatusForbidden)
	// A zip of the folder skips it and ends.
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/files/download?path=/docs", nil)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	unchanged(t, e.dir, before)
}

// TestHostileFileName: an HTML file named like markup downloads as an
// attachment, never sniffed, sandboxed, and its name is escaped in JSON.
func TestHostileFileName(t *testing.T) {
	e := newEnv(t, Options{})
	name := "<img src=x onerror=alert(1)>.html"
	e.write(name, "<script>alert(1)</script>")
	l := e.get("/api/files/list?path=/")
	want(t, l, http.StatusOK)
	if bytes.Contains(l.body, []byte("<img")) || !bytes.Contains(l.body, []byte(`\u003cimg`)) {
		t.Fatalf("listing does not escape the name: %s", l.body)
	}
	if got := decode[struct{ Entries []Entry }](t, l); len(got.Entries) != 1 || got.Entries[0].Name != name {
		t.Fatalf("listing: %+v", got.Entries)
	}
	for _, inline := range []string{"", "&inline=1"} {
		r := e.get("/api/files/download?path=" + url.QueryEscape("/"+name) + inline)
		want(t, r, http.StatusOK)
		if cd := r.h.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
			t.Errorf("Content-Disposition %q, want attachment", cd)
		}
		if r.h.Get("X-Content-Type-Options") != "nosniff" {
			t.Error("no nosniff")
		}
		if csp := r.h.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("CSP %q", csp)
		}
		if ct := r.h.Get("Content-Type"); strings.Contains(ct, "html") {
			t.Errorf("Content-Type %q", ct)
		}
	}
}
