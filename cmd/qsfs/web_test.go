package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qss/web/health"
	"qss/zstor/zstortest"
)

// webClient is a logged-in client of a mount's web interface.
type webClient struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func (w *webClient) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if w.csrf != "" {
		req.Header.Set("X-CSRF-Token", w.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestWebOverTheMount: the web interface of a real mount. An upload lands
// in the mount, evicted files show as remote-only and download intact,
// the dashboard sees two backends go and counts the losses the data still
// survives, and an idle web interface does not keep `umount` from working.
func TestWebOverTheMount(t *testing.T) {
	addr := freePort(t)
	f := newFixture(t, fmt.Sprintf(`cache_size = "4M"
rpo = "2s"
data_file_size = "1M"
web = %q`, addr))
	const pw = "web test password"
	f.mustRun(strings.NewReader(pw+"\n"), "user", "add", "alice")
	p := f.mount()
	jar, _ := cookiejar.New(nil)
	w := &webClient{t: t, base: "http://" + addr, c: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
	resp, b := w.do("POST", "/api/auth/login", strings.NewReader(`{"user":"alice","password":"`+pw+`"}`))
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s\n%s", resp.StatusCode, b, p.log)
	}
	var me struct{ CSRF string }
	json.Unmarshal(b, &me)
	w.csrf = me.CSRF

	// An upload through tus lands in the mount.
	data := zstortest.RandomBytes(3 << 20)
	meta := "filename " + base64.StdEncoding.EncodeToString([]byte("upload.bin")) + ",dir " + base64.StdEncoding.EncodeToString([]byte("/"))
	resp, b = w.do("POST", "/api/upload/", nil, "Tus-Resumable", "1.0.0", "Upload-Length", fmt.Sprint(len(data)), "Upload-Metadata", meta)
	if resp.StatusCode != 201 {
		t.Fatalf("tus create: %d %s", resp.StatusCode, b)
	}
	loc := strings.TrimPrefix(resp.Header.Get("Location"), w.base)
	resp, b = w.do("PATCH", loc, bytes.NewReader(data), "Tus-Resumable", "1.0.0", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream")
	if resp.StatusCode != 204 || resp.Header.Get("Qsfs-Path") != "/upload.bin" {
		t.Fatalf("tus patch: %d %s %q", resp.StatusCode, b, resp.Header.Get("Qsfs-Path"))
	}
	checkFile(t, filepath.Join(f.mnt, "upload.bin"), data)

	// Three times the cache through the mount: the upload is evicted.
	for i := range 12 {
		writeFile(t, filepath.Join(f.mnt, fmt.Sprintf("f%02d", i)), zstortest.RandomBytes(1<<20))
	}
	f.mustRun(nil, "sync")
	var remote bool
	deadline := time.Now().Add(30 * time.Second)
	for !remote && time.Now().Before(deadline) {
		_, b = w.do("GET", "/api/files/list?path=/", nil)
		var l struct {
			Entries []struct {
				Name   string
				Remote *bool
			}
		}
		json.Unmarshal(b, &l)
		for _, e := range l.Entries {
			if e.Name == "upload.bin" && e.Remote != nil && *e.Remote {
				remote = true
			}
		}
		if !remote {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !remote {
		t.Fatalf("upload.bin never listed as remote-only: %s", b)
	}
	if resp, b = w.do("GET", "/api/files/download?path=/upload.bin", nil); resp.StatusCode != 200 || !bytes.Equal(b, data) {
		t.Fatalf("download of the evicted upload: %d, %d bytes, equal %v", resp.StatusCode, len(b), bytes.Equal(b, data))
	}

	// The dashboard: every backend up and two losses survivable, then two
	// backends stopped.
	rep := w.health()
	for deadline := time.Now().Add(30 * time.Second); rep.LossesSurvivable != 2 && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond) // the census is up to 15 s old
		rep = w.health()
	}
	if len(rep.Status.Backends) != 6 || rep.LossesSurvivable != 2 || rep.History == nil {
		t.Fatalf("health with every backend up: %d backends, %d losses survivable, history %d", len(rep.Status.Backends), rep.LossesSurvivable, len(rep.History))
	}
	f.cl.Data[2].Stop()
	f.cl.Data[5].Stop()
	deadline = time.Now().Add(40 * time.Second)
	for {
		rep = w.health()
		down := 0
		for _, b := range rep.Status.Backends {
			if !b.Reachable {
				down++
			}
		}
		if down == 2 && rep.LossesSurvivable == 0 && len(rep.Status.AtRisk) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health with two backends down: %d down, %d losses survivable, at risk %q", down, rep.LossesSurvivable, rep.Status.AtRisk)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// umount with the web interface idle: qsfs stops cleanly.
	if out, err := exec.Command("umount", f.mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount with the web interface idle: %v %s", err, out)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("qsfs after umount: %v\n%s", p.err, p.log)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("qsfs did not stop within 60 s of umount\n%s", p.log)
	}
}

func (w *webClient) health() health.Report {
	w.t.Helper()
	resp, b := w.do("GET", "/api/health", nil)
	if resp.StatusCode != 200 {
		w.t.Fatalf("health: %d %s", resp.StatusCode, b)
	}
	var rep health.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		w.t.Fatal(err)
	}
	return rep
}
