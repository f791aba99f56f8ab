package e2e

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cutProxy forwards TCP connections on loopback to the server. Armed with
// cutAfter, it drops every open connection once so many more bytes went
// to the server: a dropped network as a browser sees it.
type cutProxy struct {
	ln     net.Listener
	target string
	up     atomic.Int64 // bytes sent to the server so far
	cutAt  atomic.Int64 // cut when up reaches it; 0: not armed
	cuts   atomic.Int32

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cutAll()
	})
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

// cutAfter arms the proxy: it cuts once n more bytes went upstream.
func (p *cutProxy) cutAfter(n int64) { p.cutAt.Store(p.up.Load() + n) }

func (p *cutProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *cutProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.track(client, true)
		p.track(server, true)
		go func() {
			io.Copy(client, server)
			client.Close()
			p.track(client, false)
		}()
		go p.upstream(client, server)
	}
}

// upstream copies the browser's bytes to the server, counting them, and
// cuts every connection when the armed count is reached.
func (p *cutProxy) upstream(client, server net.Conn) {
	defer func() {
		server.Close()
		p.track(server, false)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			total := p.up.Add(int64(n))
			if at := p.cutAt.Load(); at > 0 && total >= at && p.cutAt.CompareAndSwap(at, 0) {
				p.cuts.Add(1)
				p.cutAll()
				return
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
