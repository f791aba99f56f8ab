package qsfs

import (
	"context"
	"os"
	"strconv"
	"time"
)

// Status is the node's live state, as `qsfs status` shows it.
type Status struct {
	Dir string `json:"dir"`
	// RPO is the age of the oldest write not yet in a stored recovery
	// point (0: everything is stored); RPOTarget the configured rpo.
	RPO       Seconds `json:"rpo_seconds"`
	RPOTarget Seconds `json:"rpo_target_seconds"`
	// LastPoint is the last stored recovery point.
	LastPoint struct {
		Generation uint64    `json:"generation"`
		Cut        time.Time `json:"cut"`
		StoredAt   time.Time `json:"stored_at"`
	} `json:"last_point"`
	PointsPending int `json:"points_pending"` // cut, not stored yet
	Queue         struct {
		Jobs      int       `json:"jobs"`
		Bytes     int64     `json:"bytes"`
		Oldest    time.Time `json:"oldest,omitempty"`
		Failing   int       `json:"failing"`
		LastError string    `json:"last_error,omitempty"`
	} `json:"queue"`
	Cache struct {
		Used int64 `json:"used_bytes"`
		Cap  int64 `json:"cap_bytes"`
	} `json:"cache"`
	RemoteObjects int             `json:"remote_objects"`
	RemoteBytes   int64           `json:"remote_bytes"`
	Garbage       int             `json:"garbage_objects"`
	Backends      []BackendHealth `json:"backends"`
	// LowestRedundancy is the fewest shards any stored object has per
	// chunk; Expected is the configured n.
	LowestRedundancy int `json:"lowest_redundancy"`
	Expected         int `json:"expected_shards"`
	// Redundancy is the census behind LowestRedundancy (at most 15 s
	// old; absent when the Remote keeps no census).
	Redundancy *Redundancy `json:"redundancy,omitempty"`
	// LossesSurvivable is how many more backends can be lost with every
	// object still readable; -1 when unknown.
	LossesSurvivable int         `json:"losses_survivable"`
	LastRepair       RepairState `json:"last_repair"`
	Uploads          uint64      `json:"uploads"`
	Evictions        uint64      `json:"evictions"`
	Fetches          uint64      `json:"fetches"`
	WriteWaits       uint64      `json:"write_waits"`
	WriteENOSPC      uint64      `json:"write_enospc"`
	// AtRisk lists why data is at risk; empty when all is well.
	AtRisk []string `json:"at_risk"`
}

// Seconds is a duration shown in (fractional) seconds in JSON.
type Seconds float64

// Dur is s as a duration.
func (s Seconds) Dur() time.Duration { return time.Duration(float64(s) * float64(time.Second)) }

// RPO is the live recovery point objective: how old the oldest write not
// yet stored on the backends is (0 when all is stored).
func (n *Node) RPO() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	oldest := n.firstWrite
	for g, t := range n.firsts {
		if g > n.committed && !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest)
}

// Status reports the node's state; ctx bounds the backend probes.
func (n *Node) Status(ctx context.Context) Status {
	var s Status
	s.Dir = n.opts.Dir
	s.RPO = Seconds(n.RPO().Seconds())
	s.RPOTarget = Seconds(n.opts.RPO.Seconds())
	if m, err := n.st.manifest(); err == nil && m != nil {
		s.LastPoint.Generation, s.LastPoint.Cut = m.Generation, m.Cut
		if o, ok := n.st.stored(manifestName); ok {
			s.LastPoint.StoredAt = o.At
		}
	}
	if eps, err := n.st.epochs(); err == nil {
		s.PointsPending = len(eps)
	}
	jobs, _ := n.st.jobs()
	s.Queue.Jobs = len(jobs)
	for _, j := range jobs {
		if fi, err := statSize(j.Source); err == nil {
			s.Queue.Bytes += fi
		}
		if s.Queue.Oldest.IsZero() || j.Since.Before(s.Queue.Oldest) {
			s.Queue.Oldest = j.Since
		}
		if j.Tries > 0 {
			s.Queue.Failing++
		}
	}
	n.mu.Lock()
	s.Queue.LastError = n.lastErr
	n.mu.Unlock()
	s.Cache.Used, s.Cache.Cap = n.usage(), n.opts.CacheSize
	s.RemoteObjects, s.RemoteBytes, s.Garbage = n.st.totals()
	if hr, ok := n.opts.Remote.(HealthReporter); ok {
		s.Backends, s.Expected = hr.Health(ctx)
	}
	s.LossesSurvivable = -1
	if red, ok := n.redundancy(ctx); ok {
		s.Redundancy = &red
		s.LowestRedundancy, s.Expected = red.Lowest, red.Expected
		s.LossesSurvivable = red.LossesSurvivable()
	} else {
		s.LowestRedundancy = n.st.lowestShards()
	}
	n.redMu.Lock()
	s.LastRepair = n.lastRepair
	n.redMu.Unlock()
	s.Uploads = n.stats.Uploads.Load()
	s.Evictions = n.stats.Evictions.Load()
	s.Fetches = n.stats.Fetches.Load()
	s.WriteWaits = n.stats.WriteWaits.Load()
	s.WriteENOSPC = n.stats.WriteENOSPC.Load()
	s.AtRisk = []string{}
	if s.RPO > s.RPOTarget {
		s.AtRisk = append(s.AtRisk, "the live RPO is above the target: writes are not being stored in time")
	}
	if s.Queue.Failing > 0 {
		s.AtRisk = append(s.AtRisk, "uploads are failing: "+s.Queue.LastError)
	}
	down := 0
	for _, b := range s.Backends {
		if !b.Reachable {
			down++
		}
	}
	if down > 0 {
		s.AtRisk = append(s.AtRisk, "backends unreachable: "+itoa(down))
	}
	if s.Expected > 0 && s.LowestRedundancy > 0 && s.LowestRedundancy < s.Expected {
		s.AtRisk = append(s.AtRisk, "objects below full redundancy: lowest "+itoa(s.LowestRedundancy)+" of "+itoa(s.Expected)+" shards")
	}
	if s.Cache.Used > s.Cache.Cap {
		s.AtRisk = append(s.AtRisk, "the local cache is over its cap")
	}
	return s
}

func itoa(i int) string { return strconv.Itoa(i) }

func statSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// RepairState is the last repair's outcome.
type RepairState struct {
	At       time.Time `json:"at"`
	Repaired int       `json:"repaired"`
	Error    string    `json:"error,omitempty"`
}

// repairLoop runs the Remote's repair every RepairEvery.
func (n *Node) repairLoop() {
	defer n.wg.Done()
	m, ok := n.opts.Remote.(Maintainer)
	if !ok {
		return
	}
	t := time.NewTicker(n.opts.RepairEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.Repair(n.ctx, m)
	}
}

// Repair runs one repair now (status and tests).
func (n *Node) Repair(ctx context.Context, m Maintainer) RepairState {
	repaired, err := m.Repair(ctx)
	rs := RepairState{At: time.Now(), Repaired: repaired}
	if err != nil {
		rs.Error = err.Error()
		n.log.Warn("repair", "repaired", repaired, "err", err)
	} else if repaired > 0 {
		n.log.Info("repair restored full redundancy", "objects", repaired)
	}
	n.redMu.Lock()
	n.lastRepair = rs
	n.redAt = time.Time{} // census again
	n.redMu.Unlock()
	return rs
}

// redundancy is the Remote's census, at most 15 s old.
func (n *Node) redundancy(ctx context.Context) (Redundancy, bool) {
	m, isM := n.opts.Remote.(Maintainer)
	if !isM {
		return Redundancy{}, false
	}
	n.redMu.Lock()
	defer n.redMu.Unlock()
	if time.Since(n.redAt) > 15*time.Second {
		red, err := m.Census(ctx)
		if err != nil {
			return Redundancy{}, false
		}
		n.red, n.redAt = red, time.Now()
	}
	return n.red, true
}
