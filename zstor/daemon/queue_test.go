package daemon

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// A job queued again for the same path replaces the first (coalescing),
// removal compares the sequence number so a re-queue during a running
// store is not lost, and jobs survive closing and reopening the file.
func TestQueueCoalescePersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q")
	q, err := openQueue(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for range 3 {
		if err := q.put(job{Path: "/a", Queued: now, Next: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.put(job{Path: "/b", Key: "kb", DeleteLocal: true, Queued: now, Next: now}); err != nil {
		t.Fatal(err)
	}
	if n := q.len(); n != 2 {
		t.Fatalf("%d jobs after queueing /a three times and /b once, want 2", n)
	}
	j, _ := q.next(time.Now(), nil)
	if j == nil || j.Path != "/a" {
		t.Fatalf("next = %+v, want /a (queued first)", j)
	}
	// /a is queued again while "running": removing the old sequence must
	// keep the new request.
	if err := q.put(job{Path: "/a", Queued: now, Next: now}); err != nil {
		t.Fatal(err)
	}
	if removed, err := q.remove("/a", j.Seq); err != nil || removed {
		t.Fatalf("remove with a stale seq: removed=%v err=%v", removed, err)
	}
	// A failure reschedules with backoff; a stale seq changes nothing.
	if d, err := q.failed("/a", j.Seq, errors.New("x"), time.Second, time.Minute); err != nil || d != 0 {
		t.Fatalf("failed with a stale seq: %v %v", d, err)
	}
	cur := q.snapshot()[0]
	if d, err := q.failed("/a", cur.Seq, errors.New("boom"), time.Second, time.Minute); err != nil || d < 800*time.Millisecond {
		t.Fatalf("failed: delay %v err %v", d, err)
	}
	if j, wait := q.next(time.Now(), map[string]bool{"/b": true}); j != nil || wait <= 0 {
		t.Fatalf("a job in backoff was returned: %+v wait %v", j, wait)
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}

	q, err = openQueue(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	jobs := q.snapshot()
	if len(jobs) != 2 || jobs[0].Path != "/a" || jobs[0].Attempts != 1 || jobs[0].LastErr != "boom" ||
		jobs[1].Path != "/b" || jobs[1].Key != "kb" || !jobs[1].DeleteLocal {
		t.Fatalf("after reopening: %+v", jobs)
	}
	if removed, err := q.remove("/b", jobs[1].Seq); err != nil || !removed {
		t.Fatalf("remove: removed=%v err=%v", removed, err)
	}
	if q.len() != 1 {
		t.Fatalf("%d jobs after removing /b", q.len())
	}
}

// A second opener of the queue file is refused (the file lock is what
// keeps two daemons off one queue).
func TestQueueLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q")
	q, err := openQueue(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if _, err := openQueue(path); !errors.Is(err, errQueueLocked) {
		t.Fatalf("second open: %v, want errQueueLocked", err)
	}
}

func TestBackoff(t *testing.T) {
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 20: time.Minute} {
		for range 20 {
			d := backoff(attempts, time.Second, time.Minute)
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("backoff(%d) = %v, want %v ±20%%", attempts, d, want)
			}
		}
	}
}
