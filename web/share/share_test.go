package share_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qss/web/fsys"
	"qss/web/share"
)

type env struct {
	root   string
	dbPath string
	fs     *fsys.Root
	st     *share.Store
	srv    *httptest.Server
}

// newEnv makes the tree:
//
//	shared/a.txt, shared/sub/b.txt, shared/link -> ../secret
//	secret/s.txt, sharedsibling/x.txt, file.txt
func newEnv(t *testing.T) *env {
	root := t.TempDir()
	write := func(p, s string) {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("shared/a.txt", "A")
	write("shared/sub/b.txt", "B")
	write("secret/s.txt", "SECRET")
	write("sharedsibling/x.txt", "SIBLING")
	write("file.txt", "FILE")
	if err := os.Symlink("../secret", filepath.Join(root, "shared", "link")); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{root: root, dbPath: filepath.Join(t.TempDir(), "web.db"), fs: f}
	e.open(t)
	t.Cleanup(func() {
		e.srv.Close()
		e.st.Close()
		f.Close()
	})
	return e
}

// open opens the store and serves it (again, after a close).
func (e *env) open(t *testing.T) {
	st, err := share.Open(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	api := share.NewAPI(st, e.fs, share.Options{User: func(r *http.Request) string { return r.Header.Get("X-Test-User") }})
	mux := http.NewServeMux()
	mux.Handle("/api/shares", api.Routes())
	mux.Handle("/api/shares/", api.Routes())
	mux.Handle("/api/public/", api.PublicRoutes())
	e.srv = httptest.NewServer(mux)
}

type resp struct {
	code int
	h    http.Header
	body []byte
}

func (e *env) req(t *testing.T, method, path, user string, body any, cookies ...*http.Cookie) resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	return resp{r.StatusCode, r.Header, b}
}

type shareJSON struct {
	ID          string     `json:"id"`
	Path        string     `json:"path"`
	Kind        string     `json:"kind"`
	URL         string     `json:"url"`
	Expires     *time.Time `json:"expires"`
	HasPassword bool       `json:"has_password"`
	Created     time.Time  `json:"created"`
	Owner       string     `json:"owner"`
}

func (e *env) create(t *testing.T, user string, body map[string]any) shareJSON {
	t.Helper()
	r := e.req(t, "POST", "/api/shares", user, body)
	if r.code != http.StatusCreated {
		t.Fatalf("create %v: %d %s", body, r.code, r.body)
	}
	var sh shareJSON
	if err := json.Unmarshal(r.body, &sh); err != nil {
		t.Fatal(err)
	}
	return sh
}

func (e *env) list(t *testing.T, user string) []shareJSON {
	t.Helper()
	r := e.req(t, "GET", "/api/shares", user, nil)
	if r.code != http.StatusOK {
		t.Fatalf("list: %d %s", r.code, r.body)
	}
	var out struct{ Shares []shareJSON }
	json.Unmarshal(r.body, &out)
	return out.Shares
}

func TestCreateListRevoke(t *testing.T) {
	e := newEnv(t)
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	sh := e.create(t, "alice", map[string]any{"path": "/shared/", "expires": exp})
	if len(sh.ID) != 22 || sh.Path != "/shared" || sh.Kind != "dir" || sh.URL != "/s/"+sh.ID ||
		sh.Owner != "alice" || sh.HasPassword || sh.Expires == nil || !sh.Expires.Equal(exp) {
		t.Fatalf("created %+v", sh)
	}
	f := e.create(t, "alice", map[string]any{"path": "/file.txt"})
	if f.Kind != "file" || f.Expires != nil || f.ID == sh.ID {
		t.Fatalf("created %+v", f)
	}
	if l := e.list(t, "alice"); len(l) != 2 {
		t.Fatalf("alice's list: %+v", l)
	}
	if l := e.list(t, "bob"); len(l) != 0 {
		t.Fatalf("bob sees %+v", l)
	}

	// Refused creations.
	for _, c := range []struct {
		body any
		code int
	}{
		{map[string]any{"path": "/../etc"}, 400},
		{map[string]any{"path": "/" + fsys.TrashDir}, 400},
		{map[string]any{"path": "/nope"}, 404},
		{map[string]any{"path": "/shared/link"}, 403},
		{map[string]any{"path": "/file.txt", "expires": time.Now().Add(-time.Minute)}, 400},
		{map[string]any{"path": "/file.txt", "password": strings.Repeat("p", 1025)}, 400},
		{map[string]any{"path": "/file.txt", "pad": strings.Repeat("x", 70<<10)}, 413},
		{"not an object", 400},
	} {
		if r := e.req(t, "POST", "/api/shares", "alice", c.body); r.code != c.code || !bytes.Contains(r.body, []byte(`"error"`)) {
			t.Errorf("create %.80v: %d %s, want %d", c.body, r.code, r.body, c.code)
		}
	}
	if r := e.req(t, "GET", "/api/shares", "", nil); r.code != http.StatusUnauthorized {
		t.Errorf("no user: %d", r.code)
	}
	if l := e.list(t, "alice"); len(l) != 2 {
		t.Fatalf("refused creations changed the list: %+v", l)
	}

	// Bob cannot revoke alice's link.
	if r := e.req(t, "DELETE", "/api/shares/"+sh.ID, "bob", nil); r.code != http.StatusNotFound {
		t.Fatalf("bob revokes alice's: %d %s", r.code, r.body)
	}
	if r := e.req(t, "GET", "/api/public/"+sh.ID, "", nil); r.code != http.StatusOK {
		t.Fatalf("link after bob's attempt: %d %s", r.code, r.body)
	}
	if r := e.req(t, "DELETE", "/api/shares/"+sh.ID, "alice", nil); r.code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	if r := e.req(t, "DELETE", "/api/shares/"+sh.ID, "alice", nil); r.code != http.StatusNotFound {
		t.Fatalf("revoke twice: %d %s", r.code, r.body)
	}
	if l := e.list(t, "alice"); len(l) != 1 || l[0].ID != f.ID {
		t.Fatalf("list after revoke: %+v", l)
	}
	if r := e.req(t, "GET", "/api/public/"+sh.ID+"/download?path=/a.txt", "", nil); r.code != http.StatusNotFound {
		t.Fatalf("revoked link: %d %s", r.code, r.body)
	}
}

func cookieOf(t *testing.T, r resp) *http.Cookie {
	t.Helper()
	cs := (&http.Response{Header: r.h}).Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies %v", r.h["Set-Cookie"])
	}
	return cs[0]
}

func TestPassword(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "alice", map[string]any{"path": "/shared", "password": "correct horse"})
	b := e.create(t, "alice", map[string]any{"path": "/file.txt", "password": "other"})
	if !a.HasPassword {
		t.Fatal("has_password false")
	}
	pub := "/api/public/" + a.ID

	r := e.req(t, "GET", pub, "", nil)
	var info struct {
		Name          string `json:"name"`
		Kind          string `json:"kind"`
		Size          int64  `json:"size"`
		NeedsPassword bool   `json:"needs_password"`
	}
	json.Unmarshal(r.body, &info)
	if r.code != 200 || !info.NeedsPassword || info.Name != "" {
		t.Fatalf("locked info: %d %s", r.code, r.body)
	}
	for _, p := range []string{pub + "/list", pub + "/download?path=/a.txt"} {
		if r := e.req(t, "GET", p, "", nil); r.code != http.StatusUnauthorized {
			t.Fatalf("%s locked: %d %s", p, r.code, r.body)
		}
	}
	if r := e.req(t, "POST", pub+"/unlock", "", map[string]string{"password": "wrong"}); r.code != http.StatusUnauthorized || len(r.h["Set-Cookie"]) != 0 {
		t.Fatalf("wrong password: %d %s %v", r.code, r.body, r.h["Set-Cookie"])
	}
	r = e.req(t, "POST", pub+"/unlock", "", map[string]string{"password": "correct horse"})
	if r.code != http.StatusNoContent {
		t.Fatalf("right password: %d %s", r.code, r.body)
	}
	ca := cookieOf(t, r)
	if !ca.HttpOnly || ca.SameSite != http.SameSiteStrictMode || ca.Path != pub || ca.Name != share.CookieName {
		t.Fatalf("cookie %+v", ca)
	}
	r = e.req(t, "GET", pub+"/download?path=/a.txt", "", nil, ca)
	if r.code != 200 || string(r.body) != "A" {
		t.Fatalf("download with the cookie: %d %s", r.code, r.body)
	}
	r = e.req(t, "GET", pub, "", nil, ca)
	json.Unmarshal(r.body, &info)
	if info.NeedsPassword || info.Name != "shared" || info.Kind != "dir" {
		t.Fatalf("unlocked info: %s", r.body)
	}

	// b's cookie does not unlock a, nor a's b; nor a forged one.
	rb := e.req(t, "POST", "/api/public/"+b.ID+"/unlock", "", map[string]string{"password": "other"})
	cb := cookieOf(t, rb)
	cb.Path = ""
	if r := e.req(t, "GET", pub+"/download?path=/a.txt", "", nil, cb); r.code != http.StatusUnauthorized {
		t.Fatalf("b's cookie on a: %d %s", r.code, r.body)
	}
	if r := e.req(t, "GET", "/api/public/"+b.ID+"/download", "", nil, ca); r.code != http.StatusUnauthorized {
		t.Fatalf("a's cookie on b: %d %s", r.code, r.body)
	}
	exp, _, _ := strings.Cut(ca.Value, ".")
	later, _ := strconv.ParseInt(exp, 10, 64)
	forged := &http.Cookie{Name: share.CookieName, Value: strconv.FormatInt(later+3600, 10) + ca.Value[len(exp):]}
	if r := e.req(t, "GET", pub+"/list", "", nil, forged); r.code != http.StatusUnauthorized {
		t.Fatalf("cookie with a changed expiry: %d %s", r.code, r.body)
	}

	// A new password (even the same one) voids the cookies.
	if err := e.st.SetPassword(a.ID, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if r := e.req(t, "GET", pub+"/list", "", nil, ca); r.code != http.StatusUnauthorized {
		t.Fatalf("old cookie after a password change: %d %s", r.code, r.body)
	}

	// Unlock needs a JSON body and a same-origin Origin.
	req, _ := http.NewRequest("POST", e.srv.URL+pub+"/unlock", strings.NewReader("password=correct+horse"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res, _ := http.DefaultClient.Do(req); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("form unlock: %d", res.StatusCode)
	}
	req, _ = http.NewRequest("POST", e.srv.URL+pub+"/unlock", strings.NewReader(`{"password":"correct horse"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://evil.example")
	if res, _ := http.DefaultClient.Do(req); res.StatusCode != http.StatusForbidden || len(res.Header["Set-Cookie"]) != 0 {
		t.Fatalf("cross-origin unlock: %d", res.StatusCode)
	}
}

func TestNotFoundIsIdentical(t *testing.T) {
	e := newEnv(t)
	revoked := e.create(t, "alice", map[string]any{"path": "/shared"})
	e.req(t, "DELETE", "/api/shares/"+revoked.ID, "alice", nil)
	expired, err := e.st.Create(share.Share{Path: "shared", Kind: "dir", Owner: "alice", Expires: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	live := e.create(t, "alice", map[string]any{"path": "/shared"})
	ids := map[string]string{
		"guessed":   share.NewID(),
		"malformed": "not-an-id",
		"revoked":   revoked.ID,
		"expired":   expired.ID,
	}
	for _, sub := range []string{"", "/list", "/download?path=/a.txt"} {
		if r := e.req(t, "GET", "/api/public/"+live.ID+sub, "", nil); r.code != 200 {
			t.Fatalf("live %q: %d %s", sub, r.code, r.body)
		}
		var first *resp
		for what, id := range ids {
			r := e.req(t, "GET", "/api/public/"+id+sub, "", nil)
			if r.code != http.StatusNotFound {
				t.Fatalf("%s %q: %d %s", what, sub, r.code, r.body)
			}
			r.h.Del("Date")
			if first == nil {
				first = &r
				continue
			}
			if !bytes.Equal(r.body, first.body) || r.h.Get("Content-Type") != first.h.Get("Content-Type") ||
				r.h.Get("Content-Length") != first.h.Get("Content-Length") || len(r.h) != len(first.h) {
				t.Fatalf("%s %q answers differently: %v %s / %v %s", what, sub, r.h, r.body, first.h, first.body)
			}
		}
	}
	r := e.req(t, "POST", "/api/public/"+revoked.ID+"/unlock", "", map[string]string{"password": "x"})
	if r.code != http.StatusNotFound {
		t.Fatalf("unlock revoked: %d", r.code)
	}
}

func TestFolderConfinement(t *testing.T) {
	e := newEnv(t)
	sh := e.create(t, "alice", map[string]any{"path": "/shared"})
	pub := "/api/public/" + sh.ID

	r := e.req(t, "GET", pub+"/list?path=/sub", "", nil)
	var l struct {
		Path    string
		Entries []struct{ Name, Path string }
	}
	json.Unmarshal(r.body, &l)
	if r.code != 200 || l.Path != "/sub" || len(l.Entries) != 1 || l.Entries[0].Path != "/sub/b.txt" {
		t.Fatalf("list /sub: %d %s", r.code, r.body)
	}
	if r := e.req(t, "GET", pub+"/download?path=/sub/b.txt", "", nil); r.code != 200 || string(r.body) != "B" {
		t.Fatalf("download /sub/b.txt: %d %s", r.code, r.body)
	}
	for _, q := range []string{
		"/../sharedsibling/x.txt", "../secret/s.txt", "sub/../../secret/s.txt",
		url.QueryEscape("../sharedsibling/x.txt"), "%2e%2e%2fsharedsibling%2fx.txt", "%252e%252e%252fsharedsibling%252fx.txt",
		"..%5csecret%5cs.txt", "/link/s.txt", "/link", "%2Flink%2Fs.txt", "//../secret",
	} {
		for _, route := range []string{"/download?path=", "/list?path="} {
			r := e.req(t, "GET", pub+route+q, "", nil)
			if r.code == 200 || bytes.Contains(r.body, []byte("SECRET")) || bytes.Contains(r.body, []byte("SIBLING")) ||
				bytes.Contains(r.body, []byte("s.txt")) || bytes.Contains(r.body, []byte("x.txt")) {
				t.Errorf("%s%s: %d %s", route, q, r.code, r.body)
			}
		}
	}
	// The path in the URL itself cannot climb either.
	res, err := http.Get(e.srv.URL + pub + "/../../api/public/" + sh.ID + "/download?path=/a.txt")
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if bytes.Contains(b, []byte("SECRET")) {
			t.Fatal("leak through the URL path")
		}
	}

	// The folder as a zip holds the folder, not the link's target.
	r = e.req(t, "GET", pub+"/download", "", nil)
	zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
	if r.code != 200 || err != nil {
		t.Fatalf("zip: %d %v", r.code, err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	if got := strings.Join(names, ","); got != "shared/,shared/a.txt,shared/sub/,shared/sub/b.txt" {
		t.Fatalf("zip entries %s", got)
	}

	// A file link serves that file only.
	f := e.create(t, "alice", map[string]any{"path": "/file.txt"})
	fp := "/api/public/" + f.ID
	if r := e.req(t, "GET", fp+"/download", "", nil); r.code != 200 || string(r.body) != "FILE" {
		t.Fatalf("file link: %d %s", r.code, r.body)
	}
	for _, q := range []string{"/secret/s.txt", "/../secret/s.txt", "/x"} {
		if r := e.req(t, "GET", fp+"/download?path="+q, "", nil); r.code == 200 {
			t.Fatalf("file link ?path=%s: %d %s", q, r.code, r.body)
		}
	}
	if r := e.req(t, "GET", fp+"/list", "", nil); r.code == 200 {
		t.Fatalf("list of a file link: %d %s", r.code, r.body)
	}
	// A file link whose file was replaced by a folder serves nothing.
	os.Remove(filepath.Join(e.root, "file.txt"))
	os.Symlink("secret", filepath.Join(e.root, "file.txt"))
	if r := e.req(t, "GET", fp+"/download", "", nil); r.code == 200 {
		t.Fatalf("file link to a symlink: %d %s", r.code, r.body)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "alice", map[string]any{"path": "/shared", "password": "right"})
	b := e.create(t, "alice", map[string]any{"path": "/file.txt", "password": "right"})
	c := e.create(t, "alice", map[string]any{"path": "/shared/a.txt", "password": "right"})
	unlock := func(id, pw string) resp {
		return e.req(t, "POST", "/api/public/"+id+"/unlock", "", map[string]string{"password": pw})
	}
	n := 0
	for ; n < 30; n++ {
		if r := unlock(a.ID, "wrong"); r.code != http.StatusUnauthorized {
			if r.code != http.StatusTooManyRequests {
				t.Fatalf("attempt %d: %d %s", n, r.code, r.body)
			}
			break
		}
	}
	if n == 30 || n < 3 {
		t.Fatalf("the per-link limit engaged after %d wrong passwords", n)
	}
	r := unlock(a.ID, "right")
	if ra, err := strconv.Atoi(r.h.Get("Retry-After")); r.code != http.StatusTooManyRequests || err != nil || ra < 1 {
		t.Fatalf("right password while limited: %d Retry-After %q", r.code, r.h.Get("Retry-After"))
	}
	// Other links from the same client: the per-IP limit follows.
	m := 0
	for _, id := range []string{b.ID, c.ID} {
		for k := 0; k < 30; k++ {
			r := unlock(id, "wrong")
			if r.code == http.StatusTooManyRequests {
				break
			}
			m++
		}
	}
	if m >= 60 {
		t.Fatalf("the per-IP limit never engaged")
	}
	if r := unlock(c.ID, "right"); r.code != http.StatusTooManyRequests {
		t.Fatalf("per-IP limit: %d", r.code)
	}
}

func TestPersistence(t *testing.T) {
	e := newEnv(t)
	sh := e.create(t, "alice", map[string]any{"path": "/shared", "password": "pw"})
	ck := cookieOf(t, e.req(t, "POST", "/api/public/"+sh.ID+"/unlock", "", map[string]string{"password": "pw"}))
	e.srv.Close()
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	if l := e.list(t, "alice"); len(l) != 1 || l[0].ID != sh.ID || !l[0].HasPassword || !l[0].Created.Equal(sh.Created) {
		t.Fatalf("after reopening: %+v", l)
	}
	if r := e.req(t, "GET", "/api/public/"+sh.ID+"/download?path=/a.txt", "", nil, ck); r.code != 200 || string(r.body) != "A" {
		t.Fatalf("cookie after reopening: %d %s", r.code, r.body)
	}
	// A second Open of the same file fails instead of hanging.
	if st, err := share.Open(e.dbPath); err == nil {
		st.Close()
		t.Fatal("a second Open of a held store succeeded")
	}
}

// TestRateLimitConcurrent: wrong passwords sent all at once are limited
// like wrong passwords sent one after the other (an attempt is spent
// before the password is checked, not after).
func TestRateLimitConcurrent(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "alice", map[string]any{"path": "/shared", "password": "right"})
	const n = 40
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.req(t, "POST", "/api/public/"+a.ID+"/unlock", "", map[string]string{"password": "wrong"}).code
		}()
	}
	wg.Wait()
	close(codes)
	checked := 0
	for c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("unexpected status %d", c)
		}
	}
	// The link allows a burst of 10; one more may have been refilled
	// meanwhile.
	if checked > 11 {
		t.Fatalf("%d of %d concurrent wrong passwords were checked; the per-link limit allows 10", checked, n)
	}
}

// TestRightPasswordSpendsNothing: only wrong passwords count against the
// limits, so many visitors can unlock a link.
func TestRightPasswordSpendsNothing(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "alice", map[string]any{"path": "/shared", "password": "right"})
	for i := range 25 {
		if r := e.req(t, "POST", "/api/public/"+a.ID+"/unlock", "", map[string]string{"password": "right"}); r.code != http.StatusNoContent {
			t.Fatalf("right password %d: %d %s", i, r.code, r.body)
		}
	}
}
