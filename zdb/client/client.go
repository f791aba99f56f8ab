// Package client is a client for 0-db, the append-only key-value server, and
// for this project's compatible zdb. It speaks RESP2 over TCP or a unix
// socket, keeps a pool of connections that are all authenticated and bound to
// one namespace, pipelines batches of commands, and maps the server's error
// replies to typed errors.
//
// A Client is safe for concurrent use. Every method takes a context: its
// deadline and cancellation interrupt network I/O, and a connection whose
// command was interrupted is closed rather than reused.
//
// Keys and values are binary-safe byte slices. A missing key is reported as
// ErrNotFound; other error replies are *ReplyError values that match the
// package's sentinels (ErrReadOnly, ErrNoSpace, …) under errors.Is.
package client

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"qss/internal/resp"
)

// Defaults for zero Options fields.
const (
	DefaultPoolSize    = 8
	DefaultDialTimeout = 5 * time.Second
	DefaultIOTimeout   = 30 * time.Second
)

// Limits the server enforces, checked by the client where breaking them
// would cost the connection.
const (
	MaxKeyLen       = 255             // longest key
	MaxNamespaceLen = 128             // longest namespace name
	MaxPasswordLen  = 255             // longest namespace password
	MaxPayload      = resp.MaxPayload // longest argument the server accepts (8 MiB)
	MaxMGetKeys     = 1023            // most keys in one MGET
)

// Options configure a Client.
type Options struct {
	// Addr is the server address: "host:port" for TCP, or "unix:///path"
	// or an absolute path for a unix socket. "tcp://host:port" is accepted
	// too.
	Addr string

	// Namespace is selected on every connection. Empty or "default" keeps
	// the connection on the default namespace (still selected with the
	// password when Password is set, as a --protect server requires).
	Namespace string

	// Password of the namespace. Without it a password-protected public
	// namespace is read-only and a private one cannot be selected.
	Password string

	// Secure selects the namespace with "SELECT ns SECURE hash" after
	// "AUTH SECURE CHALLENGE", so the password never crosses the network.
	Secure bool

	// AdminPassword, when set, authenticates every connection as admin
	// with AUTH SECURE (challenge and response); the password itself is
	// never sent.
	AdminPassword string

	// PoolSize bounds the number of open connections; callers wait for a
	// free one when all are busy. Zero means DefaultPoolSize.
	PoolSize int

	// DialTimeout bounds establishing a connection, including admin
	// authentication and namespace selection. Zero means
	// DefaultDialTimeout; negative means no limit beyond the context.
	DialTimeout time.Duration

	// IOTimeout bounds each command's network round trip (for a pipeline,
	// the wait for each successive reply). Zero means DefaultIOTimeout;
	// negative means no limit beyond the context.
	IOTimeout time.Duration

	// Dialer, if set, opens connections instead of dialling Addr, for
	// instance to reach an in-process server over net.Pipe. Addr is then
	// used only in error messages.
	Dialer func(ctx context.Context) (net.Conn, error)
}

// Client is a pool of connections to one namespace of one server.
type Client struct {
	opts    Options
	network string
	address string

	sem  chan struct{} // one token per open or opening connection
	done chan struct{} // closed by Close

	mu     sync.Mutex
	idle   []*conn
	closed bool

	dials    atomic.Uint64
	discards atomic.Uint64
}

// PoolStats describe the connection pool of a Client.
type PoolStats struct {
	Dials    uint64 // connections opened successfully so far
	Discards uint64 // connections closed because they broke or went stale
	Idle     int    // connections waiting in the pool
	InUse    int    // connections running a command
}

// New validates opts and returns a Client. It opens one connection before
// returning, so an unreachable server, a wrong password or a missing
// namespace is reported at once.
func New(ctx context.Context, opts Options) (*Client, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	network, address, err := parseAddr(opts.Addr)
	if err != nil {
		return nil, err
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = DefaultPoolSize
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.IOTimeout == 0 {
		opts.IOTimeout = DefaultIOTimeout
	}
	c := &Client{
		opts:    opts,
		network: network,
		address: address,
		sem:     make(chan struct{}, opts.PoolSize),
		done:    make(chan struct{}),
	}
	cn, err := c.get(ctx, "dial")
	if err != nil {
		return nil, err
	}
	c.put(cn, false)
	return c, nil
}

func (o *Options) validate() error {
	switch {
	case o.Addr == "" && o.Dialer == nil:
		return errors.New("zdb: Options.Addr is empty")
	case len(o.Namespace) > MaxNamespaceLen:
		return fmt.Errorf("zdb: namespace name longer than %d bytes", MaxNamespaceLen)
	case len(o.Password) > MaxPasswordLen:
		return fmt.Errorf("zdb: namespace password longer than %d bytes", MaxPasswordLen)
	case o.PoolSize < 0:
		return errors.New("zdb: Options.PoolSize is negative")
	}
	return nil
}

// parseAddr splits an Options.Addr into a network and an address for
// net.Dial.
func parseAddr(addr string) (network, address string, err error) {
	switch {
	case addr == "":
		return "", "", nil // custom Dialer
	case strings.HasPrefix(addr, "unix://"):
		p := strings.TrimPrefix(addr, "unix://")
		if p == "" {
			return "", "", fmt.Errorf("zdb: no socket path in address %q", addr)
		}
		return "unix", p, nil
	case strings.HasPrefix(addr, "/"):
		return "unix", addr, nil
	case strings.HasPrefix(addr, "tcp://"):
		addr = strings.TrimPrefix(addr, "tcp://")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("zdb: bad address %q: %v", addr, err)
	}
	return "tcp", addr, nil
}

// Addr returns the server address the client was created with.
func (c *Client) Addr() string { return c.opts.Addr }

// Namespace returns the namespace the client's connections select.
func (c *Client) Namespace() string {
	if c.opts.Namespace == "" {
		return "default"
	}
	return c.opts.Namespace
}

// Close closes the idle connections and makes further calls fail with
// ErrClosed. Commands already running finish, and their connections are
// closed when they return.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	idle := c.idle
	c.idle = nil
	close(c.done)
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
	return nil
}

// Stats returns the state of the connection pool.
func (c *Client) Stats() PoolStats {
	c.mu.Lock()
	idle := len(c.idle)
	c.mu.Unlock()
	return PoolStats{
		Dials:    c.dials.Load(),
		Discards: c.discards.Load(),
		Idle:     idle,
		InUse:    len(c.sem), // idle connections hold no token
	}
}

func (c *Client) opErr(op string, err error) error {
	addr := c.opts.Addr
	if addr == "" {
		addr = "custom-dialer"
	}
	return &OpError{Op: op, Addr: addr, Err: err}
}

// get takes a connection from the pool, dialling one when none is idle and
// the pool has room; it waits for a free slot otherwise. Errors are
// *OpError.
func (c *Client) get(ctx context.Context, op string) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, c.opErr(op, err)
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, c.opErr(op, ctx.Err())
	case <-c.done:
		return nil, c.opErr(op, ErrClosed)
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			<-c.sem
			return nil, c.opErr(op, ErrClosed)
		}
		n := len(c.idle)
		if n == 0 {
			c.mu.Unlock()
			break
		}
		cn := c.idle[n-1]
		c.idle[n-1] = nil
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		if connAlive(cn.nc) {
			return cn, nil
		}
		cn.nc.Close()
		c.discards.Add(1)
	}
	cn, err := c.dial(ctx, op)
	if err != nil {
		<-c.sem
		return nil, err
	}
	return cn, nil
}

// put returns a connection to the pool, or closes it when it is broken or
// the client is closed.
func (c *Client) put(cn *conn, broken bool) {
	broken = broken || cn.poisoned
	c.mu.Lock()
	if broken || c.closed {
		c.mu.Unlock()
		cn.nc.Close()
		if broken {
			c.discards.Add(1)
		}
	} else {
		c.idle = append(c.idle, cn)
		c.mu.Unlock()
	}
	<-c.sem
}

// dial opens and sets up one connection: admin authentication, then
// namespace selection. Errors are *OpError naming op (or AUTH or SELECT
// when setup fails).
func (c *Client) dial(ctx context.Context, op string) (*conn, error) {
	if c.opts.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.DialTimeout)
		defer cancel()
	}
	var nc net.Conn
	var err error
	if c.opts.Dialer != nil {
		nc, err = c.opts.Dialer(ctx)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, c.network, c.address)
	}
	if err != nil {
		if ce := ctx.Err(); ce != nil {
			err = fmt.Errorf("%w: %v", ce, err)
		}
		return nil, c.opErr(op, err)
	}
	cn := newConn(nc)
	if err := c.setup(ctx, cn); err != nil {
		nc.Close()
		return nil, err
	}
	c.dials.Add(1)
	return cn, nil
}

func (c *Client) setup(ctx context.Context, cn *conn) error {
	o := &c.opts
	if o.AdminPassword != "" {
		ch, err := c.challenge(ctx, cn)
		if err != nil {
			return err
		}
		if err := c.setupCmd(ctx, cn, "AUTH", []byte("AUTH"), []byte("SECURE"),
			[]byte(SecureHash(ch, o.AdminPassword))); err != nil {
			return err
		}
	}
	ns := c.Namespace()
	if ns == "default" && o.Password == "" {
		return nil
	}
	args := [][]byte{[]byte("SELECT"), []byte(ns)}
	switch {
	case o.Password == "":
	case o.Secure:
		ch, err := c.challenge(ctx, cn)
		if err != nil {
			return err
		}
		args = append(args, []byte("SECURE"), []byte(SecureHash(ch, o.Password)))
	default:
		args = append(args, []byte(o.Password))
	}
	return c.setupCmd(ctx, cn, "SELECT", args...)
}

// challenge asks for an AUTH SECURE challenge.
func (c *Client) challenge(ctx context.Context, cn *conn) (string, error) {
	v, err := cn.do(ctx, c.opts.IOTimeout, [][]byte{[]byte("AUTH"), []byte("SECURE"), []byte("CHALLENGE")})
	if err != nil {
		return "", c.opErr("AUTH", err)
	}
	switch v.Kind {
	case resp.KindError:
		return "", c.opErr("AUTH", &ReplyError{Text: string(v.Str)})
	case resp.KindSimple, resp.KindBulk:
		if len(v.Str) > 0 && !v.Nil {
			return string(v.Str), nil
		}
	}
	return "", c.opErr("AUTH", unexpectedReply("AUTH SECURE CHALLENGE", v))
}

// setupCmd runs a command that must answer +OK. The op name, not the
// arguments, goes into errors: the arguments may hold a password.
func (c *Client) setupCmd(ctx context.Context, cn *conn, op string, args ...[]byte) error {
	v, err := cn.do(ctx, c.opts.IOTimeout, args)
	if err != nil {
		return c.opErr(op, err)
	}
	if v.Kind == resp.KindError {
		return c.opErr(op, &ReplyError{Text: string(v.Str)})
	}
	if v.Kind != resp.KindSimple {
		return c.opErr(op, unexpectedReply(op, v))
	}
	return nil
}

// SecureHash returns sha1hex("<challenge>:<password>"), the response to an
// AUTH SECURE challenge used by AUTH SECURE and SELECT ... SECURE.
func SecureHash(challenge, password string) string {
	sum := sha1.Sum([]byte(challenge + ":" + password))
	return hex.EncodeToString(sum[:])
}

// call runs one command on a pooled connection. An error reply is returned
// both as the value and as a *ReplyError; other failures are *OpError.
func (c *Client) call(ctx context.Context, ioTimeout time.Duration, args [][]byte) (resp.Value, error) {
	op := opName(args)
	for _, a := range args {
		if len(a) > MaxPayload {
			// The server would answer "Payload too big" and drop the
			// connection, likely before reading our whole request.
			return resp.Value{Kind: resp.KindError, Str: []byte(ErrPayloadTooBig.Text)}, &ReplyError{Text: ErrPayloadTooBig.Text}
		}
	}
	cn, err := c.get(ctx, op)
	if err != nil {
		return resp.Value{}, err
	}
	v, err := cn.do(ctx, ioTimeout, args)
	c.put(cn, err != nil || v.Kind == resp.KindError && fatalReply(string(v.Str)))
	if err != nil {
		return resp.Value{}, c.opErr(op, err)
	}
	if v.Kind == resp.KindError {
		return v, &ReplyError{Text: string(v.Str)}
	}
	return v, nil
}

// Do sends one command and returns its reply. An error reply is returned as
// the Value (of resp.KindError) and also as a *ReplyError; a network failure
// is an *OpError with a zero Value.
func (c *Client) Do(ctx context.Context, args ...[]byte) (resp.Value, error) {
	return c.call(ctx, c.opts.IOTimeout, args)
}

// opName is the command name for error messages: the first argument, upper
// case, when it looks like a command name.
func opName(args [][]byte) string {
	if len(args) == 0 || len(args[0]) == 0 || len(args[0]) > 16 {
		return "?"
	}
	for _, b := range args[0] {
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z') {
			return "?"
		}
	}
	return strings.ToUpper(string(args[0]))
}

func unexpectedReply(cmd string, v resp.Value) error {
	s := v.String()
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return fmt.Errorf("%w to %s: %s", ErrUnexpectedReply, cmd, s)
}

func itoa(n int) string { return strconv.Itoa(n) }
