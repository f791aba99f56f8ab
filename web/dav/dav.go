// Package dav serves the file tree over WebDAV (RFC 4918, class 1 and 2)
// with golang.org/x/net/webdav, so that file managers and sync tools
// (Finder, Explorer, davfs2, rclone) reach the same files as the web
// interface.
//
// Every name a client sends, in the request's path or its Destination
// header, goes through fsys.Clean before anything is done: "..", NUL
// bytes, overlong names and the reserved root names are refused with 400
// and nothing changes. The reserved names are hidden from listings.
// Symbolic links are followed only inside the tree (fsys's os.Root
// refuses the rest); a link that does not lead to a regular file inside
// the tree is left out of listings, so a link to an ancestor cannot make
// a COPY or PROPFIND walk loop. PROPFIND with Depth: infinity is refused
// (403, RFC 4918's propfind-finite-depth), as the RFC allows, so one
// request cannot walk the whole tree.
//
// Locks (webdav.NewMemLS) and dead properties (PROPPATCH) are kept in
// memory: a restart forgets them. Dead properties are bounded in size and
// follow their resource through MOVE and DELETE made over WebDAV (a
// change made another way, say through the web interface, leaves them
// behind under the old name).
//
// Authentication is not done here: the server wraps the handler with
// auth.Basic.
package dav

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"golang.org/x/net/webdav"

	"qss/web/auth"
	"qss/web/files"
	"qss/web/fsys"
)

// DefaultPrefix is where WebDAV is served.
const DefaultPrefix = "/dav"

// Options configure New.
type Options struct {
	// Prefix is the URL path the tree is served under (default "/dav",
	// without a trailing slash).
	Prefix string
	// Logger receives the errors of requests (default slog.Default()).
	Logger *slog.Logger
}

// handler checks names and depth, then hands over to webdav.Handler.
type handler struct {
	prefix string
	fs     *fileSystem
	dav    *webdav.Handler
}

// New returns the WebDAV handler of f under opts.Prefix.
func New(f fsys.FS, opts Options) http.Handler {
	prefix := strings.TrimSuffix(opts.Prefix, "/")
	if prefix == "" {
		prefix = DefaultPrefix
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	dfs := newFileSystem(f)
	return &handler{
		prefix: prefix,
		fs:     dfs,
		dav: &webdav.Handler{
			Prefix:     prefix,
			FileSystem: dfs,
			LockSystem: webdav.NewMemLS(),
			Logger: func(r *http.Request, err error) {
				if err != nil {
					log.Info("dav: request failed", "method", r.Method, "path", r.URL.Path,
						"user", auth.User(r), "err", err)
				}
			},
		},
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// What a browser fetches from here must never run as a page of ours.
	files.SetSafeHeaders(w.Header())
	if _, err := h.name(r.URL.Path); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case "COPY", "MOVE":
		if code, err := h.checkDestination(r); err != nil {
			http.Error(w, err.Error(), code)
			return
		}
	case "PROPFIND":
		if d := r.Header.Get("Depth"); d != "0" && d != "1" {
			w.Header().Set("Content-Type", "application/xml; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?>`+"\n"+
				`<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>`+"\n")
			return
		}
	}
	switch r.Method {
	case "PROPFIND", "PROPPATCH", "LOCK":
		if code, err := checkXMLBody(w, r); err != nil {
			http.Error(w, err.Error(), code)
			return
		}
	}
	if h.ifETagsFail(r) {
		http.Error(w, "If header: no list holds (entity tag)", http.StatusPreconditionFailed)
		return
	}
	h.dav.ServeHTTP(w, r)
}

// maxXMLBody bounds the XML body of PROPFIND, PROPPATCH and LOCK.
const maxXMLBody = 1 << 20

// checkXMLBody reads the request's XML body (at most maxXMLBody, else
// 413) and refuses (400) one that declares a namespace prefix bound to
// the empty name, which XML Namespaces 1.0 forbids and encoding/xml
// accepts. r.Body is replaced by the bytes read.
func checkXMLBody(w http.ResponseWriter, r *http.Request) (int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxXMLBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("XML body over %d bytes", maxXMLBody)
		}
		return http.StatusBadRequest, fmt.Errorf("reading the body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			return 0, nil
		}
		if err != nil {
			return 0, nil // webdav answers malformed XML itself
		}
		if se, ok := tok.(xml.StartElement); ok {
			for _, a := range se.Attr {
				if a.Name.Space == "xmlns" && a.Value == "" {
					return http.StatusBadRequest, fmt.Errorf("namespace prefix %q bound to an empty name", a.Name.Local)
				}
			}
		}
	}
}

// name is the Clean name of a URL path under the prefix.
func (h *handler) name(p string) (string, error) {
	rest, ok := strings.CutPrefix(p, h.prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", fmt.Errorf("%q is outside %s/", p, h.prefix)
	}
	return fsys.Clean(rest)
}

// checkDestination refuses a Destination on another host (502, as RFC
// 4918 says) or outside the tree (400).
func (h *handler) checkDestination(r *http.Request) (int, error) {
	d := r.Header.Get("Destination")
	if d == "" {
		return http.StatusBadRequest, errors.New("a COPY or MOVE needs a Destination header")
	}
	u, err := url.Parse(d)
	if err != nil {
		return http.StatusBadRequest, fmt.Errorf("the Destination header is not a URL: %v", err)
	}
	if u.Host != "" && !strings.EqualFold(u.Host, r.Host) {
		return http.StatusBadGateway, fmt.Errorf("the Destination %q is on another server", u.Host)
	}
	dst, err := h.name(u.Path)
	if err != nil {
		return http.StatusBadRequest, fmt.Errorf("the Destination header: %w", err)
	}
	// webdav.Handler refuses only dst == src. Into itself, a COPY would
	// recurse; onto an ancestor with Overwrite, a MOVE or COPY would
	// first delete the destination, and with it the source.
	src, _ := h.name(r.URL.Path) // checked by ServeHTTP
	if under(dst, src) || under(src, dst) {
		return http.StatusForbidden, errors.New("the Destination is the source, inside it, or one of its parents")
	}
	if r.Method == "COPY" && r.Header.Get("Depth") != "0" && h.insideThroughLink(r.Context(), fsys.Dir(dst), src) {
		return http.StatusForbidden, errors.New("the Destination is inside the source, through a symbolic link")
	}
	return 0, nil
}

// insideThroughLink reports whether the folder dir, its name resolved
// (symbolic links followed), is the folder src or one of its folders: a
// walk of src's folders, links not followed (as a copy walks them), meets
// it. A recursive COPY there would copy its own copy again and again (up
// to x/net/webdav's 1000 levels).
func (h *handler) insideThroughLink(ctx context.Context, dir, src string) bool {
	target, err := h.fs.f.Stat(dir)
	if err != nil || !target.IsDir() {
		return false // the copy fails on its own
	}
	queue := []string{src}
	for len(queue) > 0 && ctx.Err() == nil {
		d := queue[0]
		queue = queue[1:]
		st, err := h.fs.f.Lstat(d)
		if err != nil || !st.IsDir() {
			continue
		}
		if os.SameFile(st, target) {
			return true
		}
		des, err := h.fs.f.ReadDir(d)
		if err != nil {
			continue
		}
		for _, de := range des {
			if de.IsDir() {
				queue = append(queue, fsys.Join(d, de.Name()))
			}
		}
	}
	return false
}
