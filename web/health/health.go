// Package health is the data of the web interface's dashboard: qsfs's live
// status, and a history of it sampled at a fixed interval so that the
// dashboard can chart the last day without asking qsfs for the past.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"qss/qsfs"
)

// Sample is one point of the history.
type Sample struct {
	T                time.Time `json:"t"`
	RPO              float64   `json:"rpo_seconds"`
	QueueJobs        int       `json:"queue_jobs"`
	QueueBytes       int64     `json:"queue_bytes"`
	CacheUsed        int64     `json:"cache_used_bytes"`
	CacheCap         int64     `json:"cache_cap_bytes"`
	BackendsUp       int       `json:"backends_up"`
	BackendsTotal    int       `json:"backends_total"`
	LowestRedundancy int       `json:"lowest_redundancy"`
}

// Report is what GET /api/health answers.
type Report struct {
	Status           qsfs.Status `json:"status"`
	LossesSurvivable int         `json:"losses_survivable"`
	History          []Sample    `json:"history"`
}

// StatusFunc reads qsfs's status ((*qsfs.Node).Status).
type StatusFunc func(context.Context) qsfs.Status

// Monitor samples a StatusFunc every Interval and keeps the last Keep
// samples in a ring.
type Monitor struct {
	status   StatusFunc
	interval time.Duration

	mu   sync.Mutex
	ring []Sample
	next int
	full bool
	last qsfs.Status
	at   time.Time
}

// Defaults: a sample every 5 s, a day of them.
const (
	DefaultInterval = 5 * time.Second
	DefaultKeep     = 24 * 60 * 60 / 5
)

// New returns a Monitor; interval and keep ≤ 0 take the defaults.
func New(status StatusFunc, interval time.Duration, keep int) *Monitor {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &Monitor{status: status, interval: interval, ring: make([]Sample, keep)}
}

// Run samples until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample reads the status once and records it.
func (m *Monitor) sample(ctx context.Context) qsfs.Status {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st := m.status(cctx)
	cancel()
	s := Sample{T: time.Now().UTC(), RPO: float64(st.RPO), QueueJobs: st.Queue.Jobs, QueueBytes: st.Queue.Bytes,
		CacheUsed: st.Cache.Used, CacheCap: st.Cache.Cap, BackendsTotal: len(st.Backends), LowestRedundancy: st.LowestRedundancy}
	for _, b := range st.Backends {
		if b.Reachable {
			s.BackendsUp++
		}
	}
	m.mu.Lock()
	m.ring[m.next] = s
	m.next = (m.next + 1) % len(m.ring)
	m.full = m.full || m.next == 0
	m.last, m.at = st, time.Now()
	m.mu.Unlock()
	return st
}

// History is the samples, oldest first.
func (m *Monitor) History() []Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.full {
		return append([]Sample(nil), m.ring[:m.next]...)
	}
	return append(append([]Sample(nil), m.ring[m.next:]...), m.ring[:m.next]...)
}

// Report is the status now (read afresh unless the last sample is under
// a second old, so a page of several widgets costs one status) and the
// history.
func (m *Monitor) Report(ctx context.Context) Report {
	m.mu.Lock()
	st, fresh := m.last, time.Since(m.at) < time.Second
	m.mu.Unlock()
	if !fresh {
		st = m.sample(ctx)
	}
	return Report{Status: st, LossesSurvivable: st.LossesSurvivable, History: m.History()}
}

// ServeHTTP answers GET /api/health with the Report as JSON.
func (m *Monitor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, `{"error":"use GET"}`, http.StatusMethodNotAllowed)
		return
	}
	rep := m.Report(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(rep)
}
