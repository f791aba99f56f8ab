package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/chromedp"

	"qss/internal/browsertest"
	"qss/zstor/zstortest"
)

// TestDashboardInBrowser: the health dashboard of a real mount in
// Chromium. With every backend up it says the data survives two more
// losses; with a backend stopped the page shows it down, in red, with the
// risk listed and one loss left, and the console stays clean throughout.
func TestDashboardInBrowser(t *testing.T) {
	addr := freePort(t)
	f := newFixture(t, fmt.Sprintf(`cache_size = "8M"
data_file_size = "1M"
rpo = "2s"
web = %q`, addr))
	const pw = "dashboard password"
	f.mustRun(strings.NewReader(pw+"\n"), "user", "add", "alice")
	f.mount()
	writeFile(t, filepath.Join(f.mnt, "data.bin"), zstortest.RandomBytes(1<<20))
	f.mustRun(nil, "sync")

	shots := browsertest.ShotsDir(t)
	p, cancel := browsertest.NewPage(t, browsertest.Start(t), shots, "qsfs")
	defer cancel()
	// Before login, the app asks whether a session exists: a 401, on purpose.
	p.Con.Ignore = func(e *cdplog.Entry) bool {
		return e.Source == cdplog.EntrySourceNetwork && strings.HasSuffix(e.URL, "/api/auth/me") && strings.Contains(e.Text, "401")
	}
	base := "http://" + addr
	p.Run("sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-user]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), pw),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=row][data-name="data.bin"]`)),
	)
	// The census behind "losses survivable" is up to 15 s old: the page
	// polls every 5 s.
	p.Run("every backend up",
		chromedp.Click(chromedp.CSS(`[data-testid=nav-health]`)),
		browsertest.WaitJS(`document.querySelectorAll('[data-testid=backend-row][data-up="1"]').length === 6`),
	)
	waitText(t, p, `[data-testid=losses]`, "2", 30*time.Second)
	p.Shot("health-ok")

	f.cl.Data[3].Stop()
	p.Run("a backend stopped",
		browsertest.WaitJS(`document.querySelectorAll('[data-testid=backend-row][data-up="0"]').length === 1`),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=at-risk]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=health-headline][data-level=bad]`)),
	)
	waitText(t, p, `[data-testid=losses]`, "1", 30*time.Second)
	p.Shot("health-backend-down")
	if testing.Verbose() {
		t.Logf("screenshots in %s", shots)
	}
}

// waitText waits until the element's text contains want.
func waitText(t *testing.T, p *browsertest.Page, sel, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var got string
	for time.Now().Before(deadline) {
		p.Run("read "+sel, browsertest.Get(&got, chromedp.Text(chromedp.CSS(sel))))
		if strings.Contains(got, want) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.Shot("timeout")
	t.Fatalf("%s says %q, want %q", sel, got, want)
}
