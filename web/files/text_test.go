package files

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type saved struct {
	ETag  string
	Entry Entry
}

// TestTextRoundTrip: create with If-None-Match: *, read with its ETag,
// replace with If-Match; the answers' ETags are the file's.
func TestTextRoundTrip(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("notes/old.txt", "x")
	r := e.do("PUT", "/api/files/text?path=/notes/a.md", strings.NewReader("# héllo\n"), "If-None-Match", "*")
	want(t, r, http.StatusOK)
	s := decode[saved](t, r)
	if s.Entry.Path != "/notes/a.md" || s.Entry.Size != int64(len("# héllo\n")) || s.ETag == "" {
		t.Fatalf("answer %+v", s)
	}
	g := e.get("/api/files/text?path=/notes/a.md")
	want(t, g, http.StatusOK)
	if string(g.body) != "# héllo\n" || g.h.Get("ETag") != s.ETag || g.h.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("get: %q %q %q", g.body, g.h.Get("ETag"), g.h.Get("Content-Type"))
	}
	time.Sleep(2 * time.Millisecond) // a distinct mtime
	r = e.do("PUT", "/api/files/text?path=/notes/a.md", strings.NewReader("two"), "If-Match", s.ETag)
	want(t, r, http.StatusOK)
	s2 := decode[saved](t, r)
	if s2.ETag == s.ETag || e.read("notes/a.md") != "two" {
		t.Fatalf("replace: %+v, file %q", s2, e.read("notes/a.md"))
	}
	// No temporary file is left beside it.
	des, _ := os.ReadDir(filepath.Join(e.dir, "notes"))
	if len(des) != 2 {
		t.Fatalf("folder holds %d names, want 2", len(des))
	}
}

// TestTextConcurrentChange: a save with the ETag of an older read is
// refused with 412 and the current ETag; the other writer's text stays.
func TestTextConcurrentChange(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("a.txt", "first")
	etag := e.get("/api/files/text?path=/a.txt").h.Get("ETag")
	time.Sleep(2 * time.Millisecond)
	e.write("a.txt", "other writer")
	before := snapshot(t, e.dir)
	r := e.do("PUT", "/api/files/text?path=/a.txt", strings.NewReader("mine"), "If-Match", etag)
	want(t, r, http.StatusPreconditionFailed)
	cur := decode[struct{ ETag string }](t, r).ETag
	if cur == "" || cur == etag || cur != e.get("/api/files/text?path=/a.txt").h.Get("ETag") {
		t.Fatalf("412 etag %q, old %q", cur, etag)
	}
	// Creating over an existing file is refused too.
	want(t, e.do("PUT", "/api/files/text?path=/a.txt", strings.NewReader("mine"), "If-None-Match", "*"), http.StatusPreconditionFailed)
	// Replacing a file deleted meanwhile.
	want(t, e.do("PUT", "/api/files/text?path=/gone.txt", strings.NewReader("mine"), "If-Match", etag), http.StatusPreconditionFailed)
	// No condition at all.
	want(t, e.do("PUT", "/api/files/text?path=/a.txt", strings.NewReader("mine")), http.StatusBadRequest)
	unchanged(t, e.dir, before)
	// The current ETag saves.
	want(t, e.do("PUT", "/api/files/text?path=/a.txt", strings.NewReader("mine"), "If-Match", cur), http.StatusOK)
	if e.read("a.txt") != "mine" {
		t.Fatal("not saved")
	}
}

// TestTextLimits: over MaxText is 413 both ways, binary is 415, and a
// refused save changes nothing.
func TestTextLimits(t *testing.T) {
	e := newEnv(t, Options{MaxText: 1000})
	e.write("big.txt", strings.Repeat("a", 1001))
	e.write("ok.txt", strings.Repeat("a", 1000))
	e.write("bin.dat", "\x89PNG\r\n\x1a\n\x00\x00")
	e.write("latin1.txt", "caf\xe9")
	want(t, e.get("/api/files/text?path=/big.txt"), http.StatusRequestEntityTooLarge)
	want(t, e.get("/api/files/text?path=/ok.txt"), http.StatusOK)
	want(t, e.get("/api/files/text?path=/bin.dat"), http.StatusUnsupportedMediaType)
	want(t, e.get("/api/files/text?path=/latin1.txt"), http.StatusUnsupportedMediaType)
	want(t, e.get("/api/files/text?path=/"), http.StatusBadRequest)
	want(t, e.get("/api/files/text?path=/missing"), http.StatusNotFound)
	etag := e.get("/api/files/text?path=/ok.txt").h.Get("ETag")
	before := snapshot(t, e.dir)
	want(t, e.do("PUT", "/api/files/text?path=/ok.txt", strings.NewReader(strings.Repeat("b", 1001)), "If-Match", etag), http.StatusRequestEntityTooLarge)
	want(t, e.do("PUT", "/api/files/text?path=/new.txt", strings.NewReader(strings.Repeat("b", 5000)), "If-None-Match", "*"), http.StatusRequestEntityTooLarge)
	want(t, e.do("PUT", "/api/files/text?path=/ok.txt", strings.NewReader("caf\xe9"), "If-Match", etag), http.StatusUnsupportedMediaType)
	want(t, e.do("PUT", "/api/files/text?path=/", strings.NewReader("x"), "If-None-Match", "*"), http.StatusBadRequest)
	unchanged(t, e.dir, before)
}

// TestTextConcurrentSaves: of several saves with the same ETag at once,
// exactly one wins and the others get 412; the file is the winner's.
// Several rounds, to give an unguarded check-then-rename a chance to show.
func TestTextConcurrentSaves(t *testing.T) {
	e := newEnv(t, Options{})
	e.write("a.txt", "start")
	for round := range 20 {
		etag := e.get("/api/files/text?path=/a.txt").h.Get("ETag")
		const n = 16
		codes := make(chan int, n)
		bodies := make(chan string, n)
		start := make(chan struct{})
		for i := range n {
			go func() {
				text := strings.Repeat("w", round*n+i+1) // distinct sizes: distinct ETags
				req, _ := http.NewRequest("PUT", e.srv.URL+"/api/files/text?path=/a.txt", strings.NewReader(text))
				req.Header.Set("If-Match", etag)
				<-start
				res, err := e.srv.Client().Do(req)
				if err != nil {
					codes <- 0
					return
				}
				res.Body.Close()
				codes <- res.StatusCode
				if res.StatusCode == http.StatusOK {
					bodies <- text
				}
			}()
		}
		close(start)
		won := 0
		for range n {
			switch c := <-codes; c {
			case http.StatusOK:
				won++
			case http.StatusPreconditionFailed:
			default:
				t.Fatalf("status %d", c)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d saves won, want 1", round, won)
		}
		if got := e.read("a.txt"); got != <-bodies {
			t.Fatalf("file holds %q, not the winner's text", got)
		}
	}
}

// TestTextSameSizeChange: a change of the same size right after a read
// (within the filesystem's timestamp resolution) is still detected.
func TestTextSameSizeChange(t *testing.T) {
	e := newEnv(t, Options{})
	for i := range 20 {
		e.write("a.txt", "AAAAA")
		etag := e.get("/api/files/text?path=/a.txt").h.Get("ETag")
		e.write("a.txt", "BBBBB")
		if r := e.do("PUT", "/api/files/text?path=/a.txt", strings.NewReader("CCCCC"), "If-Match", etag); r.code != http.StatusPreconditionFailed {
			t.Fatalf("try %d: %s, want 412", i, r)
		}
		if e.read("a.txt") != "BBBBB" {
			t.Fatal("the other writer's change was overwritten")
		}
	}
}
