package upload_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"qss/web/fsys"
	"qss/web/upload"
)

// env is a tus server over a fresh tree: root is <tmp>/root, so that the
// tests can also check nothing appeared next to it.
type env struct {
	t      *testing.T
	parent string
	root   string
	fs     *fsys.Root
	up     *upload.Uploads
	srv    *httptest.Server
}

func newEnv(t testing.TB, opts upload.Options) *env {
	tt, _ := t.(*testing.T)
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	opts.User = func(r *http.Request) string { return r.Header.Get("X-Test-User") }
	up, err := upload.New(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(upload.BasePath, up.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		up.Close()
		f.Close()
	})
	return &env{t: tt, parent: parent, root: root, fs: f, up: up, srv: srv}
}

func encodeMeta(meta map[string]string) string {
	var parts []string
	for k, v := range meta {
		parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func do(t testing.TB, req *http.Request, user string) *http.Response {
	t.Helper()
	req.Header.Set("Tus-Resumable", "1.0.0")
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

// create POSTs a new upload and returns the response (Location on 201).
func (e *env) create(t testing.TB, size int64, meta map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+upload.BasePath, nil)
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Upload-Metadata", encodeMeta(meta))
	return do(t, req, "alice")
}

func (e *env) mustCreate(t testing.TB, size int64, meta map[string]string) string {
	t.Helper()
	resp := e.create(t, size, meta)
	if b := body(resp); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	if exp, err := http.ParseTime(resp.Header.Get("Upload-Expires")); err != nil || !exp.After(time.Now()) {
		t.Fatalf("create: Upload-Expires %q", resp.Header.Get("Upload-Expires"))
	}
	loc := resp.Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(u.Path, upload.BasePath) {
		t.Fatalf("Location %q", loc)
	}
	return e.srv.URL + u.Path
}

func patch(t testing.TB, ctx context.Context, loc string, offset int64, r io.Reader, n int64, user string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, r)
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("X-Test-User", user)
	return http.DefaultClient.Do(req)
}

func head(t testing.TB, loc, user string) (int, int64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, loc, nil)
	resp := do(t, req, user)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, -1
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		t.Fatalf("HEAD Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	return resp.StatusCode, off
}

func randomData(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	r.Read(b)
	return b
}

// cutPatch sends a PATCH at offset 0 whose Content-Length is total over
// a raw connection, writes only data, closes the sending side (the
// server sees the body end early) and waits for the server's answer.
func cutPatch(t *testing.T, loc string, data []byte, total int) {
	t.Helper()
	u, _ := url.Parse(loc)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PATCH %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nX-Test-User: alice\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: %d\r\n\r\n",
		u.Path, u.Host, total)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(io.Discard, c) // the server's answer, then its close
}

// cutReader delivers its data until limit bytes were read, then cancels
// the request (the client closes the connection mid-body).
type cutReader struct {
	r      io.Reader
	limit  int64
	read   int64
	cancel context.CancelFunc
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.read >= c.limit {
		c.cancel()
		return 0, errors.New("cut by the test")
	}
	if rem := c.limit - c.read; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.read += int64(n)
	return n, err
}

// countReader counts the bytes a request body sent.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestResumeAfterCut(t *testing.T) {
	e := newEnv(t, upload.Options{})
	const total = 64 << 20
	data := randomData(total)
	loc := e.mustCreate(t, total, map[string]string{"filename": "big.bin", "dir": "/videos"})

	// First PATCH announces the whole body but the client closes its
	// side of the connection after about 22 MiB (not a multiple of the
	// server's write size: the bytes read before the cut must be kept
	// too).
	const cut = 22<<20 + 12345
	cutPatch(t, loc, data[:cut], total)

	code, off := head(t, loc, "alice")
	if code != http.StatusOK || off != cut {
		t.Fatalf("HEAD after the cut: %d offset %d, want %d", code, off, cut)
	}
	if _, err := os.Stat(filepath.Join(e.root, "videos")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the target folder exists before the upload completed: %v", err)
	}

	// Resume sends only the rest.
	cnt := &countReader{r: bytes.NewReader(data[off:])}
	resp, err := patch(t, context.Background(), loc, off, cnt, total-off, "alice")
	if err != nil {
		t.Fatal(err)
	}
	b := body(resp)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("resume PATCH: %d %s", resp.StatusCode, b)
	}
	if cnt.n >= total || cnt.n != total-off {
		t.Fatalf("resume sent %d bytes of %d (offset %d)", cnt.n, total, off)
	}
	if got := resp.Header.Get("Upload-Offset"); got != strconv.Itoa(total) {
		t.Fatalf("Upload-Offset %s", got)
	}
	if got := resp.Header.Get("Qsfs-Path"); got != "/videos/big.bin" {
		t.Fatalf("Qsfs-Path %q", got)
	}
	got, err := os.ReadFile(filepath.Join(e.root, "videos", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("the uploaded file differs (%d bytes)", len(got))
	}
	// The data was renamed, not copied: only the record remains.
	ents, _ := os.ReadDir(filepath.Join(e.root, fsys.UploadsDir))
	for _, de := range ents {
		if strings.HasSuffix(de.Name(), ".bin") {
			t.Fatalf("%s left in the uploads folder", de.Name())
		}
	}
	// A client asking again sees it complete.
	if code, off := head(t, loc, "alice"); code != http.StatusOK || off != total {
		t.Fatalf("HEAD after completion: %d %d", code, off)
	}
}

// TestResumeAfterCancel: the client cancels a PATCH mid-body (the
// connection is reset, so what the server had not read yet is lost);
// HEAD still gives an offset consistent with the data, and the resume
// completes the same file.
func TestResumeAfterCancel(t *testing.T) {
	e := newEnv(t, upload.Options{})
	const total, cut = 16 << 20, 9<<20 + 777
	data := randomData(total)
	loc := e.mustCreate(t, total, map[string]string{"filename": "c.bin"})
	ctx, cancel := context.WithCancel(context.Background())
	cr := &cutReader{r: bytes.NewReader(data), limit: cut, cancel: cancel}
	if resp, err := patch(t, ctx, loc, 0, cr, total, "alice"); err == nil {
		resp.Body.Close()
		t.Fatalf("the cancelled PATCH succeeded: %d", resp.StatusCode)
	}
	cancel()
	code, off := head(t, loc, "alice")
	if code != http.StatusOK || off < 0 || off > cut {
		t.Fatalf("HEAD after the cancel: %d offset %d, want <= %d", code, off, cut)
	}
	resp, err := patch(t, context.Background(), loc, off, bytes.NewReader(data[off:]), total-off, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("resume: %d %s", resp.StatusCode, b)
	}
	got, err := os.ReadFile(filepath.Join(e.root, "c.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("the uploaded file differs (%d bytes, %v)", len(got), err)
	}
}

func TestFolderUpload(t *testing.T) {
	e := newEnv(t, upload.Options{})
	files := map[string]string{"album/a.jpg": "aaa", "album/sub/b.jpg": "bbbb", "album/sub/deeper/c.txt": "c"}
	for rel, content := range files {
		loc := e.mustCreate(t, int64(len(content)), map[string]string{"filename": filepath.Base(rel), "dir": "/photos", "relativePath": rel})
		resp, err := patch(t, context.Background(), loc, 0, strings.NewReader(content), int64(len(content)), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if b := body(resp); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: %d %s", rel, resp.StatusCode, b)
		}
		if got := resp.Header.Get("Qsfs-Path"); got != "/photos/"+rel {
			t.Fatalf("Qsfs-Path %q for %s", got, rel)
		}
	}
	for rel, content := range files {
		got, err := os.ReadFile(filepath.Join(e.root, "photos", rel))
		if err != nil || string(got) != content {
			t.Fatalf("%s: %q %v", rel, got, err)
		}
	}
}

func TestUnicodeNameAndEmptyFile(t *testing.T) {
	e := newEnv(t, upload.Options{})
	// An empty upload completes at creation.
	resp := e.create(t, 0, map[string]string{"filename": "été 100%.txt", "dir": "/"})
	if b := body(resp); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	p, err := url.PathUnescape(resp.Header.Get("Qsfs-Path"))
	if err != nil || p != "/été 100%.txt" {
		t.Fatalf("Qsfs-Path %q → %q %v", resp.Header.Get("Qsfs-Path"), p, err)
	}
	if st, err := os.Stat(filepath.Join(e.root, "été 100%.txt")); err != nil || st.Size() != 0 {
		t.Fatalf("empty file: %v", err)
	}
}

// listAll lists every path under dir (relative), for "nothing created".
func listAll(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestRefusedPathsWriteNothing(t *testing.T) {
	e := newEnv(t, upload.Options{})
	bad := []map[string]string{
		{"filename": "x", "relativePath": "../../x"},
		{"filename": "x", "relativePath": "/etc/x"},
		{"filename": "x", "relativePath": "a/../../x"},
		{"filename": "x", "relativePath": "./x"},
		{"filename": "x", "relativePath": "a/"},
		{"filename": "../x"},
		{"filename": "a/b"},
		{"filename": ".."},
		{"filename": ""},
		{"filename": "x", "dir": "/../.."},
		{"filename": "x", "dir": "/a/../.."},
		{"filename": "x", "dir": "/" + fsys.UploadsDir},
		{"filename": "x", "relativePath": fsys.TrashDir + "/x"},
		{"filename": "x\x00y"},
		{"filename": strings.Repeat("n", 256)},
	}
	for _, meta := range bad {
		resp := e.create(t, 10, meta)
		b := body(resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, `"error"`) {
			t.Errorf("%q: %d %s, want 400 with a JSON error", meta, resp.StatusCode, b)
		}
		if resp.Header.Get("Location") != "" {
			t.Errorf("%q: Location %q", meta, resp.Header.Get("Location"))
		}
	}
	if got := listAll(t, e.root); len(got) != 0 {
		t.Fatalf("refused uploads wrote into the tree: %q", got)
	}
	if got := listAll(t, e.parent); len(got) != 1 || got[0] != "root" {
		t.Fatalf("refused uploads wrote next to the tree: %q", got)
	}
}

func TestTooLarge(t *testing.T) {
	free := int64(1000)
	e := newEnv(t, upload.Options{MaxSize: 1 << 20, Free: func() (int64, error) { return free, nil }})
	req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+upload.BasePath, nil)
	resp := do(t, req, "alice")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Tus-Max-Size") != "1048576" ||
		resp.Header.Get("Tus-Extension") != "creation,creation-with-upload,termination,expiration" {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	for _, size := range []int64{1<<20 + 1, 1001} {
		resp = e.create(t, size, map[string]string{"filename": "x"})
		if b := body(resp); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("Upload-Length %d: %d %s, want 413", size, resp.StatusCode, b)
		}
	}
	if got := listAll(t, e.root); len(got) != 0 {
		t.Fatalf("refused uploads wrote: %q", got)
	}
	// Within both limits: accepted.
	e.mustCreate(t, 1000, map[string]string{"filename": "x"})
	var err error

	// A PATCH sending more than the upload's length is refused.
	loc := e.mustCreate(t, 10, map[string]string{"filename": "y"})
	resp, err = patch(t, context.Background(), loc, 0, strings.NewReader("0123456789ab"), 12, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("PATCH past the length: %d %s", resp.StatusCode, b)
	}
}

func TestExistsAndOverwrite(t *testing.T) {
	e := newEnv(t, upload.Options{})
	target := filepath.Join(e.root, "docs", "a.txt")
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.WriteFile(target, []byte("old"), 0o644)

	resp := e.create(t, 3, map[string]string{"filename": "a.txt", "dir": "/docs"})
	if b := body(resp); resp.StatusCode != http.StatusConflict {
		t.Fatalf("existing target without overwrite: %d %s", resp.StatusCode, b)
	}
	// A folder is never replaced, even with overwrite.
	resp = e.create(t, 3, map[string]string{"filename": "docs", "overwrite": "1"})
	if b := body(resp); resp.StatusCode != http.StatusConflict {
		t.Fatalf("folder target: %d %s", resp.StatusCode, b)
	}
	// A file where a folder is needed.
	resp = e.create(t, 3, map[string]string{"filename": "b", "dir": "/docs/a.txt/x"})
	if b := body(resp); resp.StatusCode != http.StatusConflict {
		t.Fatalf("file as folder: %d %s", resp.StatusCode, b)
	}
	if got, _ := os.ReadFile(target); string(got) != "old" {
		t.Fatalf("target changed by a refused upload: %q", got)
	}
	if _, err := os.Stat(filepath.Join(e.root, fsys.UploadsDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused uploads wrote: %v", err)
	}

	loc := e.mustCreate(t, 3, map[string]string{"filename": "a.txt", "dir": "/docs", "overwrite": "1"})
	resp, err := patch(t, context.Background(), loc, 0, strings.NewReader("new"), 3, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("overwrite: %d %s", resp.StatusCode, b)
	}
	if got, _ := os.ReadFile(target); string(got) != "new" {
		t.Fatalf("target after overwrite: %q", got)
	}

	// A target created while the upload ran is not replaced.
	loc = e.mustCreate(t, 3, map[string]string{"filename": "late.txt"})
	os.WriteFile(filepath.Join(e.root, "late.txt"), []byte("first"), 0o644)
	resp, err = patch(t, context.Background(), loc, 0, strings.NewReader("abc"), 3, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != http.StatusConflict {
		t.Fatalf("target appeared meanwhile: %d %s", resp.StatusCode, b)
	}
	if got, _ := os.ReadFile(filepath.Join(e.root, "late.txt")); string(got) != "first" {
		t.Fatalf("late target replaced: %q", got)
	}
}

func uploadFiles(t *testing.T, e *env) []string {
	ents, err := os.ReadDir(filepath.Join(e.root, fsys.UploadsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, de := range ents {
		names = append(names, de.Name())
	}
	return names
}

func TestTerminate(t *testing.T) {
	e := newEnv(t, upload.Options{})
	loc := e.mustCreate(t, 100, map[string]string{"filename": "p.bin"})
	resp, err := patch(t, context.Background(), loc, 0, strings.NewReader(strings.Repeat("x", 40)), 40, "alice")
	if err != nil {
		t.Fatal(err)
	}
	body(resp)
	if n := len(uploadFiles(t, e)); n != 2 {
		t.Fatalf("upload files before DELETE: %q", uploadFiles(t, e))
	}
	// Another user cannot see or terminate it.
	req, _ := http.NewRequest(http.MethodDelete, loc, nil)
	if resp := do(t, req, "mallory"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE by another user: %d", resp.StatusCode)
	}
	if code, _ := head(t, loc, "mallory"); code != http.StatusNotFound {
		t.Fatalf("HEAD by another user: %d", code)
	}
	req, _ = http.NewRequest(http.MethodDelete, loc, nil)
	if resp := do(t, req, "alice"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body(resp))
	}
	if names := uploadFiles(t, e); len(names) != 0 {
		t.Fatalf("DELETE left %q", names)
	}
	if code, _ := head(t, loc, "alice"); code != http.StatusNotFound {
		t.Fatalf("HEAD after DELETE: %d", code)
	}
	if _, err := os.Stat(filepath.Join(e.root, "p.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("terminated upload placed: %v", err)
	}
	// Hostile ids are not found.
	for _, id := range []string{"..", "..%2f..%2fetc", "0123456789abcdef0123456789abcdeg", "x/../y"} {
		code, _ := head(t, e.srv.URL+upload.BasePath+id, "alice")
		if code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Errorf("HEAD id %q: %d", id, code)
		}
	}
}

func TestExpire(t *testing.T) {
	e := newEnv(t, upload.Options{Expiry: time.Hour})
	old := e.mustCreate(t, 100, map[string]string{"filename": "old.bin"})
	fresh := e.mustCreate(t, 100, map[string]string{"filename": "fresh.bin"})
	id := old[strings.LastIndex(old, "/")+1:]
	past := time.Now().Add(-2 * time.Hour)
	for _, ext := range []string{".bin", ".info"} {
		if err := e.fs.Chtimes(fsys.UploadsDir+"/"+id+ext, past, past); err != nil {
			t.Fatal(err)
		}
	}
	n, err := e.up.Expire(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Expire: %d %v", n, err)
	}
	if code, _ := head(t, old, "alice"); code != http.StatusNotFound {
		t.Fatalf("expired upload: HEAD %d", code)
	}
	if code, off := head(t, fresh, "alice"); code != http.StatusOK || off != 0 {
		t.Fatalf("fresh upload: HEAD %d %d", code, off)
	}
	if names := uploadFiles(t, e); len(names) != 2 {
		t.Fatalf("after Expire: %q", names)
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, upload.Options{})
	loc := e.mustCreate(t, 10, map[string]string{"filename": "c"})
	e.up.Close()
	if code, _ := head(t, loc, "alice"); code != http.StatusServiceUnavailable {
		t.Fatalf("HEAD after Close: %d", code)
	}
	if resp := e.create(t, 1, map[string]string{"filename": "d"}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("create after Close: %d", resp.StatusCode)
	}
}

// BenchmarkUpload sends 256 MiB in 8 MiB PATCHes.
func BenchmarkUpload(b *testing.B) {
	const total, chunk = 256 << 20, 8 << 20
	data := randomData(chunk)
	e := newEnv(b, upload.Options{})
	b.SetBytes(total)
	for i := 0; b.Loop(); i++ {
		loc := e.mustCreate(b, total, map[string]string{"filename": "bench" + strconv.Itoa(i)})
		for off := int64(0); off < total; off += chunk {
			resp, err := patch(b, context.Background(), loc, off, bytes.NewReader(data), chunk, "alice")
			if err != nil {
				b.Fatal(err)
			}
			if m := body(resp); resp.StatusCode != http.StatusNoContent {
				b.Fatalf("PATCH: %d %s", resp.StatusCode, m)
			}
		}
		b.StopTimer()
		os.Remove(filepath.Join(e.root, "bench"+strconv.Itoa(i)))
		b.StartTimer()
	}
}

// TestSymlinkOutRefused: an upload whose folder is a symbolic link out of
// the tree is refused with 403 and the API's JSON (not a 500), and
// nothing is written.
func TestSymlinkOutRefused(t *testing.T) {
	e := newEnv(t, upload.Options{})
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(e.root, "out")); err != nil {
		t.Fatal(err)
	}
	for _, meta := range []map[string]string{
		{"filename": "x", "dir": "/out"},
		{"filename": "x", "relativePath": "out/x"},
		{"filename": "x", "relativePath": "out/sub/x"},
	} {
		resp := e.create(t, 10, meta)
		b := body(resp)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(b, `"error"`) {
			t.Errorf("%q: %d %s, want 403 with a JSON error", meta, resp.StatusCode, b)
		}
	}
	if got := listAll(t, outside); len(got) != 0 {
		t.Fatalf("wrote outside the tree: %q", got)
	}
	if got := listAll(t, e.root); len(got) != 1 || got[0] != "out" {
		t.Fatalf("refused uploads wrote into the tree: %q", got)
	}
}

// TestHugeMetadataRefused: Upload-Metadata too large for the upload's
// record is refused at creation (400), instead of creating an upload that
// every later request answers with 500.
func TestHugeMetadataRefused(t *testing.T) {
	e := newEnv(t, upload.Options{})
	resp := e.create(t, 10, map[string]string{"filename": "x", "junk": strings.Repeat("\x01", 500_000)})
	b := body(resp)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, `"error"`) {
		t.Fatalf("huge metadata: %d %s, want 400 with a JSON error", resp.StatusCode, b)
	}
	if got := listAll(t, e.root); len(got) != 0 {
		t.Fatalf("a refused upload wrote into the tree: %q", got)
	}
	// Metadata of a sensible size still works, end to end.
	loc := e.mustCreate(t, 3, map[string]string{"filename": "y", "note": strings.Repeat("é", 1000)})
	r, err := patch(t, context.Background(), loc, 0, strings.NewReader("abc"), 3, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(r); r.StatusCode != http.StatusNoContent {
		t.Fatalf("patch: %d %s", r.StatusCode, b)
	}
}
