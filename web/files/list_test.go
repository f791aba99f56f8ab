package files

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qss/web/fsys"
)

func makeFiles(tb testing.TB, dir string, n int) {
	tb.Helper()
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d.txt", i)), []byte("x"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestList10k(t *testing.T) {
	e := newEnv(t, Options{})
	if err := os.Mkdir(filepath.Join(e.dir, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	makeFiles(t, filepath.Join(e.dir, "big"), 10000)
	r := e.get("/api/files/list?path=/big")
	want(t, r, http.StatusOK)
	l := decode[struct {
		Path    string
		Entries []Entry
	}](t, r)
	if l.Path != "/big" || len(l.Entries) != 10000 {
		t.Fatalf("path %q, %d entries", l.Path, len(l.Entries))
	}
	for i, en := range l.Entries {
		if want := fmt.Sprintf("f%05d.txt", i); en.Name != want || en.Path != "/big/"+want || en.Kind != "file" || en.Size != 1 {
			t.Fatalf("entry %d: %+v", i, en)
		}
	}
}

func BenchmarkList10k(b *testing.B) {
	dir := b.TempDir()
	makeFiles(b, dir, 10000)
	root, err := fsys.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	srv := httptest.NewServer(New(root, Options{}).Routes())
	defer srv.Close()
	for b.Loop() {
		res, err := srv.Client().Get(srv.URL + "/api/files/list?path=/")
		if err != nil {
			b.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatal(res.Status)
		}
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("Photos/Holiday-2024/IMG_1.JPG", "1")
	e.write("Photos/holiday.txt", "2")
	e.write("docs/HOLIDAY plan.md", "3")
	e.write("docs/other.md", "4")
	e.write(".qsfs-trash/x/holiday-deleted", "5")
	type result struct {
		Entries   []Entry
		Truncated bool
	}
	names := func(r result) string {
		var s []string
		for _, en := range r.Entries {
			s = append(s, en.Path)
		}
		return strings.Join(s, ",")
	}
	r := decode[result](t, e.get("/api/files/search?path=/&q=HoLiDaY"))
	if got := names(r); got != "/Photos/Holiday-2024,/Photos/holiday.txt,/docs/HOLIDAY plan.md" || r.Truncated {
		t.Fatalf("search: %s %v", got, r.Truncated)
	}
	r = decode[result](t, e.get("/api/files/search?path=/Photos&q=holiday&limit=1"))
	if len(r.Entries) != 1 || !r.Truncated {
		t.Fatalf("limit: %s %v", names(r), r.Truncated)
	}
	r = decode[result](t, e.get("/api/files/search?path=/docs&q=img"))
	if len(r.Entries) != 0 || r.Truncated {
		t.Fatalf("under docs: %s", names(r))
	}
	want(t, e.get("/api/files/search?path=/&q="), http.StatusBadRequest)
	want(t, e.get("/api/files/search?path=/&q=a/b"), http.StatusBadRequest)
	want(t, e.get("/api/files/search?path=/&q=a&limit=0"), http.StatusBadRequest)
	want(t, e.get("/api/files/search?path=/&q=a&limit=100000"), http.StatusBadRequest)
	want(t, e.get("/api/files/search?path=/docs/other.md&q=a"), http.StatusBadRequest)
	want(t, e.get("/api/files/search?path=/nope&q=a"), http.StatusNotFound)
}

// TestSearchCancelled: a search whose client has gone answers nothing.
func TestSearchCancelled(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("a/holiday", "1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/api/files/search?path=/&q=holiday", nil)
	rec := httptest.NewRecorder()
	e.api.Routes().ServeHTTP(rec, req)
	if rec.Body.Len() != 0 {
		t.Fatalf("a cancelled search answered %s", rec.Body)
	}
}
