package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/qsfs/users"
	"qss/web/fsys"
)

const testUser, testPass = "alice", "correct horse battery"

type env struct {
	t    *testing.T
	root string
	srv  *httptest.Server
	c    *http.Client
	csrf string
}

func newEnv(t *testing.T, loopbackOnly ...bool) *env {
	t.Helper()
	root, state := t.TempDir(), t.TempDir()
	st, err := users.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(testUser, testPass); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{FS: f, Users: st, StateDir: state, LoopbackOnly: len(loopbackOnly) > 0 && loopbackOnly[0]})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	jar, _ := cookiejar.New(nil)
	e := &env{t: t, root: root, srv: hs, c: &http.Client{Jar: jar}}
	t.Cleanup(func() { hs.Close(); s.Close(); f.Close() })
	return e
}

// do sends a request with the session's cookie and CSRF token.
func (e *env) do(method, path string, body any, hdr ...string) *http.Response {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.csrf != "" {
		req.Header.Set("X-CSRF-Token", e.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e *env) login() {
	e.t.Helper()
	resp := e.do("POST", "/api/auth/login", map[string]string{"user": testUser, "password": testPass})
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("login: %d %s", resp.StatusCode, b)
	}
	var me struct{ CSRF string }
	json.NewDecoder(resp.Body).Decode(&me)
	if me.CSRF == "" {
		e.t.Fatal("login answered no csrf token")
	}
	e.csrf = me.CSRF
}

func want(t *testing.T, resp *http.Response, code int, what string) []byte {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("%s: %d %s, want %d", what, resp.StatusCode, b, code)
	}
	return b
}

// Every API route but login and the public share routes needs a session;
// nothing changes for a request without one.
func TestEveryAPIRouteNeedsASession(t *testing.T) {
	e := newEnv(t)
	os.WriteFile(filepath.Join(e.root, "keep.txt"), []byte("keep"), 0o644)
	routes := [][2]string{
		{"GET", "/api/auth/me"}, {"GET", "/api/auth/sessions"}, {"POST", "/api/auth/logout"},
		{"GET", "/api/files/list?path=/"}, {"GET", "/api/files/download?path=/keep.txt"},
		{"GET", "/api/files/zip?path=/"}, {"GET", "/api/files/text?path=/keep.txt"},
		{"PUT", "/api/files/text?path=/keep.txt"}, {"POST", "/api/files/mkdir"},
		{"POST", "/api/files/delete"}, {"POST", "/api/files/trash/empty"}, {"GET", "/api/files/search?q=k"},
		{"POST", "/api/upload/"}, {"GET", "/api/shares"}, {"POST", "/api/shares"},
	}
	for _, r := range routes {
		resp := e.do(r[0], r[1], map[string]any{"path": "/keep.txt", "paths": []string{"/keep.txt"}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without a session: %d, want 401", r[0], r[1], resp.StatusCode)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.root, "keep.txt")); err != nil || string(b) != "keep" {
		t.Fatalf("keep.txt changed: %q %v", b, err)
	}
	if des, _ := os.ReadDir(e.root); len(des) != 1 {
		t.Fatalf("the tree changed: %v", des)
	}
}

// A whole session through the server's routes: login, CSRF, folders, a
// tus upload, download with Range, trash, a share opened without the
// session, logout.
func TestSessionThroughTheServer(t *testing.T) {
	e := newEnv(t)
	e.login()
	csrf := e.csrf
	e.csrf = ""
	want(t, e.do("POST", "/api/files/mkdir", map[string]string{"path": "/docs"}), 403, "mkdir without CSRF")
	e.csrf = csrf
	want(t, e.do("POST", "/api/files/mkdir", map[string]string{"path": "/docs"}), 201, "mkdir")
	for i := range 40 { // a listing worth compressing
		os.WriteFile(filepath.Join(e.root, "docs", fmt.Sprintf("note-%02d.txt", i)), []byte("x"), 0o644)
	}
	if resp := e.do("GET", "/api/files/list?path=/docs", nil); !resp.Uncompressed {
		t.Fatal("a listing was not sent compressed")
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	meta := "filename " + b64("report.bin") + ",dir " + b64("/docs")
	resp := e.do("POST", "/api/upload/", nil, "Tus-Resumable", "1.0.0", "Upload-Length", fmt.Sprint(len(data)), "Upload-Metadata", meta)
	want(t, resp, 201, "tus create")
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/api/upload/") && !strings.HasPrefix(loc, e.srv.URL+"/api/upload/") {
		t.Fatalf("upload location %q", loc)
	}
	loc = strings.TrimPrefix(loc, e.srv.URL)
	resp = e.do("PATCH", loc, data, "Tus-Resumable", "1.0.0", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream")
	want(t, resp, 204, "tus patch")
	if p := resp.Header.Get("Qsfs-Path"); p != "/docs/report.bin" {
		t.Fatalf("Qsfs-Path %q", p)
	}
	if b, _ := os.ReadFile(filepath.Join(e.root, "docs", "report.bin")); !bytes.Equal(b, data) {
		t.Fatal("the uploaded file differs")
	}
	resp = e.do("GET", "/api/files/download?path=/docs/report.bin", nil, "Range", "bytes=16-31")
	if b := want(t, resp, 206, "range download"); !bytes.Equal(b, data[16:32]) || resp.Uncompressed {
		t.Fatalf("range: %q (compressed %v)", b, resp.Uncompressed)
	}

	resp = e.do("POST", "/api/shares", map[string]string{"path": "/docs/report.bin"})
	var sh struct{ ID, URL string }
	json.Unmarshal(want(t, resp, 201, "share"), &sh)
	anon := &http.Client{}
	r2, err := anon.Get(e.srv.URL + "/api/public/" + sh.ID + "/download")
	if err != nil {
		t.Fatal(err)
	}
	if b := want(t, r2, 200, "public download"); !bytes.Equal(b, data) {
		t.Fatal("the shared file differs")
	}
	r2.Body.Close()

	want(t, e.do("POST", "/api/files/delete", map[string]any{"paths": []string{"/docs/report.bin"}}), 200, "delete")
	if _, err := os.Stat(filepath.Join(e.root, "docs", "report.bin")); err == nil {
		t.Fatal("deleted file still in place")
	}
	var trash struct{ Items []struct{ ID, Path string } }
	json.Unmarshal(want(t, e.do("GET", "/api/files/trash", nil), 200, "trash"), &trash)
	if len(trash.Items) != 1 || trash.Items[0].Path != "/docs/report.bin" {
		t.Fatalf("trash: %+v", trash)
	}
	want(t, e.do("POST", "/api/files/trash/restore", map[string]any{"ids": []string{trash.Items[0].ID}}), 200, "restore")
	if b, _ := os.ReadFile(filepath.Join(e.root, "docs", "report.bin")); !bytes.Equal(b, data) {
		t.Fatal("the restored file differs")
	}

	want(t, e.do("POST", "/api/auth/logout", nil), 204, "logout")
	want(t, e.do("GET", "/api/files/list?path=/", nil), 401, "list after logout")
}

// The app is served with its CSP; user content never with the app's.
func TestAppAndHeaders(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/", "/s/abcdef"} {
		resp := e.do("GET", p, nil)
		b := want(t, resp, 200, p)
		if !bytes.Contains(b, []byte("<script")) || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s is not the app: %.200s", p, b)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-eval") {
			t.Fatalf("%s CSP %q", p, csp)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s headers %v", p, resp.Header)
		}
	}
	want(t, e.do("GET", "/assets/favicon.svg", nil), 200, "favicon")
	want(t, e.do("GET", "/nope", nil), 404, "unknown page")
	want(t, e.do("GET", "/s/a/b", nil), 404, "share page with a subpath")
	want(t, e.do("POST", "/", nil), 405, "POST /")
	resp := e.do("GET", "/api/nope", nil)
	want(t, resp, 404, "unknown API route")
	if !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		t.Fatal("unknown API route not answered in JSON")
	}

	os.WriteFile(filepath.Join(e.root, "x.html"), []byte("<script>alert(1)</script>"), 0o644)
	e.login()
	resp = e.do("GET", "/api/files/download?path=/x.html&inline=1", nil)
	want(t, resp, 200, "download html")
	if ct := resp.Header.Get("Content-Type"); strings.Contains(ct, "html") {
		t.Fatalf("an HTML file served as %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Fatalf("user content CSP %q", csp)
	}
}

// WebDAV answers with Basic auth, from loopback, and only with it.
func TestDAVThroughTheServer(t *testing.T) {
	e := newEnv(t)
	os.WriteFile(filepath.Join(e.root, "a.txt"), []byte("hello"), 0o644)
	req, _ := http.NewRequest("PROPFIND", e.srv.URL+"/dav/", nil)
	req.Header.Set("Depth", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	want(t, resp, 401, "PROPFIND without credentials")
	req.SetBasicAuth(testUser, testPass)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := want(t, resp, 207, "PROPFIND"); !bytes.Contains(b, []byte("a.txt")) {
		t.Fatalf("listing without a.txt: %s", b)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestAssetsNoListing: the embedded assets are served, their folder is
// not listed (no index of the build's files).
func TestAssetsNoListing(t *testing.T) {
	e := newEnv(t)
	want(t, e.do("GET", "/assets/favicon.svg", nil), 200, "favicon")
	for _, p := range []string{"/assets/", "/assets"} {
		resp := e.do("GET", p, nil)
		if b := want(t, resp, 404, p); bytes.Contains(b, []byte("<a href")) {
			t.Fatalf("%s lists the assets: %.200s", p, b)
		}
	}
}

// A server on loopback answers only to loopback names: a page whose name
// was rebound to 127.0.0.1 (DNS rebinding) gets nothing, login included.
func TestLoopbackOnlyRefusesOtherHosts(t *testing.T) {
	e := newEnv(t, true)
	for host, code := range map[string]int{
		"evil.example": 421, "evil.example:80": 421, "127.0.0.1.evil.example": 421, "10.0.0.1": 421,
		"localhost": 200, "LOCALHOST:8080": 200, "127.0.0.1": 200, "127.1.2.3:9": 200, "[::1]:8080": 200,
	} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, code)
		}
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/auth/login", strings.NewReader(`{"user":"`+testUser+`","password":"`+testPass+`"}`))
	req.Host, req.Header["Content-Type"] = "evil.example", []string{"application/json"}
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 421 || len(resp.Cookies()) != 0 {
		t.Fatalf("login through a rebound name: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}

// With a certificate the server speaks TLS only, sends HSTS, and marks the
// session cookie Secure.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	root, state := t.TempDir(), t.TempDir()
	st, _ := users.Open(state)
	st.Add(testUser, testPass)
	f, _ := fsys.OpenRoot(root)
	defer f.Close()
	ln, err := Listen("127.0.0.1:0", certFile, keyFile, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{FS: f, Users: st, StateDir: state, TLS: true, LoopbackOnly: IsLoopbackListener(ln)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, s.Handler(), slog.Default()) }()
	defer func() { cancel(); <-done }()

	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	base := "https://" + ln.Addr().String()
	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age") {
		t.Fatalf("GET / over TLS: %d, TLS %v, HSTS %q", resp.StatusCode, resp.TLS != nil, resp.Header.Get("Strict-Transport-Security"))
	}
	resp, err = c.Post(base+"/api/auth/login", "application/json", strings.NewReader(`{"user":"`+testUser+`","password":"`+testPass+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var secure bool
	for _, ck := range resp.Cookies() {
		secure = secure || ck.Secure
	}
	if resp.StatusCode != 200 || !secure {
		t.Fatalf("login over TLS: %d, Secure cookie %v", resp.StatusCode, secure)
	}
	// Plain HTTP on the TLS port gets no answer of ours.
	if r, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on the TLS listener")
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
