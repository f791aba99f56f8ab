package daemon

import (
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// progressEvery is how often the daemon sends a progress line while a
// store or retrieve that asked for progress runs.
const progressEvery = 200 * time.Millisecond

// connWriter serializes the lines the daemon writes on one connection:
// progress lines from the operation's goroutines, then the response. Once
// the response is written (last), further lines are dropped, so a late
// progress line can never follow it.
type connWriter struct {
	mu   sync.Mutex
	conn net.Conn
	done bool
	bad  bool // a write failed: the client is gone, write nothing more
}

func (w *connWriter) write(line []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.bad {
		return
	}
	w.conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	if _, err := w.conn.Write(line); err != nil {
		w.bad = true
	}
}

// last writes the response line and closes the writer to progress lines.
func (w *connWriter) last(line []byte) {
	w.write(line)
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// progressReporter turns the zstor Progress and Started callbacks of one
// operation into progress lines, at most one per progressEvery (and one at
// the start, when the total is known). Its callbacks are safe for
// concurrent use.
type progressReporter struct {
	w       *connWriter
	v       int
	done    atomic.Int64
	total   atomic.Int64
	sent    int64 // done as last sent; ticker goroutine and stop only
	stopc   chan struct{}
	stopped sync.WaitGroup
}

func newProgressReporter(w *connWriter, v int) *progressReporter {
	r := &progressReporter{w: w, v: v, stopc: make(chan struct{}), sent: -1}
	r.total.Store(-1)
	r.stopped.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-r.stopc:
				return
			case <-t.C:
				r.send(false)
			}
		}
	})
	return r
}

// started records the total and sends it at once.
func (r *progressReporter) started(total int64) {
	r.total.Store(total)
	r.send(true)
}

// add counts n more bytes done.
func (r *progressReporter) add(n int) { r.done.Add(int64(n)) }

func (r *progressReporter) send(force bool) {
	d := r.done.Load()
	if !force && d == atomic.LoadInt64(&r.sent) {
		return
	}
	atomic.StoreInt64(&r.sent, d)
	b, err := json.Marshal(progressLine{V: r.v, Progress: progressInfo{Done: d, Total: r.total.Load()}})
	if err != nil {
		return
	}
	r.w.write(append(b, '\n'))
}

// stop ends the ticker and sends the final count (before the response).
func (r *progressReporter) stop() {
	close(r.stopc)
	r.stopped.Wait()
	r.send(false)
}
