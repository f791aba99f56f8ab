// Package e2e drives the web interface in Debian's Chromium the way a
// person uses it, against the real server (in process, over a temporary
// tree, reached through a loopback proxy that can drop connections): sign
// in (a wrong password first), upload through the file input (tus), resume
// an upload across a dropped connection, drop a folder, create, edit and
// save a Markdown file (Ctrl+S), reload, save over a file changed meanwhile
// (412), preview an image, thumbnails, a PDF and a video (with a seek),
// share a file and open the link logged out, delete and restore from the
// trash, list 10,000 files, the dashboard, sessions (end another one),
// emptying the trash, dark mode and a phone's width. It fails on any
// console error, warning or uncaught exception in the pages.
//
// Needs the Debian package chromium (/usr/bin/chromium). Screenshots of
// each page go to $E2E_SHOTS when set, else to the test's temp folder.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/chromedp"

	"qss/internal/browsertest"

	"qss/qsfs"
	"qss/qsfs/users"
	"qss/web"
	"qss/web/fsys"
)

const (
	user     = "e2e"
	password = "e2e-password-1"
)

// server is the real web server, in process, over a fresh tree.
type server struct {
	URL  string
	Root string
}

// downStatus is the qsfs status the dashboard is fed: three backends, one
// of them down, so the page must show it in red and list the risk.
func downStatus(context.Context) qsfs.Status {
	var s qsfs.Status
	s.RPO, s.RPOTarget = 3, 60
	s.Queue.Jobs, s.Queue.Bytes = 2, 1<<20
	s.Cache.Used, s.Cache.Cap = 300<<20, 1<<30
	s.RemoteObjects, s.Expected, s.LowestRedundancy = 42, 3, 2
	s.Backends = []qsfs.BackendHealth{
		{Address: "127.0.0.1:9901", Namespace: "e2e", Reachable: true, LatencyMS: 1.5, UsedBytes: 40 << 20, FreeBytes: 10 << 30},
		{Address: "127.0.0.1:9902", Namespace: "e2e", Reachable: true, LatencyMS: 2.5, UsedBytes: 40 << 20, FreeBytes: -1},
		{Address: "127.0.0.1:9903", Namespace: "e2e", Reachable: false, Error: "dial tcp 127.0.0.1:9903: connection refused"},
	}
	s.Redundancy = &qsfs.Redundancy{Lowest: 2, Expected: 3, Needed: 1, Objects: 42, ByShards: map[string]int{"2": 40, "3": 2}}
	s.AtRisk = []string{"backend 127.0.0.1:9903 is unreachable"}
	return s
}

func startServer(t testing.TB) server {
	t.Helper()
	root, state := t.TempDir(), t.TempDir()
	st, err := users.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(user, password); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	// Residency as qsfs would report it: the video's data is on the
	// backends only (the "remote-only" badge).
	resident := func(name string, _ fs.FileInfo) (remote, known bool) { return strings.HasSuffix(name, ".webm"), true }
	srv, err := web.New(web.Config{FS: f, Users: st, StateDir: state, Status: downStatus, Resident: resident, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return server{URL: hs.URL, Root: root}
}

// fixtures writes the files the test uploads: a PNG, a two-page PDF, a
// text file, and the committed WebM clip (4 s, VP8).
func fixtures(t *testing.T) map[string]string {
	dir := t.TempDir()
	out := map[string]string{}
	img := image.NewRGBA(image.Rect(0, 0, 96, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 96; x++ {
			img.Set(x, y, color.RGBA{R: uint8(x * 2), G: 120, B: uint8(y * 3), A: 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	write("picture.png", b.Bytes())
	write("paper.pdf", minimalPDF())
	write("hello.txt", []byte("hello from the e2e test\n"))
	clip, err := os.ReadFile(filepath.Join("testdata", "clip.webm"))
	if err != nil {
		t.Fatal(err)
	}
	write("clip.webm", clip)
	return out
}

// minimalPDF is a valid two-page PDF: a line of Helvetica text and a
// filled blue rectangle on each page.
func minimalPDF() []byte {
	stream := "BT /F1 24 Tf 40 120 Td (Hello PDF) Tj ET 0 0 1 rg 40 40 120 40 re f"
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 5 0 R /Resources << /Font << /F1 6 0 R >> >> >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 5 0 R /Resources << /Font << /F1 6 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(stream), stream),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

// typeInto replaces the text of a dialog's input the way a person does:
// select all, type.
func typeInto(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		// The dialog focuses its input and preselects part of the name;
		// wait for that, or the select-all below could come first.
		browsertest.WaitJS(fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, sel)),
		browsertest.JS(fmt.Sprintf(`document.querySelector(%q).select()`, sel)),
		chromedp.KeyEvent(text),
	)
}

// expected is a log entry the app causes on purpose: the check for an
// existing session (GET /api/auth/me) answers 401 before one signs in.
func expected(e *cdplog.Entry) bool {
	return e.Source == cdplog.EntrySourceNetwork && strings.HasSuffix(e.URL, "/api/auth/me") && strings.Contains(e.Text, "401")
}

func row(name string) string { return fmt.Sprintf(`[data-testid=row][data-name=%q]`, name) }

func TestBrowser(t *testing.T) {
	srv := startServer(t)
	// The browser reaches the server through a proxy that can drop the
	// connections (the resumable upload's test).
	proxy := newCutProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	base := proxy.URL()
	files := fixtures(t)
	bctx := browsertest.Start(t)
	shots := browsertest.ShotsDir(t)
	t.Logf("screenshots in %s", shots)

	// Each step builds on the ones before: stop at the first that fails.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	tab, cancel := chromedp.NewContext(bctx)
	defer cancel()
	p := &browsertest.Page{T: t, Ctx: tab, Con: &browsertest.Console{Ignore: expected}, Shots: shots, Name: "app"}
	browsertest.Watch(tab, p.Con, "app")

	// The console listener works: a deliberate error is seen (and dropped).
	p.Run("open the app", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`)))
	if err := chromedp.Do(tab, browsertest.JS(`console.error("e2e probe")`), chromedp.Sleep(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if errs := p.Con.Take(); len(errs) != 1 || !strings.Contains(errs[0], "e2e probe") {
		t.Fatalf("the console listener did not see a console.error: %q", errs)
	}
	p.Shot("login")

	step("login", func(t *testing.T) {
		p.T = t
		ctx, cancel := context.WithTimeout(tab, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS(`[data-testid=login-user]`), user),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), "not-the-password"),
			chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-error]`)),
		); err != nil {
			t.Fatalf("a wrong password: %v", err)
		}
		// The refused login is a 401 in the network log: expected here, and
		// nothing else.
		for _, e := range p.Con.Take() {
			if !strings.Contains(e, "/api/auth/login") || !strings.Contains(e, "401") {
				t.Errorf("console reported problems by the wrong password: %s", e)
			}
		}
		p.Shot("login-refused")
		p.Run("sign in",
			chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), password),
			chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=browser]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=empty]`)),
		)
		p.Shot("files-empty")
	})

	step("upload", func(t *testing.T) {
		p.T = t
		paths := []string{files["picture.png"], files["paper.pdf"], files["hello.txt"], files["clip.webm"]}
		p.Run("upload through the file input",
			chromedp.SetUploadFiles(chromedp.CSS(`[data-testid=upload-input]`), paths),
			browsertest.WaitJS(`document.querySelectorAll('[data-testid=upload-item][data-status=done]').length === 4`),
			chromedp.WaitVisible(chromedp.CSS(row("clip.webm"))),
			chromedp.WaitVisible(chromedp.CSS(row("picture.png"))),
		)
		for name, src := range files {
			want, _ := os.ReadFile(src)
			got, err := os.ReadFile(filepath.Join(srv.Root, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s on the server: %d bytes, err %v; want the %d bytes uploaded", name, len(got), err, len(want))
			}
		}
		p.Run("the remote-only badge",
			chromedp.WaitVisible(chromedp.CSS(row("clip.webm")+` [data-testid=badge-remote]`)),
			chromedp.WaitNotPresent(chromedp.CSS(row("picture.png")+` [data-testid=badge-remote]`)),
		)
		p.Shot("files-uploaded")
		p.Run("close the upload panel", chromedp.Click(chromedp.CSS(`[data-testid=upload-clear]`)))
	})

	step("resume", func(t *testing.T) {
		p.T = t
		// 40 MiB: three PATCHes of 16 MiB; the network drops 12 MiB in.
		const size = 40 << 20
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{1}).Read(data)
		big := filepath.Join(t.TempDir(), "big.bin")
		if err := os.WriteFile(big, data, 0o644); err != nil {
			t.Fatal(err)
		}
		start := proxy.up.Load()
		proxy.cutAfter(12 << 20)
		ctx, cancel := context.WithTimeout(tab, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx,
			chromedp.SetUploadFiles(chromedp.CSS(`[data-testid=upload-input]`), []string{big}),
			browsertest.WaitJS(`!!document.querySelector('[data-testid=upload-item][data-name="big.bin"][data-status=done]')`),
			chromedp.WaitVisible(chromedp.CSS(row("big.bin"))),
		); err != nil {
			p.Shot("failed-resume")
			t.Fatalf("upload across a dropped connection: %v", err)
		}
		if n := proxy.cuts.Load(); n != 1 {
			t.Fatalf("the proxy cut the connections %d times; want once", n)
		}
		got, err := os.ReadFile(filepath.Join(srv.Root, "big.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("big.bin on the server: %d bytes, err %v; want the %d bytes uploaded", len(got), err, size)
		}
		// Resumed, not restarted: well under 12 MiB + 40 MiB went up.
		if sent := proxy.up.Load() - start; sent > size+size/4 {
			t.Errorf("%d bytes went to the server for a %d-byte file cut once: the upload restarted instead of resuming", sent, size)
		}
		// The cut requests are network errors in the log, and a PATCH
		// that raced the server storing the cut one gets 409 (offset
		// mismatch; the client then resumes from HEAD): expected here, and
		// nothing else.
		for _, e := range p.Con.Take() {
			if !strings.Contains(e, "/api/upload/") || !strings.Contains(e, "net::ERR_") && !strings.Contains(e, "409") {
				t.Errorf("console reported problems by the resumed upload: %s", e)
			}
		}
		p.Shot("resumed")
		p.Run("close the upload panel", chromedp.Click(chromedp.CSS(`[data-testid=upload-clear]`)))
	})

	step("drop a folder", func(t *testing.T) {
		p.T = t
		// A folder dropped from the desktop: its files keep their place
		// under it (relativePath), subfolders included.
		src := filepath.Join(t.TempDir(), "album")
		for name, body := range map[string]string{"a.txt": "first\n", "sub/b.txt": "second\n"} {
			f := filepath.Join(src, name)
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		drop := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			data := &input.DragData{Files: []string{src}, DragOperationsMask: 1}
			for _, typ := range []input.DispatchDragEventType{input.DispatchDragEventTypeDragEnter, input.DispatchDragEventTypeDragOver, input.DispatchDragEventTypeDrop} {
				if _, err := cdp.Call(ctx, tg, input.DispatchDragEvent, input.DispatchDragEventParams{Type: typ, X: 640, Y: 500, Data: data}); err != nil {
					return fmt.Errorf("%s: %w", typ, err)
				}
			}
			return nil
		})
		p.Run("drop the folder on the list", drop,
			browsertest.WaitJS(`document.querySelectorAll('[data-testid=upload-item][data-status=done]').length === 2`),
			chromedp.WaitVisible(chromedp.CSS(row("album"))),
		)
		for name, body := range map[string]string{"album/a.txt": "first\n", "album/sub/b.txt": "second\n"} {
			got, err := os.ReadFile(filepath.Join(srv.Root, name))
			if err != nil || string(got) != body {
				t.Errorf("%s on the server = %q, %v; want %q", name, got, err, body)
			}
		}
		p.Shot("dropped")
		p.Run("close the upload panel", chromedp.Click(chromedp.CSS(`[data-testid=upload-clear]`)))
	})

	step("markdown", func(t *testing.T) {
		p.T = t
		p.Run("new file",
			chromedp.Click(chromedp.CSS(`[data-testid=btn-new-file]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=new-file-dialog]`)),
			typeInto(`[data-testid=dialog-input]`, "notes.md"),
			chromedp.KeyEvent("\r"),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=editor][data-state=ready]`)),
		)
		p.Run("type and save with Ctrl+S",
			chromedp.Click(chromedp.CSS(`.cm-content`)),
			chromedp.KeyEvent("# Notes\n\nSaved by **e2e**."),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=editor][data-dirty="1"]`)),
			chromedp.KeyEvent("s", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=editor][data-dirty="0"]`)),
			browsertest.WaitJS(`[...document.querySelectorAll('[data-testid=toast]')].some(t => t.textContent.includes('Saved notes.md'))`),
			browsertest.WaitJS(`document.querySelector('[data-testid=md-preview] strong')?.textContent === 'e2e'`),
		)
		got, err := os.ReadFile(filepath.Join(srv.Root, "notes.md"))
		if err != nil || !strings.Contains(string(got), "Saved by **e2e**.") {
			p.Shot("failed-save")
			filepath.WalkDir(srv.Root, func(path string, d fs.DirEntry, err error) error { t.Logf("tree: %s", path); return nil })
			t.Fatalf("notes.md on the server = %q, %v; want the typed text", got, err)
		}
		p.Shot("editor")
		var text string
		p.Run("reload and see the saved text",
			chromedp.Reload(),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=editor][data-state=ready]`)),
			browsertest.Get(&text, chromedp.Text(chromedp.CSS(`.cm-content`))),
		)
		if !strings.Contains(text, "Saved by **e2e**.") {
			t.Fatalf("after a reload the editor shows %q; want the saved text", text)
		}
		// Someone else changes the file: the save must not overwrite it
		// silently, but ask, and overwrite only when told to.
		if err := os.WriteFile(filepath.Join(srv.Root, "notes.md"), []byte("changed behind the editor\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(tab, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`.cm-content`)),
			chromedp.KeyEvent(" Mine."),
			chromedp.KeyEvent("s", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=conflict-save-dialog]`)),
		); err != nil {
			t.Fatalf("a save over a changed file: %v", err)
		}
		p.Shot("save-conflict")
		for _, e := range p.Con.Take() { // the 412 is the point
			if !strings.Contains(e, "/api/files/text") || !strings.Contains(e, "412") {
				t.Errorf("console reported problems by the conflicting save: %s", e)
			}
		}
		if got, _ := os.ReadFile(filepath.Join(srv.Root, "notes.md")); string(got) != "changed behind the editor\n" {
			t.Fatalf("the conflicting save overwrote the file: %q", got)
		}
		p.Run("overwrite",
			chromedp.Click(chromedp.CSS(`[data-testid=dialog-overwrite]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=editor][data-dirty="0"]`)),
		)
		if got, _ := os.ReadFile(filepath.Join(srv.Root, "notes.md")); !strings.Contains(string(got), "Mine.") {
			t.Fatalf("after Overwrite notes.md = %q; want the editor's text", got)
		}
		p.Run("close the editor", chromedp.Click(chromedp.CSS(`[data-testid=viewer-close]`)), chromedp.WaitNotPresent(chromedp.CSS(`[data-testid=viewer]`)), chromedp.WaitVisible(chromedp.CSS(row("notes.md"))))
	})

	step("image", func(t *testing.T) {
		p.T = t
		p.Run("open the image",
			chromedp.Click(chromedp.CSS(row("picture.png")+` [data-testid=row-open]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=viewer-image]`)),
			browsertest.WaitJS(`(() => { const i = document.querySelector('[data-testid=viewer-image]'); return i.complete && i.naturalWidth === 96 })()`),
		)
		p.Shot("image")
		p.Run("close", chromedp.Click(chromedp.CSS(`[data-testid=viewer-close]`)), chromedp.WaitNotPresent(chromedp.CSS(`[data-testid=viewer]`)))
		p.Run("thumbnail grid",
			chromedp.Click(chromedp.CSS(`[data-testid=btn-view-toggle]`)),
			browsertest.WaitJS(`(() => { const i = document.querySelector('[data-testid=thumb]'); return !!i && i.complete && i.naturalWidth > 0 })()`),
		)
		p.Shot("grid")
		p.Run("back to the list", chromedp.Click(chromedp.CSS(`[data-testid=btn-view-toggle]`)), chromedp.WaitVisible(chromedp.CSS(`.list-head`)))
	})

	step("pdf", func(t *testing.T) {
		p.T = t
		p.Run("open the PDF",
			chromedp.Click(chromedp.CSS(row("paper.pdf")+` [data-testid=row-open]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=pdf][data-rendered="1"]`)),
		)
		var dark int
		p.Run("the canvas has ink", browsertest.Get(&dark, chromedp.Evaluate[int](`(() => {
			const c = document.querySelector('[data-testid=pdf-canvas]');
			const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
			let n = 0;
			for (let i = 0; i < d.length; i += 4) if (d[i] < 100 && d[i+1] < 100) n++;
			return n;
		})()`)))
		if dark < 100 {
			t.Fatalf("the PDF canvas has %d dark pixels; want the text and rectangle drawn", dark)
		}
		p.Run("next page",
			chromedp.Click(chromedp.CSS(`[data-testid=pdf-next]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=pdf][data-rendered="2"]`)),
		)
		p.Shot("pdf")
		p.Run("close", chromedp.Click(chromedp.CSS(`[data-testid=viewer-close]`)), chromedp.WaitNotPresent(chromedp.CSS(`[data-testid=viewer]`)))
	})

	step("video", func(t *testing.T) {
		p.T = t
		p.Run("open the video",
			chromedp.Click(chromedp.CSS(row("clip.webm")+` [data-testid=row-open]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=viewer-video]`)),
			browsertest.WaitJS(`document.querySelector('video').readyState >= 1 && document.querySelector('video').duration > 3`),
		)
		var res []float64
		p.Run("play and seek to the middle",
			browsertest.JS(`const v = document.querySelector('video'); v.muted = true; await v.play()`),
			browsertest.JS(`const v = document.querySelector('video'); v.pause(); v.currentTime = v.duration / 2`),
			browsertest.WaitJS(`(() => { const v = document.querySelector('video'); return !v.seeking && v.readyState >= 2 })()`),
			browsertest.Get(&res, chromedp.Evaluate[[]float64](`(() => { const v = document.querySelector('video'); return [v.currentTime, v.duration, v.readyState] })()`)),
		)
		if len(res) != 3 || res[0] < res[1]/2-0.3 || res[0] > res[1]/2+0.3 || res[2] < 2 {
			t.Fatalf("video after the seek: currentTime, duration, readyState = %v; want the middle, ready", res)
		}
		p.Shot("video")
		p.Run("close", chromedp.Click(chromedp.CSS(`[data-testid=viewer-close]`)), chromedp.WaitNotPresent(chromedp.CSS(`[data-testid=viewer]`)))
	})

	var link string
	step("share", func(t *testing.T) {
		p.T = t
		p.Run("create a link with a password",
			chromedp.Click(chromedp.CSS(row("hello.txt")+` .col-size`)),
			chromedp.Click(chromedp.CSS(`[data-testid=btn-share]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-dialog]`)),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=share-password]`), "open-sesame"),
			chromedp.Click(chromedp.CSS(`[data-testid=dialog-share-create]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-link]`)),
			browsertest.Get(&link, chromedp.Value(chromedp.CSS(`[data-testid=share-link]`))),
		)
		if !strings.HasPrefix(link, base+"/s/") {
			t.Fatalf("share link %q; want %s/s/<id>", link, base)
		}
		p.Shot("share")
		p.Run("done", chromedp.Click(chromedp.CSS(`[data-testid=dialog-true]`)))

		// A fresh browser context: no session cookie.
		pub, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
		defer cancel()
		pp := &browsertest.Page{T: t, Ctx: pub, Con: &browsertest.Console{Ignore: expected}, Shots: shots, Name: "public"}
		browsertest.Watch(pub, pp.Con, "public")
		pp.Run("open the link logged out",
			chromedp.Navigate(link),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=unlock-form]`)),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=unlock-password]`), "open-sesame"),
			chromedp.Click(chromedp.CSS(`[data-testid=unlock-submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=shared-file] [data-testid=editor][data-state=ready]`)),
		)
		var text string
		pp.Run("read the shared text", browsertest.Get(&text, chromedp.Text(chromedp.CSS(`.cm-content`))))
		if !strings.Contains(text, "hello from the e2e test") {
			t.Fatalf("the share page shows %q; want the shared file's text", text)
		}
		pp.Shot("share-page")
		var me string
		pp.Run("no session there", browsertest.Get(&me, chromedp.Evaluate[string](`fetch('/api/auth/me').then(r => String(r.status))`, chromedp.EvalAwaitPromise)))
		pp.Con.Take() // that probe's 401 is the point
		if me != "401" {
			t.Fatalf("the logged-out context has a session (GET /api/auth/me = %s)", me)
		}
	})

	step("trash", func(t *testing.T) {
		p.T = t
		p.Run("delete with the Delete key",
			chromedp.Click(chromedp.CSS(row("hello.txt")+` .col-size`)),
			chromedp.KeyEvent("\x7f"),
			browsertest.WaitJS(`!document.querySelector('[data-testid=row][data-name="hello.txt"]')`),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=toast-action]`)),
		)
		if _, err := os.Stat(filepath.Join(srv.Root, "hello.txt")); err == nil {
			t.Fatal("hello.txt is still in place after the delete")
		}
		p.Shot("deleted")
		p.Run("restore from the trash page",
			chromedp.Click(chromedp.CSS(`[data-testid=nav-trash]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=trash-row][data-path="/hello.txt"]`)),
		)
		p.Shot("trash")
		p.Run("restore",
			chromedp.Click(chromedp.CSS(`[data-testid=trash-row][data-path="/hello.txt"] [data-testid=trash-restore]`)),
			browsertest.WaitJS(`!document.querySelector('[data-testid=trash-row]')`),
			chromedp.Click(chromedp.CSS(`[data-testid=nav-files]`)),
			chromedp.WaitVisible(chromedp.CSS(row("hello.txt"))),
		)
		got, err := os.ReadFile(filepath.Join(srv.Root, "hello.txt"))
		if err != nil || string(got) != "hello from the e2e test\n" {
			t.Fatalf("restored hello.txt = %q, %v", got, err)
		}
	})

	step("10k", func(t *testing.T) {
		p.T = t
		dir := filepath.Join(srv.Root, "many")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 10000; i++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%d.txt", i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		began := time.Now()
		var rendered int
		p.Run("open a folder of 10,000 files",
			// Made behind the app's back: the Files link shows it afresh.
			chromedp.Click(chromedp.CSS(`[data-testid=nav-files]`)),
			chromedp.WaitVisible(chromedp.CSS(row("many")+` [data-testid=row-open]`)),
			chromedp.Click(chromedp.CSS(row("many")+` [data-testid=row-open]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=list][data-count="10000"]`)),
			chromedp.WaitVisible(chromedp.CSS(row("file-1.txt"))),
			browsertest.Get(&rendered, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=row]').length`)),
		)
		took := time.Since(began)
		if rendered > 200 {
			t.Errorf("%d rows in the page for a folder of 10,000: the list is not virtualized", rendered)
		}
		p.Run("scroll to the end and filter",
			browsertest.JS(`const s = document.querySelector('[data-testid=list]'); s.scrollTop = s.scrollHeight`),
			chromedp.WaitVisible(chromedp.CSS(row("file-10000.txt"))),
			chromedp.SendKeys(chromedp.CSS(`[data-testid=filter]`), "file-9999"),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=list][data-count="1"]`)),
		)
		p.Shot("10k")
		t.Logf("10,000 entries listed in %v, %d rows rendered", took, rendered)
	})

	step("pages", func(t *testing.T) {
		p.T = t
		p.Run("health",
			chromedp.Click(chromedp.CSS(`[data-testid=nav-health]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=backend-row][data-up="0"]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=at-risk]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=health-headline][data-level=bad]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=by-redundancy]`)),
		)
		p.Shot("health")
		p.Run("shares", chromedp.Click(chromedp.CSS(`[data-testid=nav-shares]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-row][data-path="/hello.txt"]`)))
		p.Shot("shares")
		// A second session (another device): the page lists it and ends it.
		jar, _ := cookiejar.New(nil)
		other := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		res, err := other.Post(base+"/api/auth/login", "application/json", strings.NewReader(`{"user":"`+user+`","password":"`+password+`"}`))
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("a second login: %v %v", res, err)
		}
		res.Body.Close()
		p.Run("sessions: end the other one",
			chromedp.Click(chromedp.CSS(`[data-testid=nav-sessions]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=session-row][data-current="1"]`)),
			browsertest.WaitJS(`document.querySelectorAll('[data-testid=session-row]').length === 2`),
		)
		p.Shot("sessions")
		p.Run("revoke",
			chromedp.Click(chromedp.CSS(`[data-testid=session-row][data-current="0"] [data-testid=session-revoke]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=confirm-dialog]`)),
			chromedp.Click(chromedp.CSS(`[data-testid=dialog-true]`)),
			browsertest.WaitJS(`document.querySelectorAll('[data-testid=session-row]').length === 1`),
		)
		res, err = other.Get(base + "/api/auth/me")
		if err != nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the revoked session still answers: %v %v", res, err)
		}
		res.Body.Close()
		p.Run("empty the trash",
			chromedp.Click(chromedp.CSS(`[data-testid=nav-files]`)),
			chromedp.Click(chromedp.CSS(row("notes.md")+` .col-size`)),
			chromedp.Click(chromedp.CSS(`[data-testid=btn-delete]`)),
			browsertest.WaitJS(`!document.querySelector('[data-testid=row][data-name="notes.md"]')`),
			chromedp.Click(chromedp.CSS(`[data-testid=nav-trash]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=trash-row][data-path="/notes.md"]`)),
			chromedp.Click(chromedp.CSS(`[data-testid=trash-empty]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=empty-dialog]`)),
			chromedp.Click(chromedp.CSS(`[data-testid=dialog-true]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=trash-page] [data-testid=empty]`)),
		)
		var left []string
		filepath.WalkDir(srv.Root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "notes.md" {
				left = append(left, path)
			}
			return nil
		})
		if len(left) > 0 {
			t.Fatalf("after emptying the trash notes.md is still stored: %v", left)
		}
		p.Run("dark mode", chromedp.Click(chromedp.CSS(`[data-testid=nav-files]`)), chromedp.Click(chromedp.CSS(`[data-testid=theme-toggle]`)),
			browsertest.WaitJS(`document.documentElement.dataset.theme === 'dark'`))
		p.Shot("files-dark")
		p.Run("phone width: columns collapse, actions in a menu",
			chromedp.EmulateViewport(375, 740, chromedp.EmulateMobile),
			chromedp.Click(chromedp.CSS(row("paper.pdf")+` [data-testid=row-check]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=btn-actions]`)),
			chromedp.WaitNotVisible(chromedp.CSS(`.list-head .col-size`)),
			chromedp.Click(chromedp.CSS(`[data-testid=btn-actions]`)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=menu-rename]`)),
		)
		p.Shot("phone")
	})
	p.T = t
	p.Clean("the end")
}
