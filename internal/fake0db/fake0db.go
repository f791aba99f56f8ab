// Package fake0db is a stand-in for the C 0-db v2 in tests: a small
// in-memory RESP server that identifies itself as 0-db and has 0-db's
// pipelining stall, so that clients can be tested against that behaviour
// without the C server. It serves SELECT, NSNEW, INFO, PING, GET, SET,
// DEL and EXISTS; anything else gets an error reply.
package fake0db

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"qss/internal/resp"
)

// Server is a small RESP server that behaves like the C 0-db v2.0.x where
// zdbfs meets it: it identifies itself as 0-db in INFO, serves SELECT, GET,
// SET, DEL and EXISTS from memory, and has 0-db's pipelining stall. 0-db
// reads a connection once per edge-triggered wake-up into an 8 KiB buffer;
// when a read fills that buffer and it ends exactly at a request boundary,
// 0-db answers those requests and waits for the next wake-up, which never
// comes while the client, its requests sent, waits for replies. The fake
// does the same: its reads take at most 8 KiB, and after a read that filled
// its buffer and ended at a request boundary, if more data is already
// waiting, it answers nothing more on that connection.
//
// Freeze makes it a server that accepts and reads but never answers: a
// zdb that hangs.
type Server struct {
	ln     net.Listener
	mu     sync.Mutex
	ns     map[string]map[string][]byte
	frozen atomic.Bool
	stalls atomic.Int64 // connections stalled
	wg     sync.WaitGroup
	cmu    sync.Mutex
	conns  map[net.Conn]bool
}

// Start starts a server on a loopback port; it stops when the test ends.
func Start(t *testing.T) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Server{ln: ln, ns: map[string]map[string][]byte{}, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

// Addr is the server's host:port.
func (f *Server) Addr() string { return f.ln.Addr().String() }

// Port is the server's port.
func (f *Server) Port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// Freeze makes the server hang: it goes on reading, and answers nothing.
func (f *Server) Freeze() { f.frozen.Store(true) }

// Stalls is the number of connections stalled the way 0-db stalls them.
func (f *Server) Stalls() int64 { return f.stalls.Load() }

func (f *Server) close() {
	f.ln.Close()
	f.cmu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.cmu.Unlock()
	f.wg.Wait()
}

func (f *Server) accept() {
	defer f.wg.Done()
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.cmu.Lock()
		f.conns[nc] = true
		f.cmu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(nc)
			nc.Close()
			f.cmu.Lock()
			delete(f.conns, nc)
			f.cmu.Unlock()
		}()
	}
}

// edgeReader is 0-db's socket read: at most 8 KiB at a time, remembering
// whether the last read filled the space it was given.
type edgeReader struct {
	f    *Server
	nc   net.Conn
	full bool
}

const fakeReadBuf = 8 << 10

func (r *edgeReader) Read(p []byte) (int, error) {
	p = p[:min(len(p), fakeReadBuf)]
	n, err := r.nc.Read(p)
	if r.f.frozen.Load() {
		io.Copy(io.Discard, r.nc) // a hung server: reads, never answers
		return 0, io.EOF
	}
	r.full = n == len(p)
	return n, err
}

// pending reports whether request bytes already wait in the socket.
func pending(nc net.Conn) bool {
	nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	defer nc.SetReadDeadline(time.Time{})
	var b [1]byte
	n, _ := nc.Read(b[:])
	return n > 0
}

func (f *Server) serve(nc net.Conn) {
	er := &edgeReader{f: f, nc: nc}
	rr := resp.NewRequestReader(er, fakeReadBuf, nil)
	w := resp.NewWriter(nc, 64<<10)
	ns := "default"
	for {
		args, err := rr.ReadRequest()
		if err != nil {
			return
		}
		f.do(w, &ns, args)
		// Data already waiting before the replies go out was there when
		// the buffer was read (a client waiting for these replies sends
		// nothing new): edge-triggered, 0-db is not woken for it again.
		stall := rr.Buffered() == 0 && er.full && pending(nc)
		if w.Flush() != nil {
			return
		}
		if stall {
			f.stalls.Add(1)
			io.Copy(io.Discard, nc)
			return
		}
	}
}

func (f *Server) do(w *resp.Writer, ns *string, args [][]byte) {
	cmd := strings.ToUpper(string(args[0]))
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.ns[*ns]
	if m == nil {
		m = map[string][]byte{}
		f.ns[*ns] = m
	}
	switch {
	case cmd == "PING":
		w.Simple("PONG")
	case cmd == "INFO":
		w.BulkString("# server\nserver_name: 0-db (zdb)\nserver_revision: v2.0.8 @ main\nengine_revision: v2.0.8\n")
	case cmd == "SELECT" && len(args) >= 2:
		*ns = string(args[1])
		w.Simple("OK")
	case cmd == "NSNEW":
		w.Simple("OK")
	case cmd == "GET" && len(args) == 2:
		if v, ok := m[string(args[1])]; ok {
			w.Bulk(v)
		} else {
			w.Nil()
		}
	case cmd == "SET" && len(args) == 3:
		m[string(args[1])] = bytes.Clone(args[2])
		w.Bulk(args[1])
	case cmd == "DEL" && len(args) == 2:
		if _, ok := m[string(args[1])]; !ok {
			w.Error("Key not found")
			return
		}
		delete(m, string(args[1]))
		w.Simple("OK")
	case cmd == "EXISTS" && len(args) == 2:
		if _, ok := m[string(args[1])]; ok {
			w.Int(1)
		} else {
			w.Int(0)
		}
	default:
		w.Error("Command not supported")
	}
}
