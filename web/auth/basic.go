package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// Basic passes to next only requests with HTTP Basic credentials of a
// user (User(r) names it inside next). Basic sends the password with
// every request, so it is accepted only over TLS or from a loopback
// client: anything else gets 403 saying so, before any credential is
// looked at. Missing or wrong credentials get 401 with a
// WWW-Authenticate challenge for realm "qsfs"; failed attempts are rate
// limited like logins (429). A success is remembered for a minute, so a
// WebDAV client's stream of requests costs one password hash a minute.
func (a *Auth) Basic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil && !isLoopback(r) {
			http.Error(w, "WebDAV with a password needs TLS: configure web_tls_cert and web_tls_key and connect with https", http.StatusForbidden)
			return
		}
		user, password, ok := r.BasicAuth()
		if !ok || user == "" {
			challenge(w, "credentials required")
			return
		}
		if !a.basicCached(user, password) {
			ok, status := a.check(r, user, password, false, w)
			if !ok {
				if status == http.StatusUnauthorized {
					challenge(w, "wrong user name or password")
				}
				return
			}
			a.basicRemember(user, password)
		}
		next.ServeHTTP(w, withUser(r, ctxValue{user: user}))
	})
}

func challenge(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="qsfs", charset="UTF-8"`)
	http.Error(w, msg, http.StatusUnauthorized)
}

func basicSum(user, password string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// basicCached reports whether user's password was verified less than
// basicCacheTTL ago, comparing in constant time.
func (a *Auth) basicCached(user, password string) bool {
	sum := basicSum(user, password)
	now := a.now()
	a.basicMu.Lock()
	defer a.basicMu.Unlock()
	e, ok := a.basic[user]
	if !ok || !now.Before(e.expires) || subtle.ConstantTimeCompare(sum[:], e.sum[:]) != 1 {
		return false
	}
	if !a.stillValid(user, e.expires.Add(-basicCacheTTL), &e.checked, now) {
		delete(a.basic, user)
		return false
	}
	a.basic[user] = e
	return true
}

func (a *Auth) basicRemember(user, password string) {
	now := a.now()
	e := basicEntry{sum: basicSum(user, password), expires: now.Add(basicCacheTTL), checked: now}
	a.basicMu.Lock()
	a.basic[user] = e
	a.basicMu.Unlock()
}
