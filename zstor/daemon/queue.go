package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The queue of `store -n` jobs lives in a bbolt file: one bucket, keyed by
// the file's absolute path, each value a JSON job. bbolt was chosen over a
// journal of our own because it already gives what the queue needs: every
// committed transaction is fsync'd before Update returns (so a job that was
// acknowledged survives kill -9 and power loss), a crash mid-transaction
// leaves the previous state (copy-on-write pages, two meta pages), keyed
// updates make coalescing a plain overwrite, and its file lock keeps a
// second daemon off the same queue.
//
// Invariants:
//   - A job is acknowledged to the client only after its transaction
//     committed (fsync'd).
//   - A job is removed only after its store committed (or its file is gone),
//     and only if it was not queued again meanwhile: each enqueue gives the
//     job a new Seq, and removal compares Seq.
//   - At most one store per path runs at a time.
//
// Crash story: a crash before the enqueue committed loses the request, but
// the client was not told it succeeded. A crash during a store leaves the
// job, which runs again on restart (zstor's store is idempotent: an equal
// stored checksum is skipped, a half-written store left no record). A crash
// between the store's commit and the job's removal runs the store again,
// which is then skipped as unchanged.

var (
	bucketJobs = []byte("jobs")
	bucketInfo = []byte("info")
	keyVersion = []byte("version")
)

// queueFormat is the version of the queue file's layout.
const queueFormat = "1"

// job is one queued store.
type job struct {
	Path        string    `json:"path"` // absolute
	Key         string    `json:"key,omitempty"`
	DeleteLocal bool      `json:"delete_local,omitempty"`
	Seq         uint64    `json:"seq"` // new on every enqueue of the path
	Queued      time.Time `json:"queued"`
	Attempts    int       `json:"attempts"`
	Next        time.Time `json:"next"` // not before
	LastErr     string    `json:"last_err,omitempty"`
}

// queue is the durable queue plus an in-memory copy of its jobs (the file
// is the truth; the copy is updated only after a commit).
type queue struct {
	db   *bolt.DB
	mu   sync.Mutex
	jobs map[string]*job
	wake chan struct{} // signalled when a job is added or becomes due sooner
}

// errQueueLocked means another process holds the queue file.
var errQueueLocked = errors.New("the queue file is locked by another process (is another zstor daemon running?)")

func openQueue(path string) (*queue, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 500 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("zstor daemon: queue %s: %w", path, errQueueLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("zstor daemon: open queue %s: %w", path, err)
	}
	q := &queue{db: db, jobs: map[string]*job{}, wake: make(chan struct{}, 1)}
	err = db.Update(func(tx *bolt.Tx) error {
		info, err := tx.CreateBucketIfNotExists(bucketInfo)
		if err != nil {
			return err
		}
		if v := info.Get(keyVersion); v == nil {
			if err := info.Put(keyVersion, []byte(queueFormat)); err != nil {
				return err
			}
		} else if string(v) != queueFormat {
			return fmt.Errorf("queue format %q, this build reads %q", v, queueFormat)
		}
		b, err := tx.CreateBucketIfNotExists(bucketJobs)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var j job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("job %q: %w", k, err)
			}
			q.jobs[string(k)] = &j
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("zstor daemon: queue %s: %w", path, err)
	}
	return q, nil
}

func (q *queue) close() error { return q.db.Close() }

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// put enqueues a store of j.Path, replacing (coalescing with) any job for
// the same path: the latest options win and the job is due at once. It
// returns after the transaction is on disk.
func (q *queue) put(j job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		j.Seq = seq
		v, err := json.Marshal(&j)
		if err != nil {
			return err
		}
		return b.Put([]byte(j.Path), v)
	})
	if err != nil {
		return fmt.Errorf("zstor daemon: enqueue %s: %w", j.Path, err)
	}
	q.jobs[j.Path] = &j
	q.signal()
	return nil
}

// remove deletes the job of path if it still has sequence seq (it was not
// queued again meanwhile). It reports whether it did.
func (q *queue) remove(path string, seq uint64) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if j := q.jobs[path]; j == nil || j.Seq != seq {
		return false, nil
	}
	err := q.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Delete([]byte(path))
	})
	if err != nil {
		return false, fmt.Errorf("zstor daemon: dequeue %s: %w", path, err)
	}
	delete(q.jobs, path)
	return true, nil
}

// failed records a failed attempt of the job (path, seq) and schedules the
// next one after a backoff; a job queued again meanwhile is left as it is.
func (q *queue) failed(path string, seq uint64, cause error, minDelay, maxDelay time.Duration) (time.Duration, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	old := q.jobs[path]
	if old == nil || old.Seq != seq {
		return 0, nil
	}
	j := *old
	j.Attempts++
	j.LastErr = cause.Error()
	delay := backoff(j.Attempts, minDelay, maxDelay)
	j.Next = time.Now().Add(delay)
	err := q.db.Update(func(tx *bolt.Tx) error {
		v, err := json.Marshal(&j)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketJobs).Put([]byte(path), v)
	})
	if err != nil {
		return delay, fmt.Errorf("zstor daemon: reschedule %s: %w", path, err)
	}
	q.jobs[path] = &j
	return delay, nil
}

// backoff is the delay before attempt number attempts+1: minDelay doubled
// per failed attempt, capped at maxDelay, with ±20% jitter so that jobs
// failing together do not retry in lockstep.
func backoff(attempts int, minDelay, maxDelay time.Duration) time.Duration {
	d := minDelay
	for i := 1; i < attempts && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) * 2
	return max(d-d/5+jitter, time.Millisecond)
}

// next returns the due job (Next <= now) that is not running and comes
// first by (Next, Seq), and how long until the earliest job not running is
// due (0 when one is returned, -1 when none waits).
func (q *queue) next(now time.Time, running map[string]bool) (*job, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var best *job
	for _, j := range q.jobs {
		if running[j.Path] {
			continue
		}
		if best == nil || j.Next.Before(best.Next) || (j.Next.Equal(best.Next) && j.Seq < best.Seq) {
			best = j
		}
	}
	if best == nil {
		return nil, -1
	}
	if best.Next.After(now) {
		return nil, best.Next.Sub(now)
	}
	c := *best
	return &c, 0
}

// len is the number of queued jobs.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.jobs)
}

// snapshot returns the queued jobs sorted by path.
func (q *queue) snapshot() []job {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]job, 0, len(q.jobs))
	for _, j := range q.jobs {
		out = append(out, *j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Path < out[b].Path })
	return out
}

// list returns the queued jobs as the jobs op reports them, sorted by when
// they are due (then by enqueue order).
func (q *queue) list() []Job {
	q.mu.Lock()
	js := make([]job, 0, len(q.jobs))
	for _, j := range q.jobs {
		js = append(js, *j)
	}
	q.mu.Unlock()
	sort.Slice(js, func(a, b int) bool {
		if !js[a].Next.Equal(js[b].Next) {
			return js[a].Next.Before(js[b].Next)
		}
		return js[a].Seq < js[b].Seq
	})
	out := make([]Job, len(js))
	for i, j := range js {
		out[i] = Job{Path: j.Path, Key: j.Key, DeleteLocal: j.DeleteLocal, Queued: j.Queued, Attempts: j.Attempts, Next: j.Next, LastErr: j.LastErr}
	}
	return out
}

// ReadQueue lists the jobs in the queue file at path while no daemon runs
// (`zstor queue` then shows what the next start will store). It opens the
// file read-only, under a shared lock held for the read only; a daemon
// holding the file makes it fail with an error that says so. A missing
// file is an empty queue.
func ReadQueue(path string) ([]Job, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("zstor queue: %s: %w", path, errQueueLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("zstor queue: open %s: %w", path, err)
	}
	defer db.Close()
	q := &queue{jobs: map[string]*job{}}
	err = db.View(func(tx *bolt.Tx) error {
		if info := tx.Bucket(bucketInfo); info != nil {
			if v := info.Get(keyVersion); v != nil && string(v) != queueFormat {
				return fmt.Errorf("queue format %q, this build reads %q", v, queueFormat)
			}
		}
		b := tx.Bucket(bucketJobs)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var j job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("job %q: %w", k, err)
			}
			q.jobs[string(k)] = &j
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("zstor queue: %s: %w", path, err)
	}
	return q.list(), nil
}
