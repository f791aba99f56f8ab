package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"qss/internal/browsertest"
)

// BenchmarkFirstRender10k is the time from navigating to a folder of
// 10,000 files to its first rows on screen, in Chromium, with a session:
// the listing request, its JSON, and the first render of the virtualized
// list. Run: go test -run '^$' -bench FirstRender10k -benchtime 10x ./web/e2e
func BenchmarkFirstRender10k(b *testing.B) {
	srv := startServer(b)
	dir := filepath.Join(srv.Root, "many")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= 10000; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%05d.txt", i)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	tab, cancel := chromedp.NewContext(browsertest.Start(b))
	defer cancel()
	ctx, cancelT := context.WithTimeout(tab, 60*time.Second)
	defer cancelT()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-form]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-user]`), user),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=login-password]`), password),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=browser]`)),
	); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		// A fresh page load each time: nothing of the listing is cached.
		b.StopTimer()
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/#/"), chromedp.WaitVisible(chromedp.CSS(row("many")))); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := chromedp.Do(ctx,
			chromedp.Navigate(fmt.Sprintf("%s/?r=%d#/files/many", srv.URL, i)),
			chromedp.WaitVisible(chromedp.CSS(`[data-testid=list][data-count="10000"]`)),
			chromedp.WaitVisible(chromedp.CSS(row("file-00001.txt"))),
		); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var rows int
	chromedp.Do(ctx, browsertest.Get(&rows, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid=row]').length`)))
	if rows == 0 || rows > 200 {
		b.Fatalf("%d rows in the page", rows)
	}
}
