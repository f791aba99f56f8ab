package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"qss/web/fsys"
)

// Options configure an API. The zero value is usable.
type Options struct {
	// Logger receives the errors answered with 500 (default: slog.Default()).
	Logger *slog.Logger
	// MaxText is the largest file the text editor opens or saves, in
	// bytes (default 8 MiB).
	MaxText int64
	// Resident, when set, tells for a Clean file name whether its data is
	// only on the backends (remote) and whether that is known at all; it
	// fills Entry.Remote.
	// st is the file's FileInfo, as the listing read it.
	Resident func(name string, st fs.FileInfo) (remote bool, known bool)
	// User, when set, names the signed-in user of a request; the trash
	// records who deleted an item.
	User func(*http.Request) string
}

// DefaultMaxText is Options.MaxText when unset.
const DefaultMaxText = 8 << 20

// maxJSON bounds every JSON request body.
const maxJSON = 1 << 20

// maxPaths bounds the names one request may act on (delete, restore, zip).
const maxPaths = 10000

// API serves the /api/files/ routes of docs/web.md over an FS.
type API struct {
	fs   fsys.FS
	opts Options
	log  *slog.Logger

	// mu serialises the changes to the tree made through the API (check
	// then act: "does the target exist" and the rename that follows),
	// so two requests cannot both pass a check that only one may pass.
	// Long work (copying data) happens outside it, into temporary names.
	mu sync.Mutex

	thumbs   *lru.Cache[string, []byte]
	thumbSem chan struct{}
}

// New returns the API serving f.
func New(f fsys.FS, opts Options) *API {
	if opts.MaxText <= 0 {
		opts.MaxText = DefaultMaxText
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cache, err := lru.New[string, []byte](thumbCacheEntries)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &API{fs: f, opts: opts, log: log, thumbs: cache, thumbSem: make(chan struct{}, thumbConcurrency)}
}

// Routes is the handler of every /api/files/ route. It does no
// authentication: the server wraps it in its session middleware.
func (a *API) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/files/list", a.list)
	mux.HandleFunc("GET /api/files/stat", a.stat)
	mux.HandleFunc("GET /api/files/download", a.download)
	mux.HandleFunc("GET /api/files/zip", a.zip)
	mux.HandleFunc("GET /api/files/thumb", a.thumb)
	mux.HandleFunc("GET /api/files/text", a.getText)
	mux.HandleFunc("PUT /api/files/text", a.putText)
	mux.HandleFunc("POST /api/files/mkdir", a.mkdir)
	mux.HandleFunc("POST /api/files/new", a.newFile)
	mux.HandleFunc("POST /api/files/move", a.move)
	mux.HandleFunc("POST /api/files/copy", a.copy)
	mux.HandleFunc("POST /api/files/delete", a.delete)
	mux.HandleFunc("GET /api/files/trash", a.trashList)
	mux.HandleFunc("POST /api/files/trash/restore", a.trashRestore)
	mux.HandleFunc("POST /api/files/trash/empty", a.trashEmpty)
	mux.HandleFunc("GET /api/files/search", a.search)
	mux.HandleFunc("/api/files/", func(w http.ResponseWriter, r *http.Request) {
		WriteJSONError(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// fail answers err, logging it when it is the server's fault.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if statusOf(err) == http.StatusInternalServerError {
		a.log.Error("web/files", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	WriteError(w, err)
}

// badRequest is an error answered with 400.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

// queryPath is the Clean name of the query parameter key (the root when
// absent).
func queryPath(r *http.Request, key string) (string, error) {
	name, err := fsys.Clean(r.URL.Query().Get(key))
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return name, nil
}

// decodeJSON reads the request body, at most maxJSON bytes, into v,
// refusing unknown fields and anything after the one value.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badf("malformed JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badf("malformed JSON body: one JSON object expected")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// entry is the Entry of name with the residency badge filled in.
func (a *API) entry(name string, st fs.FileInfo) Entry {
	e := EntryOf(name, st)
	a.badge(&e, name, st)
	return e
}

func (a *API) badge(e *Entry, name string, st fs.FileInfo) {
	if a.opts.Resident == nil || e.Kind != "file" {
		return
	}
	if remote, known := a.opts.Resident(name, st); known {
		e.Remote = &remote
	}
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	dir, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.fs.Stat(dir)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !st.IsDir() {
		a.fail(w, r, badf("%s is not a folder", fsys.Display(dir)))
		return
	}
	entries, infos, err := list(a.fs, dir)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if a.opts.Resident != nil {
		parallel(len(entries), func(i int) {
			a.badge(&entries[i], fsys.Join(dir, entries[i].Name), infos[i])
		})
	}
	writeJSON(w, http.StatusOK, struct {
		Path    string  `json:"path"`
		Entries []Entry `json:"entries"`
	}{fsys.Display(dir), entries})
}

// statEntry is an Entry with its ETag.
type statEntry struct {
	Entry
	ETag string `json:"etag"`
}

func (a *API) stat(w http.ResponseWriter, r *http.Request) {
	name, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.fs.Lstat(name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, statEntry{a.entry(name, st), ETag(st)})
}

func (a *API) download(w http.ResponseWriter, r *http.Request) {
	name, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ServeFile(w, r, a.fs, name, r.URL.Query().Get("inline") == "1")
}

func (a *API) zip(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query()["path"]
	if len(raw) == 0 {
		a.fail(w, r, badf("path: at least one is needed"))
		return
	}
	if len(raw) > maxPaths {
		a.fail(w, r, badf("path: at most %d names", maxPaths))
		return
	}
	names := make([]string, 0, len(raw))
	for _, p := range raw {
		name, err := fsys.Clean(p)
		if err != nil {
			a.fail(w, r, fmt.Errorf("path: %w", err))
			return
		}
		if _, err := a.fs.Stat(name); err != nil {
			a.fail(w, r, err) // a symlink out of the tree: 403 before any byte
			return
		}
		names = append(names, name)
	}
	zn := "files.zip"
	if len(names) == 1 {
		zn = zipName(names[0])
	}
	ServeZip(w, r, a.fs, names, zn)
}

// pathBody is the body of mkdir and new.
type pathBody struct {
	Path string `json:"path"`
}

// bodyPath decodes a pathBody and cleans its path, refusing the root.
func (a *API) bodyPath(w http.ResponseWriter, r *http.Request) (string, error) {
	var b pathBody
	if err := decodeJSON(w, r, &b); err != nil {
		return "", err
	}
	name, err := fsys.Clean(b.Path)
	if err != nil {
		return "", fmt.Errorf("path: %w", err)
	}
	if name == "." {
		return "", badf("path: the root cannot be created")
	}
	return name, nil
}

func (a *API) mkdir(w http.ResponseWriter, r *http.Request) {
	name, err := a.bodyPath(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fs.Mkdir(name, 0o755); err != nil {
		a.fail(w, r, err)
		return
	}
	a.created(w, r, name)
}

func (a *API) newFile(w http.ResponseWriter, r *http.Request) {
	name, err := a.bodyPath(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := a.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := f.Close(); err != nil {
		a.fail(w, r, err)
		return
	}
	a.created(w, r, name)
}

func (a *API) created(w http.ResponseWriter, r *http.Request, name string) {
	a.answerEntryCode(w, r, name, http.StatusCreated)
}

// transferBody is the body of move and copy.
type transferBody struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Overwrite bool   `json:"overwrite"`
}

// transfer decodes and checks a move or copy: both names clean, neither
// the root, from exists, to is not inside from, to's folder exists.
func (a *API) transfer(w http.ResponseWriter, r *http.Request) (from, to string, overwrite bool, err error) {
	var b transferBody
	if err := decodeJSON(w, r, &b); err != nil {
		return "", "", false, err
	}
	if from, err = fsys.Clean(b.From); err != nil {
		return "", "", false, fmt.Errorf("from: %w", err)
	}
	if to, err = fsys.Clean(b.To); err != nil {
		return "", "", false, fmt.Errorf("to: %w", err)
	}
	if from == "." || to == "." {
		return "", "", false, badf("the root cannot be moved, copied or replaced")
	}
	if to == from || strings.HasPrefix(to, from+"/") {
		return "", "", false, badf("%s cannot go into itself (%s)", fsys.Display(from), fsys.Display(to))
	}
	if strings.HasPrefix(from, to+"/") {
		// Replacing an ancestor of the source would move the source
		// itself to the trash first.
		return "", "", false, badf("%s holds %s: it cannot be replaced by it", fsys.Display(to), fsys.Display(from))
	}
	if _, err := a.fs.Lstat(from); err != nil {
		return "", "", false, err
	}
	st, err := a.fs.Stat(fsys.Dir(to))
	if err != nil {
		return "", "", false, fmt.Errorf("the target folder: %w", err)
	}
	if !st.IsDir() {
		return "", "", false, badf("%s is not a folder", fsys.Display(fsys.Dir(to)))
	}
	return from, to, b.Overwrite, nil
}

// clearTarget makes room at to, with a.mu held: 409 when something is
// there and overwrite is false; with overwrite, what is there goes to the
// trash (a replace never erases data).
func (a *API) clearTarget(r *http.Request, to string, overwrite bool) error {
	if _, err := a.fs.Lstat(to); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if !overwrite {
		return fmt.Errorf("%s: %w (set overwrite to replace it)", fsys.Display(to), fs.ErrExist)
	}
	_, err := a.trash(r.Context(), to, a.user(r))
	return err
}

func (a *API) move(w http.ResponseWriter, r *http.Request) {
	from, to, overwrite, err := a.transfer(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.clearTarget(r, to, overwrite); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.fs.Rename(from, to); err != nil {
		a.fail(w, r, err)
		return
	}
	a.answerEntry(w, r, to)
}

func (a *API) answerEntry(w http.ResponseWriter, r *http.Request, name string) {
	a.answerEntryCode(w, r, name, http.StatusOK)
}

// openFile opens the regular file name for a handler; on failure (a
// folder included) it answers the error and ok is false.
func (a *API) openFile(w http.ResponseWriter, r *http.Request, name string) (f fsys.File, st fs.FileInfo, ok bool) {
	f, err := a.fs.Open(name)
	if err != nil {
		a.fail(w, r, err)
		return nil, nil, false
	}
	if st, err = f.Stat(); err == nil && st.IsDir() {
		err = badf("%s is a folder", fsys.Display(name))
	}
	if err != nil {
		f.Close()
		a.fail(w, r, err)
		return nil, nil, false
	}
	return f, st, true
}

// answerEntryCode answers name's Entry with code.
func (a *API) answerEntryCode(w http.ResponseWriter, r *http.Request, name string, code int) {
	st, err := a.fs.Lstat(name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, code, a.entry(name, st))
}

func (a *API) copy(w http.ResponseWriter, r *http.Request) {
	from, to, overwrite, err := a.transfer(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.fs.Lstat(from)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		a.fail(w, r, fmt.Errorf("%s: only files and folders are copied: %w", fsys.Display(from), fsys.ErrNotRegular))
		return
	}
	if !overwrite {
		// Fail early; checked again under the lock below.
		if _, err := a.fs.Lstat(to); err == nil {
			a.fail(w, r, fmt.Errorf("%s: %w (set overwrite to replace it)", fsys.Display(to), fs.ErrExist))
			return
		}
	}
	// The data goes to a hidden temporary name beside the target, then
	// is renamed into place: a copy cut short never shows as a partial
	// target, and the slow part runs without the lock.
	tmp, err := tempName(to, "copy")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.copyTree(r.Context(), from, tmp, nil); err != nil {
		a.fs.RemoveAll(tmp)
		a.fail(w, r, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.clearTarget(r, to, overwrite); err != nil {
		a.fs.RemoveAll(tmp)
		a.fail(w, r, err)
		return
	}
	if err := a.fs.Rename(tmp, to); err != nil {
		a.fs.RemoveAll(tmp)
		a.fail(w, r, err)
		return
	}
	a.answerEntry(w, r, to)
}

// copyTree copies the file or folder from to the new name to, skipping
// symlinks and special files inside folders (the FS cannot create them).
// top is the folder the copy made first (nil in the first call): met
// again among the source's folders, the target is inside the source
// through a symbolic link, and the copy would copy itself forever.
func (a *API) copyTree(ctx context.Context, from, to string, top fs.FileInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := a.fs.Lstat(from)
	if err != nil {
		return err
	}
	switch {
	case st.IsDir():
		if top != nil && os.SameFile(st, top) {
			return badf("the target is inside the folder copied (through a symbolic link): a folder cannot be copied into itself")
		}
		if err := a.fs.Mkdir(to, st.Mode().Perm()|0o700); err != nil {
			return err
		}
		if top == nil {
			if top, err = a.fs.Lstat(to); err != nil {
				return err
			}
		}
		des, err := a.fs.ReadDir(from)
		if err != nil {
			return err
		}
		for _, de := range des {
			if err := a.copyTree(ctx, fsys.Join(from, de.Name()), fsys.Join(to, de.Name()), top); err != nil {
				return err
			}
		}
	case st.Mode().IsRegular():
		if err := a.copyFile(ctx, from, to, st.Mode().Perm()); err != nil {
			return err
		}
	default:
		a.log.Info("web/files: copy skips a link or special file", "name", from)
		return nil
	}
	return a.fs.Chtimes(to, st.ModTime(), st.ModTime())
}

func (a *API) copyFile(ctx context.Context, from, to string, perm fs.FileMode) error {
	src, err := a.fs.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := a.fs.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, ctxReader{ctx, src}); err != nil {
		dst.Close()
		return fmt.Errorf("copy %s: %w", fsys.Display(from), err)
	}
	return dst.Close()
}

// ctxReader stops a copy when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (a *API) user(r *http.Request) string {
	if a.opts.User == nil {
		return ""
	}
	return a.opts.User(r)
}
