package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the daemon's Prometheus metrics, in a registry of its own
// (not the global one: a process, such as a test, may run several
// daemons). Counters and histograms are updated where things happen; the
// gauges of backends, queue, redundancy and cache are computed at scrape
// time from the loops' last snapshot (stateCollector), so a backend that
// left the config leaves no stale series behind.
type metrics struct {
	d            *daemon
	started      time.Time // for /healthz: no check is expected before the first interval
	reg          *prometheus.Registry
	commands     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	jobs         *prometheus.CounterVec
	repairs      *prometheus.CounterVec
	scrubs       *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	evictions    prometheus.Counter
	evictedBytes prometheus.Counter
}

func newMetrics(d *daemon) *metrics {
	m := &metrics{
		d:       d,
		started: time.Now(),
		reg:     prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zstor_commands_total",
			Help: "Commands served over the socket, by command and result (ok, or the error kind).",
		}, []string{"command", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zstor_command_duration_seconds",
			Help:    "Time to serve a command over the socket, by command.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms .. 262 s
		}, []string{"command"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zstor_queue_jobs_total",
			Help: "Queued store attempts by outcome: stored, retry (failed, rescheduled), dropped (file gone).",
		}, []string{"result"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zstor_repairs_total",
			Help: "Objects rebuilt by the daemon's repair and scrub loops, by result.",
		}, []string{"result"}),
		scrubs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zstor_scrubs_total",
			Help: "Background scrubs, by result.",
		}, []string{"result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zstor_config_reloads_total",
			Help: "Config reloads (SIGHUP, SIGUSR1), by result.",
		}, []string{"result"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zstor_cache_evictions_total",
			Help: "Files evicted from zdb_data_dir_path by the cache cap.",
		}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zstor_cache_evicted_bytes_total",
			Help: "Bytes evicted from zdb_data_dir_path by the cache cap.",
		}),
	}
	m.reg.MustRegister(m.commands, m.latency, m.jobs, m.repairs, m.scrubs, m.reloads, m.evictions, m.evictedBytes,
		stateCollector{d},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) command(op, result string, took time.Duration) {
	m.commands.WithLabelValues(op, result).Inc()
	m.latency.WithLabelValues(op).Observe(took.Seconds())
}

var (
	backendLabels = []string{"backend", "kind", "group"}

	descConn = prometheus.NewDesc("zstor_backend_connection_status",
		"1 when the backend answered the last health check (NSINFO for data, PING for metadata backends), else 0.", backendLabels, nil)
	descEntries = prometheus.NewDesc("zstor_backend_entries",
		"Entries in the data backend's namespace (NSINFO entries).", backendLabels, nil)
	descSize = prometheus.NewDesc("zstor_backend_data_size_bytes",
		"Bytes used by the data backend's namespace (NSINFO data_size_bytes).", backendLabels, nil)
	descLimit = prometheus.NewDesc("zstor_backend_data_limit_bytes",
		"Size limit of the data backend's namespace, 0 when none (NSINFO data_limits_bytes).", backendLabels, nil)
	descFree = prometheus.NewDesc("zstor_backend_free_bytes",
		"Bytes the data backend can still take: limit minus usage, capped by the disk's free space (absent when unknown).", backendLabels, nil)
	descLow = prometheus.NewDesc("zstor_backend_low_space",
		"1 when the data backend is reachable and at or above the low-space usage threshold.", backendLabels, nil)
	descHealthy = prometheus.NewDesc("zstor_backend_healthy",
		"1 when the data backend is reachable, in sequential mode and not low on space.", backendLabels, nil)
	descQueue = prometheus.NewDesc("zstor_queue_length",
		"Queued stores (store -n) not yet committed.", nil, nil)
	descBacklog = prometheus.NewDesc("zstor_repair_backlog",
		"Objects with fewer than n shards on reachable backends, at the last redundancy check.", nil, nil)
	descLowest = prometheus.NewDesc("zstor_lowest_redundancy",
		"Over all objects, the fewest shards of a chunk on reachable backends minus k: how many more backends can be lost; negative means unreadable (absent until checked, or when nothing is stored).", nil, nil)
	descObjects = prometheus.NewDesc("zstor_objects",
		"Object records in the metadata store at the last census, readable or not.", nil, nil)
	descUnreadable = prometheus.NewDesc("zstor_objects_unreadable",
		"Object records at the last census that could not be read or do not open with this key (so are not in the redundancy gauges).", nil, nil)
	descCache = prometheus.NewDesc("zstor_cache_dir_size_bytes",
		"Bytes of regular files under zdb_data_dir_path at the last cache check.", nil, nil)
	descCacheLimit = prometheus.NewDesc("zstor_cache_dir_limit_bytes",
		"max_zdb_data_dir_size in bytes.", nil, nil)
	descScrubTime = prometheus.NewDesc("zstor_scrub_last_completed_timestamp_seconds",
		"When the last scrub completed (Unix time).", nil, nil)
	descScrubProblems = prometheus.NewDesc("zstor_scrub_last_problems",
		"Missing or corrupt shards the last scrub found.", nil, nil)
)

// stateCollector turns the loops' last snapshot into gauges at scrape time.
type stateCollector struct{ d *daemon }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConn, descEntries, descSize, descLimit, descFree, descLow, descHealthy,
		descQueue, descBacklog, descLowest, descObjects, descUnreadable, descCache, descCacheLimit, descScrubTime, descScrubProblems} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	st := &c.d.state
	st.mu.RLock()
	defer st.mu.RUnlock()
	seen := map[[2]string]bool{}
	for _, h := range st.data {
		l := []string{h.Backend.String(), "data", strconv.Itoa(h.Backend.Group)}
		// A backend listed twice in one group (the config allows it)
		// is one series: two identical ones make the scrape fail.
		id := [2]string{l[0], l[2]}
		if seen[id] {
			continue
		}
		seen[id] = true
		gauge(descConn, b2f(h.Reachable), l...)
		s := c.d.classify(h)
		gauge(descHealthy, b2f(s == stateHealthy), l...)
		if !h.Reachable {
			continue
		}
		gauge(descEntries, float64(h.Entries), l...)
		gauge(descSize, float64(h.Used), l...)
		gauge(descLimit, float64(h.Limit), l...)
		if f := h.Free(); f >= 0 {
			gauge(descFree, float64(f), l...)
		}
		gauge(descLow, b2f(s == stateLowSpace), l...)
	}
	for _, h := range st.meta {
		gauge(descConn, b2f(h.Reachable), h.Address, "meta", "")
	}
	gauge(descQueue, float64(c.d.queue.len()))
	if st.redundancyKnown {
		gauge(descBacklog, float64(st.backlog))
		gauge(descObjects, float64(st.objects))
		gauge(descUnreadable, float64(st.unreadable))
		if st.placed != nil && len(st.placed.objs) > 0 {
			gauge(descLowest, float64(st.lowest))
		}
	}
	if st.cacheKnown {
		gauge(descCache, float64(st.cacheSize))
		gauge(descCacheLimit, float64(st.cacheLimit))
	}
	if !st.scrubDone.IsZero() {
		gauge(descScrubTime, float64(st.scrubDone.UnixNano())/1e9)
		gauge(descScrubProblems, float64(st.scrubProblems))
	}
}

// healthz is the answer of /healthz.
type healthz struct {
	Status string `json:"status"` // ok, degraded, or stale
	// LastCheck is when the health loop last completed (zero before).
	LastCheck          time.Time `json:"last_check"`
	DataUnreachable    int       `json:"data_backends_unreachable"`
	MetaUnreachable    int       `json:"meta_backends_unreachable"`
	RepairBacklog      int       `json:"repair_backlog"`
	LowestRedundancy   *int      `json:"lowest_redundancy,omitempty"`
	Objects            int       `json:"objects"`
	UnreadableObjects  int       `json:"unreadable_objects"`
	QueueLength        int       `json:"queue_length"`
	RedundancyKnown    bool      `json:"redundancy_known"`
	HealthIntervalSecs float64   `json:"health_interval_seconds"`
}

// serveHealthz answers whether the daemon is alive: 200 while its health
// loop keeps running (status "ok", or "degraded" when a backend is
// unreachable or an object is below full redundancy: restarting the daemon
// would not fix that, so a liveness probe must not fail on it), 503 when
// the loop has not completed a check for three intervals (status "stale":
// the daemon is stuck). The body is JSON with the figures behind the
// status.
func (m *metrics) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	d := m.d
	st := &d.state
	st.mu.RLock()
	h := healthz{
		Status:             "ok",
		LastCheck:          st.checked,
		RepairBacklog:      st.backlog,
		Objects:            st.objects,
		UnreadableObjects:  st.unreadable,
		RedundancyKnown:    st.redundancyKnown,
		HealthIntervalSecs: d.opts.HealthInterval.Seconds(),
	}
	for _, b := range st.data {
		if !b.Reachable {
			h.DataUnreachable++
		}
	}
	for _, b := range st.meta {
		if !b.Reachable {
			h.MetaUnreachable++
		}
	}
	if st.redundancyKnown && st.placed != nil && len(st.placed.objs) > 0 {
		l := st.lowest
		h.LowestRedundancy = &l
	}
	st.mu.RUnlock()
	h.QueueLength = d.queue.len()
	code := http.StatusOK
	last := h.LastCheck
	if last.IsZero() {
		last = m.started // starting: the first check may still be running
	}
	switch {
	case time.Since(last) > 3*d.opts.HealthInterval+d.opts.HealthTimeout:
		h.Status, code = "stale", http.StatusServiceUnavailable
	case h.DataUnreachable > 0 || h.MetaUnreachable > 0 || h.RepairBacklog > 0 || h.UnreadableObjects > 0:
		h.Status = "degraded"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(h)
}

// metricsServer serves /metrics and /healthz over HTTP.
type metricsServer struct {
	srv  *http.Server
	done chan struct{}
}

// startMetrics listens on host:port and serves the registry (/metrics)
// and the daemon's liveness (/healthz). A port that
// cannot be bound is an error at once (not a log line later).
func startMetrics(host string, port int, m *metrics, log *slog.Logger) (*metricsServer, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("zstor monitor: prometheus_port: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", m.serveHealthz)
	s := &metricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("zstor daemon: metrics server", slog.String("err", err.Error()))
		}
	}()
	log.Info("zstor daemon: metrics on http://" + addr + "/metrics")
	return s, nil
}

func (s *metricsServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
}
