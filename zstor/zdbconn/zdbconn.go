// Package zdbconn is zstor's handle on one zdb namespace, shared by the data
// backends (zstor/backend) and the zdb metadata store (zstor/meta): a
// zdb/client pool created lazily on first use, re-created after failures,
// and skipped for an exponential back-off after each one.
//
// Why one handle for both: the two used to have their own, and the data
// backends' held a mutex across the dial, so that a slow or blackholed
// server stalled every caller that merely asked whether it was down. Here no
// lock is ever held across network I/O: one caller dials (single flight)
// while the others wait on a channel, each bounded by its own context, and
// state queries (Down, Close) never wait for a dial.
//
// Back-off: after a failure the handle refuses calls at once (ErrDown) for
// RetryMin, doubling with every further consecutive failure up to RetryMax;
// the first success resets it. A probe (Client with probe set, as health
// checks use) ignores the back-off, so a server that came back is seen at the
// next probe. An error reply from the server (a missing key, a full or
// read-only namespace) proves the server reachable and counts as a success;
// a call cancelled by its caller says nothing about the server and counts as
// neither.
package zdbconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"qss/zdb/client"
)

// Defaults for zero Options fields.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = 30 * time.Second
)

// ErrDown is wrapped by the errors of calls refused during a back-off.
var ErrDown = errors.New("zdb backend is down")

// DownError is the error of a call refused during a back-off: it wraps
// ErrDown and the failure that started the back-off.
type DownError struct {
	Name  string
	Until time.Time
	Cause error
}

func (e *DownError) Error() string {
	return fmt.Sprintf("%s: %v, retrying in %v (last error: %v)", e.Name, ErrDown,
		max(time.Until(e.Until), 0).Round(time.Millisecond), e.Cause)
}

// Unwrap returns ErrDown and the cause, so that errors.Is matches both.
func (e *DownError) Unwrap() []error { return []error{ErrDown, e.Cause} }

// Options configure a Conn.
type Options struct {
	// Client is passed to client.New (address, namespace, password,
	// pool size, dial and I/O timeouts).
	Client client.Options
	// Name identifies the backend in errors and logs (no password).
	Name string
	// RetryMin is the pause after a first failure; 0 = DefaultRetryMin,
	// negative = never pause (every call tries the server).
	RetryMin time.Duration
	// RetryMax caps the doubling pause; 0 = DefaultRetryMax.
	RetryMax time.Duration
	// Check, when set, runs on every new client before it is used (for
	// instance to check the namespace's mode); an error fails the
	// connection attempt and counts as a failure.
	Check func(context.Context, *client.Client) error
	// Logger receives state changes (down, up again); nil = slog.Default().
	Logger *slog.Logger
	// OnDown, when set, is called (from the failing call's goroutine,
	// with no lock held) when a failure starts a back-off after a
	// success or at the start: a monitor can check at once instead of at
	// its next round. It must not block.
	OnDown func(err error)
}

// Conn is a lazy, reconnecting handle on one zdb namespace. Safe for
// concurrent use.
type Conn struct {
	opts Options

	mu         sync.Mutex
	cl         *client.Client
	connecting chan struct{} // closed when the dial in progress ends
	closed     bool
	fails      int // consecutive failures
	downUntil  time.Time
	lastErr    error
}

// New returns a Conn; it does not dial.
func New(opts Options) *Conn {
	if opts.RetryMin == 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = DefaultRetryMax
	}
	opts.RetryMax = max(opts.RetryMax, opts.RetryMin)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Name == "" {
		opts.Name = opts.Client.Addr + "/" + opts.Client.Namespace
	}
	return &Conn{opts: opts}
}

// SetOnDown sets Options.OnDown after New (for callers that build the
// callback from the object that holds the Conn). Call it before first use.
func (c *Conn) SetOnDown(fn func(err error)) {
	c.mu.Lock()
	c.opts.OnDown = fn
	c.mu.Unlock()
}

// Name is the backend's name as given in Options.
func (c *Conn) Name() string { return c.opts.Name }

// Client returns the connected client, dialling when there is none. During
// a back-off it fails at once with a *DownError, unless probe is set. When
// another caller is already dialling, it waits for that dial (or for ctx)
// instead of dialling again.
func (c *Conn) Client(ctx context.Context, probe bool) (*client.Client, error) {
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return nil, fmt.Errorf("%s: %w", c.opts.Name, client.ErrClosed)
		case !probe && time.Now().Before(c.downUntil):
			err := &DownError{Name: c.opts.Name, Until: c.downUntil, Cause: c.lastErr}
			c.mu.Unlock()
			return nil, err
		case c.cl != nil:
			cl := c.cl
			c.mu.Unlock()
			return cl, nil
		case c.connecting != nil:
			ch := c.connecting
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("%s: waiting for the connection: %w", c.opts.Name, ctx.Err())
			}
		}
		ch := make(chan struct{})
		c.connecting = ch
		c.mu.Unlock()

		cl, err := c.connect(ctx)

		c.mu.Lock()
		c.connecting = nil
		if err == nil && c.closed {
			cl.Close()
			err = client.ErrClosed
		}
		var note func()
		if err == nil {
			c.cl = cl
		} else {
			err = fmt.Errorf("%s: connect: %w", c.opts.Name, err)
			// The back-off is in place before the waiters wake up, so
			// that they fail fast instead of dialling again.
			note = c.noteLocked(ctx, err)
		}
		close(ch)
		c.mu.Unlock()
		if note != nil {
			note()
		}
		if err != nil {
			return nil, err
		}
		return cl, nil
	}
}

func (c *Conn) connect(ctx context.Context) (*client.Client, error) {
	cl, err := client.New(ctx, c.opts.Client)
	if err != nil {
		return nil, err
	}
	if c.opts.Check != nil {
		if err := c.opts.Check(ctx, cl); err != nil {
			cl.Close()
			return nil, err
		}
	}
	return cl, nil
}

// Do runs fn with the client (see Client) and reports its outcome.
func (c *Conn) Do(ctx context.Context, probe bool, fn func(context.Context, *client.Client) error) error {
	cl, err := c.Client(ctx, probe)
	if err != nil {
		return err
	}
	err = fn(ctx, cl)
	c.Report(ctx, err)
	return err
}

// Reachable reports whether err proves the server reachable: nil, or an
// error reply from it (a missing key, a full or read-only namespace).
func Reachable(err error) bool {
	if err == nil {
		return true
	}
	var oe *client.OpError
	if errors.As(err, &oe) {
		return false
	}
	var re *client.ReplyError
	return errors.As(err, &re) || errors.Is(err, client.ErrNotFound)
}

// Report updates the back-off after a call made under ctx that ended with
// err. A refused call (ErrDown), a closed handle and a call that ctx
// cancelled change nothing; a call that ran out of time counts as a
// failure.
func (c *Conn) Report(ctx context.Context, err error) {
	c.mu.Lock()
	note := c.noteLocked(ctx, err)
	c.mu.Unlock()
	if note != nil {
		note()
	}
}

// noteLocked updates the back-off state (c.mu held) and returns what to
// log once the lock is released (nil: nothing).
func (c *Conn) noteLocked(ctx context.Context, err error) func() {
	switch {
	case errors.Is(err, ErrDown), errors.Is(err, client.ErrClosed):
		return nil
	case err != nil && (errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled)):
		return nil
	}
	log := c.opts.Logger
	if Reachable(err) {
		wasDown := c.fails > 0
		c.fails, c.downUntil, c.lastErr = 0, time.Time{}, nil
		if !wasDown {
			return nil
		}
		return func() { log.Info("zdb backend reachable again", slog.String("backend", c.opts.Name)) }
	}
	c.fails++
	delay := time.Duration(0)
	if c.opts.RetryMin > 0 {
		delay = c.opts.RetryMin
		for i := 1; i < c.fails && delay < c.opts.RetryMax; i++ {
			delay *= 2
		}
		delay = min(delay, c.opts.RetryMax)
		c.downUntil = time.Now().Add(delay)
	}
	c.lastErr = err
	attrs := []any{slog.String("backend", c.opts.Name), slog.String("err", err.Error()), slog.Duration("retry_in", delay)}
	if c.fails == 1 {
		onDown := c.opts.OnDown
		return func() {
			log.Warn("zdb backend failed, retrying later", attrs...)
			if onDown != nil {
				onDown(err)
			}
		}
	}
	return func() { log.Debug("zdb backend still failing", attrs...) }
}

// Down reports whether the handle is in a back-off after a failure. It
// never waits for a dial in progress.
func (c *Conn) Down() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Before(c.downUntil)
}

// LastError is the failure that started the current back-off (nil when
// none).
func (c *Conn) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fails == 0 {
		return nil
	}
	return c.lastErr
}

// Close closes the client and makes further calls fail with
// client.ErrClosed. A dial in progress is closed when it ends.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	cl := c.cl
	c.cl = nil
	c.mu.Unlock()
	if cl != nil {
		return cl.Close()
	}
	return nil
}
