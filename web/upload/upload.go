// Package upload receives resumable uploads (tus 1.0: core, creation,
// termination, expiration; github.com/tus/tusd/v2) into the served tree.
//
// An upload's data and its record live inside the tree, under
// fsys.UploadsDir: "<id>.bin" grows as PATCH requests arrive and is renamed
// to its target when complete, so the data is written once, into the
// filesystem it belongs to. "<id>.info" is the record (JSON): target,
// size, owner. The offset a client resumes from is the size of "<id>.bin".
//
// The target is decided, and refused, when the upload is created (the
// Upload-Metadata keys filename, dir, relativePath, overwrite): a bad path,
// an existing target without overwrite, or a size over the limit or the
// free space are answered before anything is written.
package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"

	"qss/web/fsys"
)

// BasePath is where the server mounts Handler (without stripping it).
const BasePath = "/api/upload/"

// Defaults of Options.
const (
	DefaultMaxSize = 64 << 30
	DefaultExpiry  = 24 * time.Hour
)

// Options configure Uploads. The zero value is usable.
type Options struct {
	// MaxSize is the largest Upload-Length accepted (default 64 GiB).
	MaxSize int64
	// Free, when set, reports the free bytes of the filesystem; a
	// creation larger than that is refused with 413.
	Free func() (int64, error)
	// Expiry is how long an upload may stay without activity before
	// Expire removes it (default 24 h).
	Expiry time.Duration
	// Logger receives warnings and errors (default slog.Default()).
	Logger *slog.Logger
	// User names the logged-in user of a request; an upload belongs to
	// the user that created it and is not found for another. Nil: every
	// upload belongs to "".
	User func(*http.Request) string
}

// Uploads is the tus endpoint and the uploads in progress.
type Uploads struct {
	fs      fsys.FS
	opts    Options
	log     *slog.Logger
	store   *store
	tus     *handler.Handler
	handler http.Handler

	mu     sync.Mutex
	closed bool
}

// New returns the uploads into f. Nothing is written until the first
// upload is created.
func New(f fsys.FS, opts Options) (*Uploads, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Expiry <= 0 {
		opts.Expiry = DefaultExpiry
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	u := &Uploads{fs: f, opts: opts, log: opts.Logger, store: &store{fs: f}}
	composer := handler.NewStoreComposer()
	composer.UseCore(u.store)
	composer.UseTerminater(u.store)
	memorylocker.New().UseIn(composer)
	tus, err := handler.NewHandler(handler.Config{
		StoreComposer:             composer,
		MaxSize:                   opts.MaxSize,
		BasePath:                  BasePath,
		DisableDownload:           true,
		DisableConcatenation:      true,
		Cors:                      &handler.CorsConfig{Disable: true},
		Logger:                    tusLogger(opts.Logger),
		PreUploadCreateCallback:   u.preCreate,
		PreFinishResponseCallback: u.preFinish,
	})
	if err != nil {
		return nil, fmt.Errorf("upload: tus handler: %w", err)
	}
	u.tus = tus
	u.handler = http.StripPrefix(strings.TrimSuffix(BasePath, "/"), tus)
	return u, nil
}

type userKey struct{}

func userOf(ctx context.Context) string {
	s, _ := ctx.Value(userKey{}).(string)
	return s
}

// Handler serves tus at BasePath; mount it there without stripping the
// prefix (Location headers name BasePath + id).
func (u *Uploads) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		closed := u.closed
		u.mu.Unlock()
		if closed {
			writeJSON(w, http.StatusServiceUnavailable, "the server is shutting down; retry later")
			return
		}
		user := ""
		if u.opts.User != nil {
			user = u.opts.User(r)
		}
		r = r.WithContext(context.WithValue(r.Context(), userKey{}, user))
		if r.Method == http.MethodOptions {
			w = &extensionWriter{ResponseWriter: w}
		}
		if r.Method == http.MethodPatch {
			// expiration extension: activity now keeps the upload for
			// Expiry more.
			w.Header().Set("Upload-Expires", time.Now().Add(u.opts.Expiry).UTC().Format(http.TimeFormat))
		}
		u.handler.ServeHTTP(w, r)
	})
}

// extensionWriter adds "expiration" to tusd's Tus-Extension: Expire
// implements it (and Upload-Expires tells the time).
type extensionWriter struct {
	http.ResponseWriter
}

func (e *extensionWriter) WriteHeader(code int) {
	h := e.Header()
	if ext := h.Get("Tus-Extension"); ext != "" && !strings.Contains(ext, "expiration") {
		h.Set("Tus-Extension", ext+",expiration")
	}
	e.ResponseWriter.WriteHeader(code)
}

// Unwrap lets tusd's http.ResponseController reach the connection.
func (e *extensionWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// Close refuses new requests (503). Uploads in progress stay on disk and
// resume after a restart.
func (u *Uploads) Close() error {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	return nil
}

// Expire removes the uploads that saw no activity (no write to their data
// or record) for Options.Expiry, finished or not, and returns how many.
// The server calls it periodically.
func (u *Uploads) Expire(ctx context.Context) (int, error) {
	return u.store.expire(ctx, time.Now().Add(-u.opts.Expiry))
}

// tusError is a tusd error answered as the API's JSON {"error": msg}.
func tusError(code int, msg string) error {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	e := handler.NewError("ERR_QSFS_"+strconv.Itoa(code), msg, code)
	e.HTTPResponse.Body = string(b) + "\n"
	e.HTTPResponse.Header = handler.HTTPHeader{"Content-Type": "application/json"}
	return e
}

func writeJSON(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// Target is the Clean name an upload with metadata meta is placed at:
// dir joined with relativePath (folder uploads) or filename. It refuses
// absolute relative paths, a filename with a slash, and everything Clean
// refuses, with an error wrapping fsys.ErrBadPath.
func Target(meta map[string]string) (string, error) {
	dir := meta["dir"]
	if dir == "" {
		dir = "/"
	}
	var rel string
	if rp := meta["relativePath"]; rp != "" {
		if strings.HasPrefix(rp, "/") {
			return "", fmt.Errorf("%w: relativePath %q is absolute", fsys.ErrBadPath, rp)
		}
		rel = rp
	} else {
		rel = meta["filename"]
		if rel == "" {
			return "", fmt.Errorf("%w: Upload-Metadata needs a filename", fsys.ErrBadPath)
		}
		if strings.Contains(rel, "/") {
			return "", fmt.Errorf("%w: filename %q contains a slash", fsys.ErrBadPath, rel)
		}
	}
	if _, err := fsys.Clean(dir); err != nil {
		return "", fmt.Errorf("dir: %w", err)
	}
	name, err := fsys.Clean(dir + "/" + rel)
	if err != nil {
		return "", err
	}
	if name == "." || strings.HasSuffix(rel, "/") {
		return "", fmt.Errorf("%w: the upload names a folder, not a file", fsys.ErrBadPath)
	}
	return name, nil
}

// checkTarget refuses a target that exists (unless overwrite and it is
// a file) or whose folder is a file.
func checkTarget(f fsys.FS, name string, overwrite bool) error {
	if st, err := f.Lstat(name); err == nil {
		if st.IsDir() {
			return tusError(http.StatusConflict, fsys.Display(name)+" exists and is a folder")
		}
		if !overwrite {
			return tusError(http.StatusConflict, fsys.Display(name)+" exists; set overwrite to replace it")
		}
		if !st.Mode().IsRegular() {
			return tusError(http.StatusConflict, fsys.Display(name)+" exists and is not a regular file")
		}
	} else if escapes(err) {
		return tusError(http.StatusForbidden, fsys.Display(name)+" leads outside the served tree")
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		// ENOTDIR: a folder on the way is a file; found below.
		return fmt.Errorf("upload: stat %s: %w", fsys.Display(name), err)
	}
	for d := fsys.Dir(name); d != "."; d = fsys.Dir(d) {
		st, err := f.Stat(d)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		if escapes(err) {
			return tusError(http.StatusForbidden, fsys.Display(d)+" leads outside the served tree")
		}
		if err != nil {
			return fmt.Errorf("upload: stat %s: %w", fsys.Display(d), err)
		}
		if !st.IsDir() {
			return tusError(http.StatusConflict, fsys.Display(d)+" is a file, not a folder")
		}
		break
	}
	return nil
}

// escapes reports whether err is os.Root refusing a name that resolves
// outside the root (a symbolic link out of the tree, or a loop). The os
// package does not export that error, so its text is matched.
func escapes(err error) bool {
	if errors.Is(err, syscall.ELOOP) {
		return true
	}
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// maxMetadata bounds the Upload-Metadata of an upload (keys and decoded
// values, in bytes), so that its record stays far below the size
// GetUpload reads back (JSON may escape a byte into six).
const maxMetadata = 64 << 10

func (u *Uploads) preCreate(ev handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	var none handler.HTTPResponse
	var nochange handler.FileInfoChanges
	info := ev.Upload
	if info.SizeIsDeferred {
		return none, nochange, tusError(http.StatusBadRequest, "Upload-Length is required")
	}
	n := 0
	for k, v := range info.MetaData {
		n += len(k) + len(v)
	}
	if n > maxMetadata {
		return none, nochange, tusError(http.StatusBadRequest,
			fmt.Sprintf("Upload-Metadata is over %d bytes", maxMetadata))
	}
	name, err := Target(info.MetaData)
	if err != nil {
		return none, nochange, tusError(http.StatusBadRequest, err.Error())
	}
	if info.Size > u.opts.MaxSize {
		return none, nochange, tusError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("the upload is larger than the maximum of %d bytes", u.opts.MaxSize))
	}
	if u.opts.Free != nil {
		free, err := u.opts.Free()
		if err != nil {
			return none, nochange, fmt.Errorf("upload: free space: %w", err)
		}
		if info.Size > free {
			return none, nochange, tusError(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("the upload (%d bytes) is larger than the free space (%d bytes)", info.Size, free))
		}
	}
	if err := checkTarget(u.fs, name, info.MetaData["overwrite"] == "1"); err != nil {
		return none, nochange, err
	}
	resp := handler.HTTPResponse{Header: handler.HTTPHeader{
		"Upload-Expires": time.Now().Add(u.opts.Expiry).UTC().Format(http.TimeFormat),
	}}
	return resp, nochange, nil
}

func (u *Uploads) preFinish(ev handler.HookEvent) (handler.HTTPResponse, error) {
	name, err := Target(ev.Upload.MetaData)
	if err != nil { // validated at creation; cannot happen
		return handler.HTTPResponse{}, tusError(http.StatusBadRequest, err.Error())
	}
	u.log.Info("upload complete", "path", fsys.Display(name), "size", ev.Upload.Size, "user", userOf(ev.Context))
	return handler.HTTPResponse{Header: handler.HTTPHeader{"Qsfs-Path": EncodePath(fsys.Display(name))}}, nil
}

// EncodePath is a display path as the Qsfs-Path header carries it:
// percent-encoded like a URL path (slashes kept), so that any name is
// ASCII on the wire; decodeURIComponent reverses it.
func EncodePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}
