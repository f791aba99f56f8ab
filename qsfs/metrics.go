package qsfs

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collectors are the node's Prometheus metrics (qsfs_*): the live RPO, the
// upload queue, the cache against its cap and the running totals. They
// read the node's local state only (no backend is asked per scrape).
func (n *Node) Collectors() []prometheus.Collector {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	return []prometheus.Collector{
		gauge("qsfs_rpo_seconds", "Age of the oldest write not yet in a stored recovery point (0: all stored).",
			func() float64 { return n.RPO().Seconds() }),
		gauge("qsfs_rpo_target_seconds", "The configured rpo.", func() float64 { return n.opts.RPO.Seconds() }),
		gauge("qsfs_upload_queue_objects", "Objects waiting to be stored.", func() float64 {
			jobs, _ := n.st.jobs()
			return float64(len(jobs))
		}),
		gauge("qsfs_cache_used_bytes", "Local disk use of the zdb files and the state.", func() float64 { return float64(n.usage()) }),
		gauge("qsfs_cache_cap_bytes", "The configured cache_size.", func() float64 { return float64(n.opts.CacheSize) }),
		gauge("qsfs_last_point_generation", "Generation of the last stored recovery point.", func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			return float64(n.committed)
		}),
		counter("qsfs_uploads_total", "Objects stored.", func() float64 { return float64(n.stats.Uploads.Load()) }),
		counter("qsfs_upload_bytes_total", "Bytes stored.", func() float64 { return float64(n.stats.UploadBytes.Load()) }),
		counter("qsfs_upload_errors_total", "Failed uploads (retried).", func() float64 { return float64(n.stats.UploadErrors.Load()) }),
		counter("qsfs_evictions_total", "Data files evicted.", func() float64 { return float64(n.stats.Evictions.Load()) }),
		counter("qsfs_fetches_total", "Fetches of evicted data.", func() float64 { return float64(n.stats.Fetches.Load()) }),
		counter("qsfs_fetch_bytes_total", "Bytes fetched by range.", func() float64 { return float64(n.stats.FetchBytes.Load()) }),
		counter("qsfs_fetch_errors_total", "Failed fetches.", func() float64 { return float64(n.stats.FetchErrors.Load()) }),
		counter("qsfs_write_waits_total", "Writes that waited for cache space.", func() float64 { return float64(n.stats.WriteWaits.Load()) }),
		counter("qsfs_write_enospc_total", "Writes refused with ENOSPC after waiting.", func() float64 { return float64(n.stats.WriteENOSPC.Load()) }),
		counter("qsfs_objects_deleted_total", "Remote objects deleted after the grace period.", func() float64 { return float64(n.stats.Deleted.Load()) }),
	}
}
