package files

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"qss/web/fsys"
)

// TextETag is the ETag of a text as the editor API gives it: a hash of
// the content. Size and modification time (ETag) are not enough here:
// Linux stamps files with a clock of a few milliseconds' resolution, so a
// same-size change right after a read would keep the same ETag and a save
// would silently overwrite it. Being of the content, it differs from the
// download and stat ETag.
func TextETag(b []byte) string {
	sum := sha256.Sum256(b)
	return "\"t" + hex.EncodeToString(sum[:16]) + "\""
}

// currentTextETag is the TextETag of the file name now, or its stat ETag
// (which no TextETag equals) when it is over MaxText.
func (a *API) currentTextETag(name string) (string, error) {
	f, err := a.fs.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, a.opts.MaxText+1))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > a.opts.MaxText {
		st, err := f.Stat()
		if err != nil {
			return "", err
		}
		return ETag(st), nil
	}
	return TextETag(b), nil
}

// isText reports whether b is text the editor can show: valid UTF-8
// without NUL bytes (which only binary formats contain).
func isText(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

func (a *API) getText(w http.ResponseWriter, r *http.Request) {
	name, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f, st, ok := a.openFile(w, r, name)
	if !ok {
		return
	}
	defer f.Close()
	if st.Size() > a.opts.MaxText {
		WriteJSONError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%s is %d bytes, over the editor's limit of %d: download it instead", fsys.Display(name), st.Size(), a.opts.MaxText))
		return
	}
	b, err := io.ReadAll(io.LimitReader(f, a.opts.MaxText+1))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if int64(len(b)) > a.opts.MaxText {
		WriteJSONError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%s grew over the editor's limit of %d bytes", fsys.Display(name), a.opts.MaxText))
		return
	}
	if !isText(b) {
		WriteJSONError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("%s is not UTF-8 text: download it instead", fsys.Display(name)))
		return
	}
	h := w.Header()
	SetSafeHeaders(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("ETag", TextETag(b))
	h.Set("Cache-Control", "no-store")
	w.Write(b)
}

// preconditionFailed answers 412 with the file's current ETag ("" when it
// does not exist), so the editor can offer to reload or overwrite.
func preconditionFailed(w http.ResponseWriter, msg, etag string) {
	w.Header().Set("ETag", etag)
	if etag == "" {
		w.Header().Del("ETag")
	}
	writeJSON(w, http.StatusPreconditionFailed, struct {
		Error string `json:"error"`
		ETag  string `json:"etag"`
	}{msg, etag})
}

// putText saves the editor's text. The body goes to a temporary file in
// the same folder, synced, then renamed over the target: a crash leaves
// the old file or the new one, never half of one.
func (a *API) putText(w http.ResponseWriter, r *http.Request) {
	name, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if name == "." {
		a.fail(w, r, badf("path: the root is a folder"))
		return
	}
	ifMatch := strings.TrimSpace(r.Header.Get("If-Match"))
	create := strings.TrimSpace(r.Header.Get("If-None-Match")) == "*"
	if (ifMatch == "") == !create {
		a.fail(w, r, badf("send either If-Match: <etag> to replace the file or If-None-Match: * to create it"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxText))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !utf8.Valid(body) {
		WriteJSONError(w, http.StatusUnsupportedMediaType, "the text is not valid UTF-8")
		return
	}
	// An early look, for an answer without writing anything; the check
	// that counts is repeated under the lock before the rename.
	perm := fs.FileMode(0o644)
	if err := a.textPrecondition(name, ifMatch, create, &perm); err != nil {
		a.textRefused(w, r, err)
		return
	}
	tmp, err := tempName(name, "save")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.writeSynced(tmp, body, perm); err != nil {
		a.fs.Remove(tmp)
		a.fail(w, r, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.textPrecondition(name, ifMatch, create, &perm); err != nil {
		a.fs.Remove(tmp)
		a.textRefused(w, r, err)
		return
	}
	if err := a.fs.Rename(tmp, name); err != nil {
		a.fs.Remove(tmp)
		a.fail(w, r, err)
		return
	}
	a.syncDir(fsys.Dir(name))
	st, err := a.fs.Lstat(name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ETag  string `json:"etag"`
		Entry Entry  `json:"entry"`
	}{TextETag(body), a.entry(name, st)})
}

// errChanged is a failed If-Match / If-None-Match; etag is the current one.
type errChanged struct {
	msg, etag string
}

func (e *errChanged) Error() string { return e.msg }

// textPrecondition checks the save's condition against the file now and
// sets *perm to the existing file's permissions.
func (a *API) textPrecondition(name, ifMatch string, create bool, perm *fs.FileMode) error {
	st, err := a.fs.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if create {
			return nil
		}
		return &errChanged{msg: fsys.Display(name) + " was deleted meanwhile"}
	case err != nil:
		return err
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s: only regular files are edited: %w", fsys.Display(name), fsys.ErrNotRegular)
	}
	*perm = st.Mode().Perm()
	cur, err := a.currentTextETag(name)
	if err != nil {
		return err
	}
	if create {
		return &errChanged{msg: fsys.Display(name) + " exists already", etag: cur}
	}
	if ifMatch != cur && ifMatch != "*" {
		return &errChanged{msg: fsys.Display(name) + " changed since it was opened", etag: cur}
	}
	return nil
}

func (a *API) textRefused(w http.ResponseWriter, r *http.Request, err error) {
	var ch *errChanged
	if errors.As(err, &ch) {
		preconditionFailed(w, ch.msg, ch.etag)
		return
	}
	a.fail(w, r, err)
}

// writeSynced creates name (which must not exist) with data, synced.
func (a *API) writeSynced(name string, data []byte, perm fs.FileMode) error {
	f, err := a.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes a rename or creation in dir durable, as far as the
// filesystem supports it (best effort: an error changes nothing the
// client can act on).
func (a *API) syncDir(dir string) {
	d, err := a.fs.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// tempName is a hidden, unique name in the folder of name, for data
// written before it is renamed to name.
func tempName(name, kind string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fsys.Join(fsys.Dir(name), ".qsfs-"+kind+"-"+hex.EncodeToString(b[:])), nil
}
