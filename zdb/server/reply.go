package server

import (
	"errors"
	"net"
	"runtime"
	"strconv"

	"qss/zdb"
)

// replyWriter holds a session's replies until they may be sent.
//
//   - A reply reaches the connection only after the writes it follows are
//     committed (group commit: one commit per pipelined batch), so that no
//     write is acknowledged before it reached the files.
//   - When a commit fails, the replies of the writes it carried are
//     replaced by the commit's error (-Cannot write data/index right now)
//     before anything is sent; the connection stays usable.
//   - Nothing is built whole: the buffer is sent whenever it passes
//     flushAt, and a payload above directBulk is written from where it is
//     (writev), not copied. A buffer grown past keepBuf is dropped once
//     sent, so an idle connection holds no large buffer.
type replyWriter struct {
	conn  net.Conn
	stats *stats
	buf   []byte
	// acks are the replies in buf of writes not yet committed, pending the
	// last ticket of each namespace written to.
	acks    []ack
	pending []pendingCommit
	hold    bool  // inside a write's reply: no flush
	err     error // the first failed write; everything after is dropped
}

type ack struct {
	start, end int
	ns         *zdb.Namespace
}

// pendingCommit is the last write of a session in one namespace.
type pendingCommit struct {
	ns     *zdb.Namespace
	ticket zdb.Ticket
}

const (
	flushAt    = 64 << 10
	keepBuf    = 16 << 10
	directBulk = 16 << 10
)

var crlf = []byte("\r\n")

func newReplyWriter(conn net.Conn, st *stats) *replyWriter {
	return &replyWriter{conn: conn, stats: st, buf: make([]byte, 0, 4<<10)}
}

// Buffered is the number of bytes waiting to be sent.
func (w *replyWriter) Buffered() int { return len(w.buf) }

// wrote ends an append: past flushAt the buffer goes out.
func (w *replyWriter) wrote() {
	if len(w.buf) >= flushAt && !w.hold {
		w.flush(nil)
	}
}

func (w *replyWriter) header(prefix byte, n int) {
	w.buf = append(w.buf, prefix)
	w.buf = strconv.AppendInt(w.buf, int64(n), 10)
	w.buf = append(w.buf, '\r', '\n')
}

// Simple writes "+s".
func (w *replyWriter) Simple(s string) {
	w.buf = append(w.buf, '+')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\r', '\n')
	w.wrote()
}

// Error writes "-s" (0-db errors carry no "ERR " prefix).
func (w *replyWriter) Error(s string) {
	w.buf = append(w.buf, '-')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\r', '\n')
	w.wrote()
}

// Int writes ":n".
func (w *replyWriter) Int(n int64) {
	w.buf = append(w.buf, ':')
	w.buf = strconv.AppendInt(w.buf, n, 10)
	w.buf = append(w.buf, '\r', '\n')
	w.wrote()
}

// Nil writes the nil bulk string.
func (w *replyWriter) Nil() {
	w.buf = append(w.buf, "$-1\r\n"...)
	w.wrote()
}

// Array writes the header of an array of n elements.
func (w *replyWriter) Array(n int) {
	w.header('*', n)
	w.wrote()
}

// BulkString writes s as a bulk string.
func (w *replyWriter) BulkString(s string) {
	w.header('$', len(s))
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\r', '\n')
	w.wrote()
}

// Bulk writes b as a bulk string. A large b is written before Bulk
// returns, so the caller may reuse or free it at once.
func (w *replyWriter) Bulk(b []byte) {
	w.header('$', len(b))
	if len(b) > directBulk && !w.hold {
		w.flush([][]byte{b, crlf})
		return
	}
	w.buf = append(w.buf, b...)
	w.buf = append(w.buf, '\r', '\n')
	w.wrote()
}

// ackWrite writes, with reply, the reply to a write that Commit(t) makes
// durable: it is sent only after that commit, or replaced by the commit's
// error if it fails.
func (w *replyWriter) ackWrite(ns *zdb.Namespace, t zdb.Ticket, reply func()) {
	w.hold = true
	start := len(w.buf)
	reply()
	w.hold = false
	w.acks = append(w.acks, ack{start, len(w.buf), ns})
	found := false
	for i := range w.pending {
		// Tickets of one namespace grow: the last covers the earlier.
		if w.pending[i].ns == ns {
			w.pending[i].ticket, found = t, true
		}
	}
	if !found {
		w.pending = append(w.pending, pendingCommit{ns, t})
	}
	w.wrote()
}

// Flush commits the pending writes and sends everything buffered.
func (w *replyWriter) Flush() error { return w.flush(nil) }

func (w *replyWriter) flush(extra [][]byte) error {
	if w.err != nil {
		w.buf, w.acks, w.pending = w.buf[:0], w.acks[:0], w.pending[:0]
		return w.err
	}
	w.commit()
	var n int64
	var err error
	switch {
	case len(extra) > 0:
		bufs := append(net.Buffers{w.buf}, extra...)
		n, err = bufs.WriteTo(w.conn) // one writev
	case len(w.buf) > 0:
		var k int
		k, err = w.conn.Write(w.buf)
		n = int64(k)
	}
	w.stats.tx.Add(uint64(n))
	if err != nil {
		w.err = err
	}
	if cap(w.buf) > keepBuf {
		w.buf = make([]byte, 0, 4<<10)
	}
	w.buf = w.buf[:0]
	return w.err
}

// commit makes the pending writes durable; the replies of those whose
// commit failed become the error.
func (w *replyWriter) commit() {
	if len(w.pending) == 0 {
		return
	}
	// Let the other clients with requests ready add theirs first: one
	// commit then covers them all.
	runtime.Gosched()
	var failed []pendingCommit
	var errs []string
	for _, p := range w.pending {
		if err := p.ns.Commit(p.ticket); err != nil {
			text := string(zdb.ErrWrite)
			var ze zdb.Error
			if errors.As(err, &ze) {
				text = string(ze)
			}
			failed = append(failed, p)
			errs = append(errs, text)
		}
	}
	w.pending = w.pending[:0]
	if len(failed) > 0 {
		w.rewrite(failed, errs)
	}
	w.acks = w.acks[:0]
}

// rewrite replaces the replies of the writes to the failed namespaces.
func (w *replyWriter) rewrite(failed []pendingCommit, errs []string) {
	out := make([]byte, 0, len(w.buf))
	last := 0
	for _, a := range w.acks {
		for i, f := range failed {
			if f.ns != a.ns {
				continue
			}
			out = append(out, w.buf[last:a.start]...)
			out = append(out, '-')
			out = append(out, errs[i]...)
			out = append(out, '\r', '\n')
			last = a.end
			w.stats.failed.Add(1)
		}
	}
	w.buf = append(out, w.buf[last:]...)
}
