package auth

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qss/qsfs/users"
)

const (
	testUser = "alice"
	testPass = "correct horse battery"
)

// clock is a settable Now for Options.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	a     *Auth
	clock *clock
	srv   *httptest.Server
	hits  atomic.Int32 // calls of the protected handler
}

// newEnv starts a server with the auth routes and a protected
// POST/GET /api/thing, backed by a real users.Store with testUser (and
// "bob" when asked).
func newEnv(t *testing.T, o Options, more ...string) *env {
	t.Helper()
	st, err := users.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(testUser, testPass); err != nil {
		t.Fatal(err)
	}
	for _, u := range more {
		if err := st.Add(u, testPass); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, clock: &clock{t: time.Now().Add(time.Hour)}} // after the users' password_set
	o.Users = st
	o.Now = e.clock.Now
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e.a = New(o)
	mux := http.NewServeMux()
	mux.Handle("/api/auth/", e.a.Routes())
	mux.Handle("/api/thing", e.a.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		io.WriteString(w, User(r))
	})))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request; cookie and csrf are added when not empty.
func (e *env) do(method, path, body, cookie, csrf string, hdr map[string]string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
	}
	if csrf != "" {
		req.Header.Set(CSRFHeader, csrf)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type loginAnswer struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// login logs in and returns the cookie value and the answer.
func (e *env) login(user, pass string) (string, loginAnswer) {
	e.t.Helper()
	resp := e.do("POST", "/api/auth/login", `{"user":"`+user+`","password":"`+pass+`"}`, "", "", nil)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("login: %d %s", resp.StatusCode, b)
	}
	var ans loginAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		e.t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			return c.Value, ans
		}
	}
	e.t.Fatal("login set no session cookie")
	return "", ans
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d (%s)", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, b)
	}
}

func TestLoginAndCookieFlags(t *testing.T) {
	e := newEnv(t, Options{Secure: true})
	resp := e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "", nil)
	wantStatus(t, resp, 200)
	var ans loginAnswer
	json.NewDecoder(resp.Body).Decode(&ans)
	if ans.User != testUser || len(ans.CSRF) < 40 || !ans.Expires.Equal(e.clock.Now().Add(DefaultIdleTimeout)) {
		t.Fatalf("login answer %+v", ans)
	}
	var c *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == CookieName {
			c = x
		}
	}
	if c == nil {
		t.Fatal("no cookie")
	}
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || len(c.Value) != 43 {
		t.Fatalf("cookie flags: %s", resp.Header.Get("Set-Cookie"))
	}
	// The server keeps no token: only its hash.
	e.a.mu.Lock()
	for k := range e.a.sessions {
		if strings.Contains(string(k[:]), c.Value) {
			t.Fatal("token stored in clear")
		}
	}
	e.a.mu.Unlock()

	resp = e.do("GET", "/api/auth/me", "", c.Value, "", nil)
	wantStatus(t, resp, 200)
	var me loginAnswer
	json.NewDecoder(resp.Body).Decode(&me)
	if me.User != testUser || me.CSRF != ans.CSRF {
		t.Fatalf("me %+v, login %+v", me, ans)
	}
	resp = e.do("GET", "/api/thing", "", c.Value, "", nil)
	wantStatus(t, resp, 200)
	if b, _ := io.ReadAll(resp.Body); string(b) != testUser {
		t.Fatalf("User(r) = %q", b)
	}

	// Not Secure without TLS configured.
	e2 := newEnv(t, Options{})
	resp = e2.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "", nil)
	wantStatus(t, resp, 200)
	if sc := resp.Header.Get("Set-Cookie"); strings.Contains(sc, "Secure") || !strings.Contains(sc, "HttpOnly") {
		t.Fatalf("Set-Cookie %q", sc)
	}
}

func TestLoginRefused(t *testing.T) {
	e := newEnv(t, Options{})
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"wrong password"}`, "", "", nil), 401)
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"nobody","password":"`+testPass+`"}`, "", "", nil), 401)
	// A form post (the CSRF attack) and a cross-site Origin: 403.
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "",
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), 403)
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "",
		map[string]string{"Origin": "http://evil.example"}), 403)
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "",
		map[string]string{"Origin": "null"}), 403)
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"`+strings.Repeat("a", 65)+`","password":"`+testPass+`"}`, "", "", nil), 401)
	// Malformed and oversized bodies.
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice",`, "", "", nil), 400)
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+strings.Repeat("x", 8000)+`"}`, "", "", nil), 413)
	e.a.mu.Lock()
	n := len(e.a.sessions)
	e.a.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d sessions after refused logins", n)
	}
	// The same Origin as the host is fine.
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "",
		map[string]string{"Origin": e.srv.URL}), 200)
	// No cookie or a made-up one: 401.
	wantStatus(t, e.do("GET", "/api/auth/me", "", "", "", nil), 401)
	wantStatus(t, e.do("GET", "/api/auth/me", "", "made-up", "", nil), 401)
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, Options{})
	cookie, ans := e.login(testUser, testPass)
	wantStatus(t, e.do("POST", "/api/thing", "", cookie, "", nil), 403)
	wantStatus(t, e.do("POST", "/api/thing", "", cookie, ans.CSRF+"x", nil), 403)
	if n := e.hits.Load(); n != 0 {
		t.Fatalf("protected handler ran %d times without a valid CSRF token", n)
	}
	wantStatus(t, e.do("POST", "/api/auth/logout", "", cookie, "wrong", nil), 403)
	wantStatus(t, e.do("GET", "/api/auth/me", "", cookie, "", nil), 200) // still logged in
	wantStatus(t, e.do("POST", "/api/thing", "", cookie, ans.CSRF, nil), 200)
	if n := e.hits.Load(); n != 1 {
		t.Fatalf("hits = %d", n)
	}
}

func TestLogoutAndRevoke(t *testing.T) {
	e := newEnv(t, Options{}, "bob")
	c1, a1 := e.login(testUser, testPass)
	c2, a2 := e.login(testUser, testPass)
	cb, ab := e.login("bob", testPass)

	resp := e.do("GET", "/api/auth/sessions", "", c1, "", nil)
	wantStatus(t, resp, 200)
	var list struct {
		Sessions []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
			Remote  string `json:"remote"`
		} `json:"sessions"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	// Both logins happen at the same instant of the test's clock: their
	// order in the list is not fixed.
	if len(list.Sessions) == 2 && list.Sessions[1].Current {
		list.Sessions[0], list.Sessions[1] = list.Sessions[1], list.Sessions[0]
	}
	if len(list.Sessions) != 2 || !list.Sessions[0].Current || list.Sessions[1].Current || list.Sessions[0].Remote != "127.0.0.1" {
		t.Fatalf("sessions %+v", list.Sessions)
	}
	id2 := list.Sessions[1].ID

	// Bob cannot revoke Alice's session; without CSRF nobody can.
	wantStatus(t, e.do("DELETE", "/api/auth/sessions/"+id2, "", cb, ab.CSRF, nil), 404)
	wantStatus(t, e.do("DELETE", "/api/auth/sessions/"+id2, "", c1, "", nil), 403)
	wantStatus(t, e.do("GET", "/api/auth/me", "", c2, "", nil), 200)

	wantStatus(t, e.do("DELETE", "/api/auth/sessions/"+id2, "", c1, a1.CSRF, nil), 204)
	wantStatus(t, e.do("GET", "/api/auth/me", "", c2, "", nil), 401)
	wantStatus(t, e.do("POST", "/api/thing", "", c2, a2.CSRF, nil), 401)
	wantStatus(t, e.do("GET", "/api/auth/me", "", c1, "", nil), 200)

	// Logout ends the session on the server: the old cookie is useless.
	wantStatus(t, e.do("POST", "/api/auth/logout", "", c1, a1.CSRF, nil), 204)
	wantStatus(t, e.do("GET", "/api/auth/me", "", c1, "", nil), 401)

	// RevokeUser ends all of a user's sessions, nobody else's.
	c3, _ := e.login(testUser, testPass)
	e.a.RevokeUser(testUser)
	wantStatus(t, e.do("GET", "/api/auth/me", "", c3, "", nil), 401)
	wantStatus(t, e.do("GET", "/api/auth/me", "", cb, "", nil), 200)
}

func TestExpiry(t *testing.T) {
	e := newEnv(t, Options{IdleTimeout: time.Hour, MaxAge: 3 * time.Hour})
	c, _ := e.login(testUser, testPass)
	e.clock.Add(59 * time.Minute)
	wantStatus(t, e.do("GET", "/api/auth/me", "", c, "", nil), 200)
	e.clock.Add(time.Hour + time.Second) // idle past the timeout
	wantStatus(t, e.do("GET", "/api/auth/me", "", c, "", nil), 401)

	// Used every 50 minutes, a session still ends at MaxAge.
	c, _ = e.login(testUser, testPass)
	for i := 0; i < 3; i++ {
		e.clock.Add(50 * time.Minute)
		wantStatus(t, e.do("GET", "/api/auth/me", "", c, "", nil), 200)
	}
	e.clock.Add(31 * time.Minute) // 3 h 1 min after the login
	wantStatus(t, e.do("GET", "/api/auth/me", "", c, "", nil), 401)
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, Options{})
	for i := 0; i < limitBurst; i++ {
		wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"wrong password"}`, "", "", nil), 401)
	}
	// Even the right password is refused now, without being checked.
	resp := e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "", nil)
	wantStatus(t, resp, 429)
	if ra := resp.Header.Get("Retry-After"); ra != "10" {
		t.Fatalf("Retry-After %q", ra)
	}
	e.clock.Add(limitEvery)
	e.login(testUser, testPass)
	// A success gave its token back: one more failure is allowed, then
	// the next attempt waits again.
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"wrong password"}`, "", "", nil), 401)
	wantStatus(t, e.do("POST", "/api/auth/login", `{"user":"alice","password":"wrong password"}`, "", "", nil), 429)
}

func TestBasic(t *testing.T) {
	e := newEnv(t, Options{})
	var calls atomic.Int32
	h := e.a.Basic(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, User(r))
	}))
	serve := func(remote string, tlsOn bool, user, pass string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("PROPFIND", "/dav/", nil)
		r.RemoteAddr = remote
		if tlsOn {
			r.TLS = &tls.ConnectionState{}
		}
		if user != "" {
			r.SetBasicAuth(user, pass)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// Not loopback, no TLS: refused before the password is looked at.
	w := serve("192.0.2.7:5000", false, testUser, testPass)
	if w.Code != 403 || !strings.Contains(w.Body.String(), "TLS") {
		t.Fatalf("plain HTTP from afar: %d %q", w.Code, w.Body)
	}
	w = serve("[2001:db8::1]:5000", false, testUser, testPass)
	if w.Code != 403 {
		t.Fatalf("plain HTTP from afar (v6): %d", w.Code)
	}
	if w := serve("127.0.0.1:5000", false, "", ""); w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `realm="qsfs"`) {
		t.Fatalf("no credentials: %d %q", w.Code, w.Header())
	}
	if w := serve("127.0.0.1:5000", false, testUser, "wrong password"); w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong password: %d", w.Code)
	}
	if calls.Load() != 0 {
		t.Fatal("next ran for a refused request")
	}
	if w := serve("[::1]:5000", false, testUser, testPass); w.Code != 200 || w.Body.String() != testUser {
		t.Fatalf("right password over loopback: %d %q", w.Code, w.Body)
	}
	if w := serve("192.0.2.7:5000", true, testUser, testPass); w.Code != 200 {
		t.Fatalf("right password over TLS: %d", w.Code)
	}
	// Cached: many requests cost no hash (well under the time of one).
	start := time.Now()
	for i := 0; i < 50; i++ {
		if w := serve("127.0.0.1:5000", false, testUser, testPass); w.Code != 200 {
			t.Fatalf("cached: %d", w.Code)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("50 cached Basic checks took %v", d)
	}
	// The cache does not accept another password, and expires.
	if w := serve("127.0.0.1:5000", false, testUser, testPass+"x"); w.Code != 401 {
		t.Fatalf("other password after a cached one: %d", w.Code)
	}
	e.a.RevokeUser(testUser)
	e.a.basicMu.Lock()
	_, cached := e.a.basic[testUser]
	e.a.basicMu.Unlock()
	if cached {
		t.Fatal("RevokeUser kept the Basic cache")
	}
	// Failed Basic attempts are rate limited like logins.
	for i := 0; i < limitBurst; i++ {
		serve("10.0.0.1:1", true, "carol", "wrong password")
	}
	w = serve("10.0.0.1:1", true, "carol", "wrong password")
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d", limitBurst, w.Code)
	}
}

// Removing a user or changing its password, from another process's Store,
// ends its sessions and its remembered Basic login within CheckEvery.
func TestRemovedUserAndChangedPasswordEndLogins(t *testing.T) {
	dir := t.TempDir()
	st, err := users.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{testUser, "bob"} {
		if err := st.Add(u, testPass); err != nil {
			t.Fatal(err)
		}
	}
	c := &clock{t: time.Now()}
	a := New(Options{Users: st, Now: c.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := http.NewServeMux()
	mux.Handle("/api/auth/", a.Routes())
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, User(r)) })
	mux.Handle("/api/thing", a.Require(ok))
	mux.Handle("/dav/", a.Basic(ok))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	login := func(user string) string {
		req, _ := http.NewRequest("POST", srv.URL+"/api/auth/login", strings.NewReader(`{"user":"`+user+`","password":"`+testPass+`"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("login %s: %v %v", user, resp.StatusCode, err)
		}
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == CookieName {
				return ck.Value
			}
		}
		t.Fatal("no session cookie")
		return ""
	}
	get := func(path, cookie, basicUser string) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
		}
		if basicUser != "" {
			req.SetBasicAuth(basicUser, testPass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	alice, bob := login(testUser), login("bob")
	if get("/api/thing", alice, "") != 200 || get("/api/thing", bob, "") != 200 || get("/dav/", "", testUser) != 200 || get("/dav/", "", "bob") != 200 {
		t.Fatal("logins do not work")
	}
	other, _ := users.Open(dir) // as `qsfs user` would, in another process
	if err := other.Remove(testUser); err != nil {
		t.Fatal(err)
	}
	if err := other.SetPassword("bob", "a brand new password"); err != nil {
		t.Fatal(err)
	}
	c.Add(CheckEvery + time.Second)
	for _, tc := range []struct {
		what string
		code int
	}{
		{"removed user's session", get("/api/thing", alice, "")},
		{"changed password's session", get("/api/thing", bob, "")},
		{"removed user's remembered Basic", get("/dav/", "", testUser)},
		{"old password's remembered Basic", get("/dav/", "", "bob")},
	} {
		if tc.code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", tc.what, tc.code)
		}
	}
}

// TestRateLimitSuccessRefunds: with a clock that moves while a password
// is hashed (as the real one does), successful logins still give their
// token back, so one client can log in again and again.
func TestRateLimitSuccessRefunds(t *testing.T) {
	e := newEnv(t, Options{})
	e.a.limits.now = func() time.Time { e.clock.Add(time.Millisecond); return e.clock.Now() }
	for i := 0; i < 3*limitBurst; i++ {
		resp := e.do("POST", "/api/auth/login", `{"user":"alice","password":"`+testPass+`"}`, "", "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("successful login %d answered %d: successes must not count", i, resp.StatusCode)
		}
	}
}
