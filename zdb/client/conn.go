package client

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"qss/internal/resp"
)

const connBufSize = 64 << 10

// conn is one connection of the pool.
type conn struct {
	nc net.Conn
	w  *resp.Writer
	r  *resp.ReplyReader

	// poisoned is set when a context's AfterFunc may still move the
	// deadline: the connection must not be reused.
	poisoned bool
}

func newConn(nc net.Conn) *conn {
	return &conn{
		nc: nc,
		w:  resp.NewWriter(nc, connBufSize),
		r:  resp.NewReplyReader(nc, connBufSize),
	}
}

// longAgo is a deadline in the past, set to interrupt blocked I/O.
var longAgo = time.Unix(1, 0)

// deadline is the earlier of ctx's deadline and now+ioTimeout.
func deadline(ctx context.Context, ioTimeout time.Duration) time.Time {
	d, _ := ctx.Deadline()
	if ioTimeout > 0 {
		t := time.Now().Add(ioTimeout)
		if d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

// guard runs fn with the connection's deadline taken from ctx and ioTimeout,
// and interrupts it when ctx is cancelled. fn may call refresh to push the
// deadline forward after making progress. An error caused by ctx is
// replaced by ctx's error.
func (cn *conn) guard(ctx context.Context, ioTimeout time.Duration, fn func(refresh func()) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	refresh := func() {
		cn.nc.SetDeadline(deadline(ctx, ioTimeout))
		// ctx's error is set before its AfterFunc runs, so checking after
		// setting never loses a cancellation.
		if ctx.Err() != nil {
			cn.nc.SetDeadline(longAgo)
		}
	}
	refresh()
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { cn.nc.SetDeadline(longAgo) })
	}
	err := fn(refresh)
	if stop != nil && !stop() {
		cn.poisoned = true
	}
	if err != nil {
		if ce := ctx.Err(); ce != nil {
			err = ce
		} else if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) && errors.Is(err, os.ErrDeadlineExceeded) {
			err = context.DeadlineExceeded
		}
	}
	return err
}

// do sends one command and reads its reply.
func (cn *conn) do(ctx context.Context, ioTimeout time.Duration, args [][]byte) (v resp.Value, err error) {
	err = cn.guard(ctx, ioTimeout, func(func()) error {
		cn.w.Command(args...)
		if err := cn.w.Flush(); err != nil {
			return err
		}
		var err error
		v, err = cn.r.ReadReply()
		return err
	})
	return v, err
}

// pipeline writes the encoded requests in buf with one write, while reading
// n replies, so that neither side can stall the other on full socket
// buffers.
func (cn *conn) pipeline(ctx context.Context, ioTimeout time.Duration, bufs net.Buffers, n int) ([]resp.Value, error) {
	out := make([]resp.Value, n)
	err := cn.guard(ctx, ioTimeout, func(refresh func()) error {
		var (
			mu    sync.Mutex
			first error // the failure that stopped the exchange
			abort atomic.Bool
		)
		fail := func(err error) {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
			abort.Store(true)
			cn.nc.SetDeadline(longAgo) // unblock the other side
		}
		wdone := make(chan struct{})
		go func() {
			defer close(wdone)
			if _, err := bufs.WriteTo(cn.nc); err != nil { // writev
				fail(err)
			}
		}()
		for i := range out {
			var err error
			if out[i], err = cn.r.ReadReply(); err != nil {
				fail(err)
				break
			}
			refresh()
			if abort.Load() {
				cn.nc.SetDeadline(longAgo)
			}
		}
		<-wdone
		return first
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
