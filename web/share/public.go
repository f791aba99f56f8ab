package share

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"qss/web/files"
	"qss/web/fsys"
)

// CookieName is the unlock cookie; each link's is scoped to its own
// Path, /api/public/<id>.
const CookieName = "qsfs_share"

// unlockFor is how long an unlock cookie is good for.
const unlockFor = 24 * time.Hour

// notFound is the one answer for unknown, expired and revoked links,
// identical in status, headers and body.
func notFound(w http.ResponseWriter) {
	files.WriteJSONError(w, http.StatusNotFound, "this link does not exist or is no longer shared")
}

// PublicRoutes serves the links without a session:
// GET /api/public/{id}, POST /api/public/{id}/unlock,
// GET /api/public/{id}/list and GET /api/public/{id}/download.
func (a *API) PublicRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/public/{id}", a.live(a.info))
	mux.HandleFunc("POST /api/public/{id}/unlock", a.live(a.unlock))
	mux.HandleFunc("GET /api/public/{id}/list", a.live(a.unlocked(a.publicList)))
	mux.HandleFunc("GET /api/public/{id}/download", a.live(a.unlocked(a.download)))
	mux.HandleFunc("/api/public/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
	return mux
}

// live looks the link up and answers notFound unless it is live.
func (a *API) live(h func(http.ResponseWriter, *http.Request, Share)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		sh, err := a.st.Get(r.PathValue("id"))
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				a.log.Error("share: read link", "err", err)
			}
			notFound(w)
			return
		}
		if !sh.Live(a.now()) {
			notFound(w)
			return
		}
		h(w, r, sh)
	}
}

// unlocked answers 401 for a link with a password and no valid cookie.
func (a *API) unlocked(h func(http.ResponseWriter, *http.Request, Share)) func(http.ResponseWriter, *http.Request, Share) {
	return func(w http.ResponseWriter, r *http.Request, sh Share) {
		if !a.isUnlocked(r, sh) {
			files.WriteJSONError(w, http.StatusUnauthorized, "this link needs its password")
			return
		}
		h(w, r, sh)
	}
}

// mac is the unlock MAC of sh until exp: it covers the id and the
// password's hash (salted, so a new password, even the same one, is a
// new hash).
func (a *API) mac(sh Share, exp int64) []byte {
	m := hmac.New(sha256.New, a.st.key)
	m.Write([]byte("qsfs share unlock\x00"))
	m.Write([]byte(sh.ID))
	m.Write([]byte{0})
	if sh.Password != nil {
		m.Write(sh.Password.Salt)
		m.Write(sh.Password.Hash)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(exp))
	m.Write(b[:])
	return m.Sum(nil)
}

// cookieValue is "<unix expiry>.<base64url MAC>".
func (a *API) cookieValue(sh Share, exp int64) string {
	return strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString(a.mac(sh, exp))
}

func (a *API) isUnlocked(r *http.Request, sh Share) bool {
	if sh.Password == nil {
		return true
	}
	for _, c := range r.CookiesNamed(CookieName) {
		expS, macS, ok := strings.Cut(c.Value, ".")
		if !ok {
			continue
		}
		exp, err := strconv.ParseInt(expS, 10, 64)
		if err != nil || a.now().Unix() >= exp {
			continue
		}
		got, err := base64.RawURLEncoding.DecodeString(macS)
		if err != nil {
			continue
		}
		if hmac.Equal(got, a.mac(sh, exp)) {
			return true
		}
	}
	return false
}

type publicInfo struct {
	Name          string     `json:"name"`
	Kind          string     `json:"kind"`
	Size          int64      `json:"size"`
	NeedsPassword bool       `json:"needs_password"`
	Expires       *time.Time `json:"expires"`
}

// info: name, kind and size are told only once unlocked; a locked link
// tells that it needs a password and when it expires.
func (a *API) info(w http.ResponseWriter, r *http.Request, sh Share) {
	out := publicInfo{NeedsPassword: !a.isUnlocked(r, sh)}
	if !sh.Expires.IsZero() {
		e := sh.Expires.UTC()
		out.Expires = &e
	}
	if !out.NeedsPassword {
		st, err := a.resolve(sh, ".")
		if err != nil {
			a.writeErr(w, err)
			return
		}
		out.Name, out.Kind, out.Size = fsys.Base(sh.Path), sh.Kind, st.Size()
		if sh.Path == "." {
			out.Name = "/"
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// clientKey is the rate-limit key of the client: its IP, or its /64 for
// IPv6 (one host often holds a whole /64). The peer address is used as
// is; a reverse proxy in front is one client.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

func (a *API) unlock(w http.ResponseWriter, r *http.Request, sh Share) {
	// No session to carry a CSRF token: like the login, a JSON body
	// (a cross-site form cannot send one) and a same-origin Origin.
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			files.WriteJSONError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
	}
	var req struct {
		Password string `json:"password"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if sh.Password == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	now := a.now()
	ip := clientKey(r)
	linkWait, linkRefund := a.byLink.reserve(sh.ID, now)
	ipWait, ipRefund := a.byIP.reserve(ip, now)
	if d := max(linkWait, ipWait); d > 0 {
		if linkRefund != nil {
			linkRefund()
		}
		if ipRefund != nil {
			ipRefund()
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
		files.WriteJSONError(w, http.StatusTooManyRequests,
			fmt.Sprintf("too many wrong passwords; try again in %s", d.Round(time.Second)))
		return
	}
	ok := false
	if len(req.Password) <= MaxPassword {
		a.hashing <- struct{}{}
		ok = sh.Password.Verify(req.Password)
		<-a.hashing
	}
	if !ok {
		a.log.Warn("share: wrong password", "id", sh.ID, "client", ip)
		files.WriteJSONError(w, http.StatusUnauthorized, "wrong password")
		return
	}
	linkRefund()
	ipRefund()
	exp := now.Add(unlockFor)
	if !sh.Expires.IsZero() && sh.Expires.Before(exp) {
		exp = sh.Expires
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: a.cookieValue(sh, exp.Unix()), Path: "/api/public/" + sh.ID,
		Expires: exp, HttpOnly: true, Secure: a.opts.Secure, SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}

// errOutside is a name under the link that is not the link's: a symbolic
// link on the way, or anything but the file of a file link.
var errOutside = errors.New("not inside the shared folder")

// inside is the tree name of the link-relative path p: p is cleaned
// (fsys.Clean, so ".." cannot climb) and joined to the link's path.
func inside(sh Share, p string) (string, error) {
	rel, err := fsys.Clean(p)
	if err != nil {
		return "", err
	}
	if sh.Kind != "dir" && rel != "." {
		return "", errOutside
	}
	return fsys.Join(sh.Path, rel), nil
}

// resolve checks the link-relative Clean name rel: every element from
// the link's own path down to it must be no symbolic link (os.Root
// would follow one to anywhere in the tree, out of the share), and the
// link's path must still be of its kind. It returns rel's info.
func (a *API) resolve(sh Share, rel string) (fs.FileInfo, error) {
	name := sh.Path
	st, err := a.fs.Lstat(name)
	if err != nil {
		return nil, err
	}
	if (sh.Kind == "dir") != st.IsDir() || (!st.IsDir() && !st.Mode().IsRegular()) {
		return nil, fs.ErrNotExist // replaced by something else since
	}
	if rel == "" || rel == "." {
		return st, nil
	}
	for _, e := range strings.Split(rel, "/") {
		name = fsys.Join(name, e)
		if st, err = a.fs.Lstat(name); err != nil {
			return nil, err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return nil, errOutside
		}
	}
	return st, nil
}

func (a *API) writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errOutside), errors.Is(err, fs.ErrNotExist):
		files.WriteJSONError(w, http.StatusNotFound, "no such file in this share")
	case errors.Is(err, fsys.ErrBadPath):
		files.WriteError(w, err)
	default:
		a.log.Error("share: serve", "err", err)
		files.WriteJSONError(w, http.StatusInternalServerError, "could not read the shared file")
	}
}

// target is the tree name and info of the request's ?path= under the
// link, or false after answering the error.
func (a *API) target(w http.ResponseWriter, r *http.Request, sh Share) (name string, st fs.FileInfo, ok bool) {
	name, err := inside(sh, r.URL.Query().Get("path"))
	if err == nil {
		st, err = a.resolve(sh, strings.TrimPrefix(relDisplay(sh, name), "/"))
	}
	if err != nil {
		a.writeErr(w, err)
		return "", nil, false
	}
	return name, st, true
}

func (a *API) publicList(w http.ResponseWriter, r *http.Request, sh Share) {
	name, st, ok := a.target(w, r, sh)
	if !ok {
		return
	}
	if !st.IsDir() {
		files.WriteJSONError(w, http.StatusBadRequest, "not a folder")
		return
	}
	ents, err := files.List(a.fs, name)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	// Paths are relative to the link: where the folder is in the
	// owner's tree is not the visitor's business.
	for i := range ents {
		ents[i].Path = relDisplay(sh, fsys.Join(name, ents[i].Name))
	}
	writeJSON(w, http.StatusOK, struct {
		Path    string        `json:"path"`
		Entries []files.Entry `json:"entries"`
	}{relDisplay(sh, name), ents})
}

// relDisplay is the display path of name relative to the link.
func relDisplay(sh Share, name string) string {
	if name == sh.Path {
		return "/"
	}
	if sh.Path == "." {
		return "/" + name
	}
	return "/" + strings.TrimPrefix(name, sh.Path+"/")
}

func (a *API) download(w http.ResponseWriter, r *http.Request, sh Share) {
	name, st, ok := a.target(w, r, sh)
	if !ok {
		return
	}
	if st.IsDir() {
		// ServeZip does not follow symbolic links inside the folder.
		zipName := fsys.Base(name) + ".zip"
		if name == "." {
			zipName = "files.zip"
		}
		files.ServeZip(w, r, a.fs, []string{name}, zipName)
		return
	}
	files.ServeFile(w, r, a.fs, name, r.URL.Query().Get("inline") == "1")
}
