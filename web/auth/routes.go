package auth

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Routes serves /api/auth/: login, logout, me, sessions and
// sessions/{id}, as docs/web.md describes. Mount it at /api/auth/.
func (a *Auth) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/auth/login", a.login)
	mux.Handle("POST /api/auth/logout", a.Require(http.HandlerFunc(a.logout)))
	mux.Handle("GET /api/auth/me", a.Require(http.HandlerFunc(a.me)))
	mux.Handle("GET /api/auth/sessions", a.Require(http.HandlerFunc(a.list)))
	mux.Handle("DELETE /api/auth/sessions/{id}", a.Require(http.HandlerFunc(a.revoke)))
	return mux
}

// sessionInfo is the answer of login and me.
type sessionInfo struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// login checks a password and starts a session. It has no session to
// take a CSRF token from, so it requires what a cross-site form cannot
// send: a JSON content type and, when the browser names it, an Origin
// equal to the request's host.
func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusForbidden, "login needs Content-Type: application/json")
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && !sameHost(origin, r.Host) {
		writeError(w, http.StatusForbidden, "login from another site (Origin "+origin+") is refused")
		return
	}
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "login body over 4 KiB")
			return
		}
		writeError(w, http.StatusBadRequest, "login body must be {\"user\",\"password\"}: "+err.Error())
		return
	}
	if req.User == "" || req.Password == "" {
		writeError(w, http.StatusBadRequest, "user and password are required")
		return
	}
	ok, status := a.check(r, req.User, req.Password, true, w)
	if !ok {
		if status == http.StatusUnauthorized {
			writeError(w, status, "wrong user name or password")
		}
		return
	}
	s, token := a.newSession(r, req.User)
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    token,
		Path:     "/",
		MaxAge:   int(a.maxAge / time.Second),
		HttpOnly: true,
		Secure:   a.secure,
		SameSite: http.SameSiteStrictMode,
	})
	a.log.Info("auth: login", "user", s.user, "remote", s.remote)
	writeJSON(w, http.StatusOK, sessionInfo{User: s.user, CSRF: s.csrf, Expires: a.expires(s)})
}

// check verifies a password under the rate limits. On false it has
// answered the request already unless status is 401, which the caller
// answers in its own format.
func (a *Auth) check(r *http.Request, user, password string, jsonBody bool, w http.ResponseWriter) (ok bool, status int) {
	ip := clientIP(r)
	if len(user) > maxUserLen {
		// No such user can exist; refusing here keeps such names out of
		// the limiters' memory.
		a.log.Warn("auth: failed login: user name too long", "remote", ip)
		return false, http.StatusUnauthorized
	}
	retry, done := a.limits.attempt("ip:"+ip, "user:"+user)
	if done == nil {
		a.log.Warn("auth: rate limited", "user", user, "remote", ip)
		writeRateLimited(w, retry, jsonBody)
		return false, http.StatusTooManyRequests
	}
	ok, err := a.users.Verify(user, password)
	done(ok && err == nil)
	if err != nil {
		a.log.Error("auth: verifying a password", "user", user, "remote", ip, "err", err)
		if jsonBody {
			writeError(w, http.StatusInternalServerError, "cannot check passwords now: see the server's log")
		} else {
			http.Error(w, "cannot check passwords now: see the server's log", http.StatusInternalServerError)
		}
		return false, http.StatusInternalServerError
	}
	if !ok {
		a.log.Warn("auth: failed login", "user", user, "remote", ip)
		return false, http.StatusUnauthorized
	}
	return true, http.StatusOK
}

// sameHost reports whether the Origin header value names host.
func sameHost(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	s := currentSession(r)
	a.mu.Lock()
	if key, ok := a.byID[s.id]; ok {
		a.deleteLocked(key)
	}
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

func (a *Auth) me(w http.ResponseWriter, r *http.Request) {
	s := currentSession(r)
	writeJSON(w, http.StatusOK, sessionInfo{User: s.user, CSRF: s.csrf, Expires: a.expires(s)})
}

// sessionEntry is one session in the listing.
type sessionEntry struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Remote   string    `json:"remote"`
	Agent    string    `json:"agent"`
	Current  bool      `json:"current"`
}

func (a *Auth) list(w http.ResponseWriter, r *http.Request) {
	cur := currentSession(r)
	now := a.now()
	out := []sessionEntry{}
	a.mu.Lock()
	a.sweepLocked(now)
	for _, s := range a.sessions {
		if s.user == cur.user {
			out = append(out, sessionEntry{ID: s.id, Created: s.created.UTC(), LastSeen: s.lastSeen.UTC(),
				Remote: s.remote, Agent: s.agent, Current: s.id == cur.id})
		}
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	writeJSON(w, http.StatusOK, struct {
		Sessions []sessionEntry `json:"sessions"`
	}{out})
}

// revoke ends one of the user's own sessions; another user's id answers
// 404, as an unknown one does.
func (a *Auth) revoke(w http.ResponseWriter, r *http.Request) {
	cur := currentSession(r)
	id := r.PathValue("id")
	a.mu.Lock()
	key, ok := a.byID[id]
	if ok && a.sessions[key].user == cur.user {
		a.deleteLocked(key)
	} else {
		ok = false
	}
	a.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "no such session")
		return
	}
	a.log.Info("auth: session revoked", "user", cur.user, "remote", clientIP(r))
	w.WriteHeader(http.StatusNoContent)
}
