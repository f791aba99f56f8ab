// Package browsertest drives Debian's Chromium for the end-to-end tests
// of the web interface (chromedp): it starts the browser with the flags
// this machine needs, records what a page reports as wrong (console
// errors and warnings, exceptions, error log entries) so that a test can
// fail on it, and takes screenshots.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Chromium is Debian's chromium (apt-get install -y chromium).
const Chromium = "/usr/bin/chromium"

// NewPage opens a tab in the browser ctx (Start), watching its console.
func NewPage(t *testing.T, browser context.Context, shots, name string) (*Page, context.CancelFunc) {
	tab, cancel := chromedp.NewContext(browser)
	p := &Page{T: t, Ctx: tab, Con: &Console{}, Shots: shots, Name: name}
	Watch(tab, p.Con, name)
	return p, cancel
}

// Console collects what a Page reports as wrong.
type Console struct {
	// Ignore, when set, drops log entries a test causes on purpose.
	Ignore func(*cdplog.Entry) bool

	mu   sync.Mutex
	errs []string
}

func (c *Console) ignored(e *cdplog.Entry) bool { return c.Ignore != nil && c.Ignore(e) }

// Add records a problem.
func (c *Console) Add(s string) {
	c.mu.Lock()
	c.errs = append(c.errs, s)
	c.mu.Unlock()
}

// Take returns the problems recorded since the last Take.
func (c *Console) Take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.errs
	c.errs = nil
	return e
}

// Watch records console errors and warnings, exceptions and error log
// entries of the tab ctx.
func Watch(ctx context.Context, c *Console, tab string) {
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					if a.Value != nil {
						parts = append(parts, string(a.Value))
					} else {
						parts = append(parts, a.Description)
					}
				}
				c.Add(fmt.Sprintf("%s: Console.%s: %s", tab, ev.Type, strings.Join(parts, " ")))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			c.Add(fmt.Sprintf("%s: exception: %s (%s:%d)", tab, msg, d.URL, d.LineNumber))
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError && !c.ignored(ev.Entry) {
				c.Add(fmt.Sprintf("%s: log %s: %s (%s)", tab, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}); err != nil {
		c.Add(fmt.Sprintf("%s: listen to the Console: %v", tab, err))
	}
}

// ShotsDir is where screenshots go: $E2E_SHOTS when set, else a
// temporary directory of the test.
func ShotsDir(t testing.TB) string {
	if d := os.Getenv("E2E_SHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// Start starts Chromium with the flags the project uses.
func Start(t testing.TB) context.Context {
	t.Helper()
	if _, err := os.Stat(Chromium); err != nil {
		t.Fatalf("%s is missing: install the Debian package Chromium (apt-get install -y Chromium)", Chromium)
	}
	if _, err := exec.LookPath(Chromium); err != nil {
		t.Fatalf("%s cannot run (%v): reinstall the Debian package Chromium", Chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		// Chromium leaves a directory in TMPDIR per run: keep it in the
		// test's own temporary directory, which the test removes.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 860),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v (is the Debian package Chromium installed and working?)", Chromium, err)
	}
	return bctx
}

// Page wraps one tab: its Console, its screenshots and the helpers the
// steps use.
type Page struct {
	T     *testing.T
	Ctx   context.Context
	Con   *Console
	Shots string // directory of the screenshots
	Name  string // the tab's name in messages and screenshot files
}

// Run runs actions (30 s at most); on failure it takes a screenshot and
// fails the test. Then it fails the test on anything the console
// reported.
func (p *Page) Run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.Shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		p.T.Fatalf("%s: %s: %v", p.Name, what, err)
	}
	p.Clean(what)
}

// Clean fails the test on anything the Console reported so far.
func (p *Page) Clean(when string) {
	p.T.Helper()
	if errs := p.Con.Take(); len(errs) > 0 {
		p.T.Errorf("Console reported problems by %q:\n  %s", when, strings.Join(errs, "\n  "))
	}
}

// Shot saves a screenshot as <Shots>/<Name>-<name>.png.
func (p *Page) Shot(name string) {
	ctx, cancel := context.WithTimeout(p.Ctx, 10*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.T.Logf("screenshot %s: %v", name, err)
		return
	}
	f := filepath.Join(p.Shots, p.Name+"-"+name+".png")
	if err := os.WriteFile(f, buf, 0o644); err != nil {
		p.T.Logf("screenshot %s: %v", name, err)
	}
}

// WaitJS waits until the expression is true.
func WaitJS(expr string) chromedp.Action[chromedp.Void] {
	return Get(new(bool), chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
}

// Get runs a, an action that returns a value, and stores the value in *v.
func Get[T any](v *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		r, err := a(ctx, t)
		if err == nil {
			*v = r
		}
		return chromedp.Void{}, err
	}
}

// JS runs statements in the Page, in an async function (await works).
func JS(stmts string) chromedp.Action[chromedp.Void] {
	return Get(new(bool), chromedp.Evaluate[bool]("(async () => { "+stmts+"; return true })()", chromedp.EvalAwaitPromise))
}
