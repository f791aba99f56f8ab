package health

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"qss/qsfs"
)

// The ring keeps the newest samples, oldest first, and the report carries
// the latest status.
func TestHistoryWrapsOldestFirst(t *testing.T) {
	calls := 0
	m := New(func(context.Context) qsfs.Status {
		calls++
		var s qsfs.Status
		s.Queue.Jobs = calls
		s.Backends = []qsfs.BackendHealth{{Reachable: true}, {Reachable: calls%2 == 0}}
		s.LossesSurvivable = 2
		return s
	}, 0, 3)
	for range 5 {
		m.sample(context.Background())
	}
	h := m.History()
	if len(h) != 3 || h[0].QueueJobs != 3 || h[1].QueueJobs != 4 || h[2].QueueJobs != 5 {
		t.Fatalf("history %+v, want jobs 3, 4, 5", h)
	}
	if h[0].BackendsUp != 1 || h[1].BackendsUp != 2 || h[0].BackendsTotal != 2 {
		t.Fatalf("backends up/total: %+v", h)
	}
	srv := httptest.NewServer(m)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status.Queue.Jobs != 5 || rep.LossesSurvivable != 2 || len(rep.History) != 3 {
		t.Fatalf("report %+v", rep)
	}
	if resp, err := http.Post(srv.URL, "application/json", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp.StatusCode, err)
	}
}
