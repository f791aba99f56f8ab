// Package server puts the 0-db v2 wire protocol (RESP2, zdb.md §1–§6) in
// front of a zdb.Engine: one goroutine per connection, replies buffered and
// written once per pipelined batch, TCP_NODELAY on.
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"qss/internal/resp"
	"qss/zdb"
)

// Version is reported by INFO.
const Version = "2.0.7-go"

// Config configures a Server.
type Config struct {
	Engine *zdb.Engine
	// AdminPassword, when set, makes admin commands require AUTH. Without
	// it every client is admin (0-db's behaviour).
	AdminPassword string
	InstanceID    string
	Logger        *slog.Logger
	// OnStop is called when an admin sends STOP.
	OnStop func()
	// InFlight bounds the memory that requests in flight hold, across all
	// connections (memory.go); 0 means DefaultInFlight.
	InFlight int64
}

// Server serves the protocol on any number of listeners.
type Server struct {
	cfg  Config
	eng  *zdb.Engine
	log  *slog.Logger
	boot time.Time
	// instance is INFO's instance_id: a random number per boot, as in 0-db
	// (hooks get the tcp:// or unix:// address instead).
	instance uint32
	stats    stats

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*session]struct{}
	closing   bool
	done      chan struct{} // closed by Close: wakes blocked WAITs
	wg        sync.WaitGroup

	waiters waitRegistry
	access  sync.Map // *zdb.Namespace → *nsAccess
	mem     *memBudget
	bufs    *bufPool
}

type stats struct {
	clients      atomic.Uint64
	executed     atomic.Uint64
	failed       atomic.Uint64
	unauthorized atomic.Uint64
	rx, tx       atomic.Uint64
}

// New returns a server for cfg.Engine.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = DefaultInFlight
	}
	var id [4]byte
	rand.Read(id[:])
	return &Server{
		cfg: cfg, eng: cfg.Engine, log: cfg.Logger, boot: time.Now(),
		instance:  binary.LittleEndian.Uint32(id[:]),
		listeners: map[net.Listener]struct{}{}, conns: map[*session]struct{}{},
		done: make(chan struct{}),
		mem:  &memBudget{limit: cfg.InFlight},
		bufs: &bufPool{},
	}
}

// Serve accepts connections on l until Close. It returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
		}
		sess := s.newSession(c)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[sess] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			sess.serve()
			s.mu.Lock()
			delete(s.conns, sess)
			s.mu.Unlock()
		}()
	}
}

// Close stops the listeners and closes every connection, then waits for
// their goroutines (at most until ctx ends).
func (s *Server) Close(ctx context.Context) {
	s.mu.Lock()
	if !s.closing {
		close(s.done)
	}
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.conn.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// checkPassword compares in constant time.
func checkPassword(given, want string) bool {
	return subtle.ConstantTimeCompare([]byte(given), []byte(want)) == 1
}

// countingConn counts received bytes for INFO (replyWriter counts the
// sent ones).
type countingConn struct {
	net.Conn
	st *stats
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.st.rx.Add(uint64(n))
	return n, err
}

// session is one client connection.
type session struct {
	srv       *Server
	conn      net.Conn
	r         *resp.RequestReader
	w         *replyWriter
	ns        *zdb.Namespace
	writable  bool
	admin     bool
	challenge string
	// acc and the counters below record the access rules the session
	// entered its namespace under (see checkAccess).
	acc                    *nsAccess
	accPassword, accPublic uint64
	viaPublic              bool
	value                  []byte // reused GET buffer
	quit                   bool
}

// flush commits the session's writes, then sends the buffered replies
// (replyWriter): no write is acknowledged before it reached the files,
// and a write whose commit failed is answered with the error.
func (c *session) flush() error {
	return c.w.Flush()
}

const ioBuffer = 16 << 10

func (s *Server) newSession(c net.Conn) *session {
	s.stats.clients.Add(1)
	cc := countingConn{c, &s.stats}
	sess := &session{
		srv:   s,
		conn:  c,
		w:     newReplyWriter(c, &s.stats),
		admin: s.cfg.AdminPassword == "",
	}
	sess.r = resp.NewRequestReader(cc, ioBuffer, argAlloc{sess})
	sess.enter(s.eng.Namespace(zdb.DefaultNamespace), "")
	return sess
}

// enter makes ns the session's namespace; password is what the client gave.
func (c *session) enter(ns *zdb.Namespace, password string) {
	set := ns.Settings()
	writable := set.Password == "" || (password != "" && checkPassword(password, set.Password))
	c.enterWith(ns, writable, set.Password != "" && password == "")
}

// enterWith makes ns the session's namespace. viaPublic says the session
// entered a namespace with a password without giving it (read-only,
// because the namespace is public).
func (c *session) enterWith(ns *zdb.Namespace, writable, viaPublic bool) {
	c.ns, c.writable = ns, writable
	c.acc = c.srv.accessOf(ns)
	c.accPassword, c.accPublic = c.acc.password.Load(), c.acc.public.Load()
	c.viaPublic = viaPublic
}

// nsAccess counts the changes of a namespace's access rules, so that the
// sessions that entered under an older rule can be told apart.
type nsAccess struct {
	password atomic.Uint64 // NSSET password (set or cleared)
	public   atomic.Uint64 // NSSET public 0
}

func (s *Server) accessOf(ns *zdb.Namespace) *nsAccess {
	if a, ok := s.access.Load(ns); ok {
		return a.(*nsAccess)
	}
	a, _ := s.access.LoadOrStore(ns, &nsAccess{})
	return a.(*nsAccess)
}

// changed records a change of ns's password (or, with public, of its
// becoming private). The session that made it keeps its access: it knows
// the new rule.
func (a *nsAccess) changed(by *session, ns *zdb.Namespace, public bool) {
	keep := by.ns == ns && by.acc == a && by.checkAccess()
	if public {
		a.public.Add(1)
	} else {
		a.password.Add(1)
	}
	if keep {
		by.accPassword, by.accPublic = a.password.Load(), a.public.Load()
	}
}

// checkAccess reports whether the session's entry into its namespace still
// holds: it ends when the password changes, and, for a session that
// entered read-only through the public flag, when the namespace becomes
// private. Once ended it stays so until the next SELECT.
func (c *session) checkAccess() bool {
	if c.acc.password.Load() != c.accPassword || (c.viaPublic && c.acc.public.Load() != c.accPublic) {
		// The counters only grow: the mismatch lasts until enter resets them.
		return false
	}
	return true
}

func (c *session) serve() {
	defer c.conn.Close()
	defer c.r.Release()
	for !c.quit {
		args, err := c.r.ReadRequest()
		if err != nil {
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				c.srv.stats.failed.Add(1)
				c.w.Error(pe.Text)
				c.flush()
				if pe.Fatal {
					lingerClose(c.conn)
					return
				}
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.srv.log.Debug("connection read failed", "remote", c.conn.RemoteAddr().String(), "err", err)
			}
			c.flush()
			return
		}
		c.dispatch(args)
		// The arguments go back at once: an idle connection holds none.
		c.r.Release()
		if c.r.Buffered() == 0 {
			if err := c.flush(); err != nil {
				return
			}
		} else if c.w.err != nil {
			return
		}
	}
	c.flush()
}

// lingerClose ends a connection after a fatal protocol error without losing
// the error reply: closing a socket with unread input makes the kernel
// send a reset, which can discard the reply before the client reads it.
// The write side is shut first, then the input is drained for a moment.
func lingerClose(nc net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := nc.(closeWriter); ok && cw.CloseWrite() == nil {
		nc.SetReadDeadline(time.Now().Add(time.Second))
		io.CopyN(io.Discard, nc, 1<<20)
	}
	nc.Close()
}
