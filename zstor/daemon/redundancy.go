package daemon

import (
	"slices"

	"qss/zstor"
)

// placements is where the objects' shards are, as of the last census: per
// object, its k and n and the distinct sets of backends its chunks are on
// (chunks placed alike are kept once). With it the health loop recomputes
// the repair backlog and the lowest redundancy the moment a backend's
// reachability changes, from the daemon's own health view and without
// reading the metadata again; the census that fills it runs only every
// RepairInterval. (The backlog used to be computed by listing every object
// against the client's cached health snapshot, so a lost backend showed in
// the gauges only at the next redundancy check: about 26 s on average.)
type placements struct {
	ids  map[string]int32 // backend ID → index
	same []int32          // index → index of the first backend with the same server identity
	objs map[string]objPlacement
}

type objPlacement struct {
	k, n   int
	chunks [][]int32 // distinct chunk placements: backend indexes, -1 for a shard with none
	listed int       // MinShards as the census computed it, until the health loop has a view
}

// newPlacements summarises a census. identity maps a backend ID to its
// server's identity: two spellings of one server count as one backend.
func newPlacements(es []zstor.Entry, identity func(id string) string) *placements {
	p := &placements{ids: map[string]int32{}, objs: make(map[string]objPlacement, len(es))}
	for _, e := range es {
		o := objPlacement{k: e.K, n: e.N, listed: e.MinShards}
		for _, ids := range e.Placement {
			c := make([]int32, len(ids))
			for i, id := range ids {
				c[i] = p.index(id)
			}
			if !slices.ContainsFunc(o.chunks, func(x []int32) bool { return slices.Equal(x, c) }) {
				o.chunks = append(o.chunks, c)
			}
		}
		p.objs[e.Key] = o
	}
	// Every spelling of one server maps to one representative index.
	first := map[string]int32{}
	p.same = make([]int32, len(p.ids))
	for id, i := range p.ids {
		p.same[i] = i
		if identity == nil {
			continue
		}
		if j, ok := first[identity(id)]; ok {
			p.same[i] = j
		} else {
			first[identity(id)] = i
		}
	}
	return p
}

func (p *placements) index(id string) int32 {
	if id == "" {
		return -1
	}
	i, ok := p.ids[id]
	if !ok {
		i = int32(len(p.ids))
		p.ids[id] = i
	}
	return i
}

// minShards is, for each object, the fewest shards of a chunk on reachable
// backends; reachable is nil when the health loop has not run yet, and the
// census's own figure is used.
func (p *placements) minShards(reachable func(id string) bool) map[string]int {
	out := make(map[string]int, len(p.objs))
	var reach []bool
	if reachable != nil {
		reach = make([]bool, len(p.ids))
		for id, i := range p.ids {
			reach[i] = reachable(id)
		}
	}
	for key, o := range p.objs {
		if reach == nil {
			out[key] = o.listed
			continue
		}
		m := o.n
		var seen []int32
		for _, c := range o.chunks {
			seen = seen[:0]
			for _, i := range c {
				if i >= 0 && reach[i] && !slices.Contains(seen, p.same[i]) {
					seen = append(seen, p.same[i])
				}
			}
			m = min(m, len(seen))
		}
		out[key] = m
	}
	return out
}

// reachableLocked reports, from the last health check, whether a data
// backend is reachable (nil before the first check). A backend that left
// the config is not. The caller holds st.mu.
func (st *state) reachableLocked() func(id string) bool {
	if st.data == nil {
		return nil
	}
	return func(id string) bool {
		s, ok := st.status[id]
		return ok && s != stateUnreachable
	}
}

// recomputeLocked refreshes the backlog and lowest-redundancy gauges from
// the placements and the last health view, and returns the minimum shards
// per object. The caller holds st.mu for writing.
func (st *state) recomputeLocked() map[string]int {
	if st.placed == nil {
		return nil
	}
	mins := st.placed.minShards(st.reachableLocked())
	backlog, lowest, first := 0, 0, true
	for key, m := range mins {
		o := st.placed.objs[key]
		if m < o.n {
			backlog++
		}
		if r := m - o.k; first || r < lowest {
			lowest, first = r, false
		}
	}
	st.redundancyKnown = true
	st.backlog, st.lowest = backlog, lowest
	return mins
}
