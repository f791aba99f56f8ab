// Package files is the web interface's file API: listings, downloads
// (with HTTP Range) and folders as streamed zips, thumbnails, text for the
// editor with a save that detects a concurrent change, and the operations
// that change the tree (new folder, new file, rename, move, copy, delete to
// a trash that can be restored and emptied).
package files

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"qss/web/fsys"
)

// Entry is one name in a listing, as the API returns it.
type Entry struct {
	Name  string    `json:"name"`
	Path  string    `json:"path"` // display path: "/" + Clean name
	Kind  string    `json:"kind"` // "dir", "file", "link" or "other"
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
	// Remote is true when the file's data is not on this machine (qsfs
	// evicted it; reading fetches it). Absent when unknown.
	Remote *bool `json:"remote,omitempty"`
}

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m.IsRegular():
		return "file"
	case m&fs.ModeSymlink != 0:
		return "link"
	}
	return "other"
}

// EntryOf is the Entry of the Clean name with info st.
func EntryOf(name string, st fs.FileInfo) Entry {
	return Entry{Name: fsys.Base(name), Path: fsys.Display(name), Kind: kindOf(st.Mode()),
		Size: st.Size(), MTime: st.ModTime().UTC()}
}

// List lists the Clean directory dir, sorted by name, without the
// Reserved names of the root.
func List(f fsys.FS, dir string) ([]Entry, error) {
	es, _, err := list(f, dir)
	return es, err
}

// listWorkers bounds the stats List runs at once: over a FUSE mount each
// is a round trip, and a folder of 10,000 names lists several times faster
// with them in parallel.
const listWorkers = 8

// list is List with each entry's FileInfo.
func list(f fsys.FS, dir string) ([]Entry, []fs.FileInfo, error) {
	des, err := f.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if dir == "." {
		des = slices.DeleteFunc(des, func(de fs.DirEntry) bool { return fsys.IsReserved(de.Name()) })
	}
	slices.SortFunc(des, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	infos := make([]fs.FileInfo, len(des))
	parallel(len(des), func(i int) {
		if st, err := des[i].Info(); err == nil {
			infos[i] = st
		} // else removed meanwhile
	})
	out := make([]Entry, 0, len(des))
	kept := make([]fs.FileInfo, 0, len(des))
	for i, de := range des {
		if infos[i] != nil {
			out = append(out, EntryOf(fsys.Join(dir, de.Name()), infos[i]))
			kept = append(kept, infos[i])
		}
	}
	return out, kept, nil
}

// parallel runs fn(0..n-1) on up to listWorkers goroutines.
func parallel(n int, fn func(int)) {
	if n < 64 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range listWorkers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// inlineTypes are the media types a browser may show inline: none of them
// runs script in the page's origin. Everything else is an attachment, so
// a file named or typed as HTML is never rendered as a page of ours.
var inlineTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true,
	"audio/mpeg": true, "audio/ogg": true, "audio/wav": true, "audio/webm": true, "audio/flac": true, "audio/mp4": true,
	"application/pdf": true, "text/plain": true,
}

// activeExts are formats a browser runs or renders as a document (served
// as text/plain, see ContentType): never inline, even as text, so that
// "inline" is never a page of ours whatever a browser decides.
var activeExts = map[string]bool{
	".html": true, ".htm": true, ".xhtml": true, ".shtml": true, ".svg": true, ".svgz": true,
	".xml": true, ".xsl": true, ".xslt": true, ".js": true, ".mjs": true,
}

// ContentType is the media type served for a name: by extension, and
// text/plain for text formats a browser would otherwise interpret
// (HTML, SVG, XML, JavaScript).
func ContentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".mp4", ".m4v":
		return "video/mp4"
	case ".webm":
		return "video/webm"
	case ".mp3":
		return "audio/mpeg"
	case ".flac":
		return "audio/flac"
	case ".wav":
		return "audio/wav"
	case ".md", ".markdown", ".txt", ".log", ".go", ".js", ".ts", ".json", ".html", ".htm", ".css", ".xml",
		".svg", ".yaml", ".yml", ".toml", ".sh", ".py", ".rs", ".c", ".h", ".java", ".csv", ".ini", ".conf":
		return "text/plain"
	}
	t := mime.TypeByExtension(ext)
	if t == "" {
		return "application/octet-stream"
	}
	t, _, _ = strings.Cut(t, ";")
	return t
}

// SetSafeHeaders sets the headers every response carrying user content
// gets: no sniffing, and a sandbox CSP so that even a document a browser
// renders can run no script and reach nothing.
func SetSafeHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox")
}

// privateContent keeps the user's files out of every cache (a shared
// one, or the browser's disk after a logout), unless the caller chose a
// Cache-Control already.
func privateContent(h http.Header) {
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
}

// ServeFile sends the Clean name's content with HTTP Range support
// (http.ServeContent: Range, If-Range, If-Modified-Since, ETag-less
// conditional requests), inline when asked and its type is safe to show,
// as an attachment otherwise. A directory is sent as a zip.
func ServeFile(w http.ResponseWriter, r *http.Request, f fsys.FS, name string, inline bool) {
	st, err := f.Stat(name)
	if err != nil {
		WriteError(w, err)
		return
	}
	if st.IsDir() {
		ServeZip(w, r, f, []string{name}, zipName(name))
		return
	}
	file, err := f.Open(name)
	if err != nil {
		WriteError(w, err)
		return
	}
	defer file.Close()
	ct := ContentType(name)
	h := w.Header()
	SetSafeHeaders(h)
	privateContent(h)
	h.Set("Content-Type", ct)
	disp := "attachment"
	if inline && inlineTypes[ct] && !activeExts[strings.ToLower(path.Ext(name))] {
		disp = "inline"
	}
	h.Set("Content-Disposition", disposition(disp, fsys.Base(name)))
	h.Set("ETag", ETag(st))
	http.ServeContent(w, r, "", st.ModTime(), file)
}

// ETag is a strong validator of a file's content as far as its metadata
// tells: size and modification time to the nanosecond.
func ETag(st fs.FileInfo) string {
	return fmt.Sprintf("\"%x-%x\"", st.Size(), st.ModTime().UnixNano())
}

func zipName(name string) string {
	if name == "." {
		return "files.zip"
	}
	return fsys.Base(name) + ".zip"
}

// disposition is a Content-Disposition value with the name in RFC 6266's
// filename* form (and an ASCII fallback).
func disposition(kind, name string) string {
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, name)
	return fmt.Sprintf("%s; filename=\"%s\"; filename*=UTF-8''%s", kind, ascii, url.PathEscape(name))
}

// ServeZip streams the Clean names (files and folders, recursively) as
// one zip, stored without compression (media does not shrink; the
// throughput is the disk's). Entries are named relative to the names'
// parent. An error after the first byte ends the stream early: the client
// sees a truncated zip, which every unzip reports.
func ServeZip(w http.ResponseWriter, r *http.Request, f fsys.FS, names []string, zipName string) {
	h := w.Header()
	SetSafeHeaders(h)
	privateContent(h)
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", disposition("attachment", zipName))
	if r.Method == http.MethodHead {
		return // the headers are the answer; do not read the tree for nothing
	}
	zw := zip.NewWriter(w)
	for _, name := range names {
		base := fsys.Dir(name)
		if err := addToZip(r, zw, f, name, base, true); err != nil {
			return // headers are out: end the stream (see above)
		}
	}
	zw.Close()
}

// addToZip adds the Clean name to zw under its name relative to base. A
// name the client asked for (top) is followed if it is a symlink (os.Root
// keeps that inside the tree); inside folders, symlinks and special files
// are left out, and a name removed meanwhile is skipped.
func addToZip(r *http.Request, zw *zip.Writer, f fsys.FS, name, base string, top bool) error {
	if err := r.Context().Err(); err != nil {
		return err
	}
	stat := f.Lstat
	if top {
		stat = f.Stat
	}
	st, err := stat(name)
	if !top && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	rel := name
	if base != "." {
		rel = strings.TrimPrefix(name, base+"/")
	}
	if name == "." {
		rel = ""
	}
	// A backslash is a legal byte of a name here but a separator to
	// Windows unzip tools: "..\\x" would extract outside the target.
	rel = strings.ReplaceAll(rel, "\\", "_")
	switch {
	case st.IsDir():
		if rel != "" {
			if _, err := zw.CreateHeader(&zip.FileHeader{Name: rel + "/", Modified: st.ModTime(), Method: zip.Store}); err != nil {
				return err
			}
		}
		des, err := f.ReadDir(name)
		if err != nil {
			return err
		}
		for _, de := range des {
			if name == "." && fsys.IsReserved(de.Name()) {
				continue
			}
			if err := addToZip(r, zw, f, fsys.Join(name, de.Name()), base, false); err != nil {
				return err
			}
		}
		return nil
	case st.Mode().IsRegular():
		fh := &zip.FileHeader{Name: rel, Modified: st.ModTime(), Method: zip.Store}
		fh.SetMode(st.Mode())
		dst, err := zw.CreateHeader(fh)
		if err != nil {
			return err
		}
		src, err := f.Open(name)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(dst, src)
		return err
	}
	return nil // symlinks and special files are not followed into a zip
}

// WriteError answers err as JSON {"error": "..."} with the status it
// maps to: 400 for a bad path or request, 404 for a missing name, 409
// for an existing one, 403 for a refused kind of file or a name that
// leads outside the tree, 413 for a body over its limit, 500 otherwise.
func WriteError(w http.ResponseWriter, err error) {
	WriteJSONError(w, statusOf(err), publicMessage(err))
}

// statusOf is the HTTP status WriteError answers err with.
func statusOf(err error) int {
	var (
		bad *badRequest
		mbe *http.MaxBytesError
	)
	switch {
	case errors.Is(err, fsys.ErrGone):
		return http.StatusServiceUnavailable
	case errors.As(err, &bad), errors.Is(err, fsys.ErrBadPath), errors.Is(err, syscall.ENOTDIR),
		errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENAMETOOLONG):
		return http.StatusBadRequest
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTEMPTY):
		return http.StatusConflict
	case errors.Is(err, fsys.ErrNotRegular), errors.Is(err, fs.ErrPermission), escapes(err),
		errors.Is(err, syscall.ELOOP):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// escapes reports whether err is os.Root refusing a name that resolves
// outside the root (through ".." or a symlink). The os package does not
// export that error, so its text is matched.
func escapes(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// publicMessage is err without host paths: a PathError's path is already
// the client's own relative name, so it is kept.
func publicMessage(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Sprintf("the request body is over its limit of %d bytes", mbe.Limit)
	}
	if escapes(err) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Sprintf("%s leads outside the served tree", fsys.Display(pe.Path))
		}
		return "the name leads outside the served tree"
	}
	return err.Error()
}

// WriteJSONError answers {"error": msg} with code.
func WriteJSONError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Del("Content-Disposition")
	h.Del("ETag")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
