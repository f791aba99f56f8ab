package server

import (
	"errors"
	"math/bits"
	"sync"
	"syscall"

	"qss/internal/resp"
)

// Memory that requests in flight may hold.
//
// Every long request argument above resp.InlineArg bytes (at most one per
// request: resp.LongArg) and every payload above directBulk that a reply
// carries (GET, MGET one value at a time, CHECK, HISTORY, DATA RAW) is
// taken from one budget shared by all connections (--inflight). When the
// budget is spent, a connection that needs more first sends the replies it
// has waiting, then is not read until memory frees: backpressure, in
// arrival order. A request that alone needs more than the whole budget is
// answered errTooLarge. A connection holds at most one such buffer at a
// time and never waits while holding one, so waiting cannot deadlock.
//
// What the budget does not count is bounded per connection: the read
// buffer (16 KiB), the reply buffer (flushed past 64 KiB, dropped once
// sent when past 16 KiB), a request's short arguments (at most 1024 x 257
// bytes, dropped after the request when past 32 KiB) and a value of up to
// 16 KiB kept for reuse.

// DefaultInFlight is the budget when Config.InFlight is 0.
const DefaultInFlight = 256 << 20

const errTooLarge = "Request too large for this server's memory budget (--inflight)"

var (
	errTooLargeRequest = &resp.ProtocolError{Text: errTooLarge}
	errClosing         = errors.New("server closing")
)

// memBudget hands out bytes of the budget, first come first served.
type memBudget struct {
	limit int64
	mu    sync.Mutex
	used  int64
	queue []*memWaiter
}

type memWaiter struct {
	n       int64
	ready   chan struct{}
	granted bool
}

func (b *memBudget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) > 0 || b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// acquire waits for n bytes (n <= limit) until done is closed.
func (b *memBudget) acquire(n int64, done <-chan struct{}) error {
	b.mu.Lock()
	if len(b.queue) == 0 && b.used+n <= b.limit {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &memWaiter{n: n, ready: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-done:
		b.mu.Lock()
		if w.granted {
			b.used -= n
		} else {
			for i, q := range b.queue {
				if q == w {
					b.queue = append(b.queue[:i], b.queue[i+1:]...)
					break
				}
			}
		}
		b.grantLocked()
		b.mu.Unlock()
		return errClosing
	}
}

// force takes n bytes without waiting, past the limit if need be.
func (b *memBudget) force(n int64) {
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
}

func (b *memBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *memBudget) grantLocked() {
	for len(b.queue) > 0 && b.used+b.queue[0].n <= b.limit {
		w := b.queue[0]
		b.queue = b.queue[1:]
		b.used += w.n
		w.granted = true
		close(w.ready)
	}
}

// bufPool provides the budget's buffers outside the Go heap (anonymous
// mappings), so that their memory goes back to the system when they are
// freed, not when the garbage collector and the scavenger get to it.
// Sizes are powers of two from 32 KiB; freed buffers of up to 1 MiB are
// kept for reuse, 8 MiB of them in all.
type bufPool struct {
	mu     sync.Mutex
	free   [numClasses][][]byte
	cached int
}

const (
	minClassShift = 15 // 32 KiB
	maxClassShift = 23 // 8 MiB, resp.MaxPayload
	numClasses    = maxClassShift - minClassShift + 1
	maxCachedSize = 1 << 20
	maxCached     = 8 << 20
)

func sizeClass(n int) int {
	return max(bits.Len(uint(n-1)), minClassShift) - minClassShift
}

// get returns a buffer of length n (at most resp.MaxPayload).
func (p *bufPool) get(n int) ([]byte, error) {
	c := sizeClass(n)
	size := 1 << (c + minClassShift)
	if size <= maxCachedSize {
		p.mu.Lock()
		if k := len(p.free[c]); k > 0 {
			b := p.free[c][k-1]
			p.free[c] = p.free[c][:k-1]
			p.cached -= size
			p.mu.Unlock()
			return b[:n], nil
		}
		p.mu.Unlock()
	}
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, err
	}
	return b[:n], nil
}

// put takes back a buffer from get; nothing may use it afterwards.
func (p *bufPool) put(b []byte) {
	b = b[:cap(b)]
	size := len(b)
	if size <= maxCachedSize {
		p.mu.Lock()
		if p.cached+size <= maxCached {
			c := sizeClass(size)
			p.free[c] = append(p.free[c], b)
			p.cached += size
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	syscall.Munmap(b)
}

// reserve takes n bytes of the budget for the session. When the budget is
// spent, the replies waiting are sent first (the client may wait for them
// before it sends more), then the session waits for memory. It never waits
// while its request holds a long argument (so waiting cannot deadlock):
// that case, which no command reaches, takes the memory at once.
func (c *session) reserve(n int) error {
	m := c.srv.mem
	if int64(n) > m.limit {
		return errTooLargeRequest
	}
	if m.tryAcquire(int64(n)) {
		return nil
	}
	if c.r.HoldsLong() {
		m.force(int64(n))
		return nil
	}
	if err := c.flush(); err != nil {
		return err
	}
	return m.acquire(int64(n), c.srv.done)
}

// take returns a budget buffer of n bytes; give returns it.
func (c *session) take(n int) ([]byte, error) {
	if err := c.reserve(n); err != nil {
		return nil, err
	}
	b, err := c.srv.bufs.get(n)
	if err != nil {
		c.srv.mem.release(int64(n))
		return nil, err
	}
	return b, nil
}

func (c *session) give(b []byte) {
	n := len(b)
	c.srv.bufs.put(b)
	c.srv.mem.release(int64(n))
}

// argAlloc gives the request reader its long arguments from the budget.
type argAlloc struct{ c *session }

func (a argAlloc) Alloc(n int) ([]byte, error) { return a.c.take(n) }
func (a argAlloc) Free(b []byte)               { a.c.give(b) }

// memoryErr answers a failed reservation: the request is too large, or
// the server is closing (the connection ends).
func (c *session) memoryErr(err error) {
	var pe *resp.ProtocolError
	if errors.As(err, &pe) {
		c.fail(pe.Text)
		return
	}
	c.quit = true
}
