// Package placement chooses the backends that receive the n shards of a
// chunk, under the rules of 0-stor_v2:
//
//   - never two shards of a chunk on one backend;
//   - redundant_groups (G): any G whole groups may be lost, and
//   - redundant_nodes (R): any R backends of every remaining group may be
//     lost, and still at least k shards of the chunk survive.
//
// With c_g shards in group g, the worst loss is R shards of every group plus
// the G largest excesses e_g = max(0, c_g − R); so a placement is valid when
// the sum of the excesses outside the G largest is at least k.
//
// 0-stor_v2 searches every combination of backends, which explodes with
// several groups. Here a placement is built greedily in polynomial time:
// candidates are taken in order of preference (most free space first) and a
// candidate is kept only when the placement can still be completed, which an
// exact feasibility test decides (see feasible). The greedy choice therefore
// never paints itself into a corner: if any valid placement exists, one is
// found.
package placement

import (
	"errors"
	"fmt"
	"sort"
)

// Rules are the redundancy parameters of the config.
type Rules struct {
	K, N            int
	RedundantGroups int // G
	RedundantNodes  int // R
}

// Candidate is a backend that may receive a shard.
type Candidate struct {
	Index int    // the caller's backend index, returned in the placement
	ID    string // identity: two candidates with one ID are one backend
	Group int    // failure domain
	Free  int64  // free bytes; <0 = unknown (ranked after known free space)
}

// ErrImpossible is wrapped by the error returned when no valid placement
// exists among the candidates.
var ErrImpossible = errors.New("no placement satisfies the redundancy rules")

// Place chooses want more backends among cands, on top of the fixed ones
// (backends already holding shards of the chunk, which count towards the
// group rules and are never chosen again), so that the fixed and chosen
// backends together (want+len(fixed) = N shards) satisfy the rules. It
// returns the chosen Candidate.Index values in order of preference.
// Candidates whose ID equals a fixed one are skipped.
func Place(r Rules, cands []Candidate, fixed []Candidate, want int) ([]int, error) {
	if r.K < 1 || r.N < r.K {
		return nil, fmt.Errorf("placement: invalid k=%d n=%d", r.K, r.N)
	}
	if want < 0 || want+len(fixed) != r.N {
		return nil, fmt.Errorf("placement: %d fixed + %d wanted shards, want n=%d", len(fixed), want, r.N)
	}
	groups := map[int]int{} // group id → dense index
	dense := func(g int) int {
		if i, ok := groups[g]; ok {
			return i
		}
		groups[g] = len(groups)
		return groups[g]
	}
	used := map[string]bool{}
	var fixedCount []int
	grow := func(i int) {
		for len(fixedCount) <= i {
			fixedCount = append(fixedCount, 0)
		}
	}
	for _, f := range fixed {
		if used[f.ID] {
			return nil, fmt.Errorf("placement: backend %s holds two shards of the chunk", f.ID)
		}
		used[f.ID] = true
		g := dense(f.Group)
		grow(g)
		fixedCount[g]++
	}
	// Deduplicate and rank candidates.
	var pool []Candidate
	for _, c := range cands {
		if used[c.ID] {
			continue
		}
		used[c.ID] = true
		pool = append(pool, c)
	}
	sort.SliceStable(pool, func(i, j int) bool { return better(pool[i], pool[j]) })
	avail := make([]int, 0)
	for _, c := range pool {
		g := dense(c.Group)
		grow(g)
		for len(avail) <= g {
			avail = append(avail, 0)
		}
		avail[g]++
	}
	for len(avail) < len(fixedCount) {
		avail = append(avail, 0)
	}
	if !feasible(r, fixedCount, avail) {
		return nil, impossible(r, fixedCount, avail, want)
	}
	var out []int
	for _, c := range pool {
		if len(out) == want {
			break
		}
		g := groups[c.Group]
		avail[g]--
		fixedCount[g]++
		if feasible(r, fixedCount, avail) {
			out = append(out, c.Index)
		} else {
			fixedCount[g]--
		}
	}
	if len(out) != want { // cannot happen: feasibility is kept at each step
		return nil, impossible(r, fixedCount, avail, want)
	}
	return out, nil
}

// better ranks known free space above unknown, then more free space first.
func better(a, b Candidate) bool {
	if (a.Free < 0) != (b.Free < 0) {
		return a.Free >= 0
	}
	return a.Free > b.Free
}

func impossible(r Rules, fixed, avail []int, want int) error {
	per := make([]int, len(avail))
	for i := range per {
		per[i] = avail[i] + fixed[i]
	}
	return fmt.Errorf("placement: %w: %d shards (k=%d, n=%d) cannot be spread over the usable backends per group %v so that losing %d whole group(s) and %d backend(s) in every other group still leaves %d shards",
		ErrImpossible, want, r.K, r.N, per, r.RedundantGroups, r.RedundantNodes, r.K)
}

// Valid reports whether the given per-group shard counts satisfy the rules.
func Valid(r Rules, counts []int) bool {
	ex := make([]int, 0, len(counts))
	total := 0
	for _, c := range counts {
		ex = append(ex, max(0, c-r.RedundantNodes))
		total += c
	}
	if total != r.N {
		return false
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ex)))
	left := 0
	for i, e := range ex {
		if i >= r.RedundantGroups {
			left += e
		}
	}
	return left >= r.K
}

// feasible reports whether per-group counts c_g with fixed_g ≤ c_g ≤
// fixed_g + avail_g and Σc_g = N exist that satisfy the rules.
//
// The survivors of the worst loss are f(c) = Σe_g minus the G largest e_g,
// which equals max over t ≥ 0 of Σ min(e_g, t) − G·t. Adding shards never
// lowers f, so for each t we maximise Σ min(e_g, t) with the shards still to
// place: a group with fewer than R shards must first get R − fixed_g "free"
// shards (its opening cost) before each further shard adds one, up to t. A
// 0/1 knapsack over the groups' opening costs gives the best total; the
// shards left over go anywhere (there is room: Σavail ≥ need is checked).
// Cost: O(N · groups · N).
func feasible(r Rules, fixed, avail []int) bool {
	need := r.N
	totalAvail := 0
	for i := range fixed {
		need -= fixed[i]
		totalAvail += avail[i]
	}
	if need < 0 || totalAvail < need {
		return false
	}
	R, G := r.RedundantNodes, r.RedundantGroups
	dp := make([]int, need+1)
	for t := 0; t <= r.N; t++ {
		base := 0
		for i := range dp {
			dp[i] = -1
		}
		dp[0] = 0
		for g := range fixed {
			e := max(0, fixed[g]-R)
			v := min(e, t)
			base += v
			open := max(0, R-fixed[g])
			w := max(0, min(t, fixed[g]+avail[g]-R)) - v // units this group can add
			if w <= 0 || open > need {
				continue
			}
			for o := need; o >= open; o-- {
				if dp[o-open] >= 0 && dp[o-open]+w > dp[o] {
					dp[o] = dp[o-open] + w
				}
			}
		}
		best := 0
		for o, W := range dp {
			if W >= 0 {
				best = max(best, min(W, need-o))
			}
		}
		if base+best-G*t >= r.K {
			return true
		}
	}
	return false
}

// PlaceAtLeast is Place for a degraded cluster: when no valid placement of
// all want shards exists among cands (backends are down, full or missing),
// it places as many as it can, but never so few that fixed and chosen
// shards together are fewer than atLeast. For each count, from want down,
// it first tries the group rules applied to that smaller number of shards
// (losing G groups and R backends per group still leaves K), then distinct
// backends only; the first count that works wins, so more shards beat
// stricter spreading. The shards left out are the caller's to place later
// (repair). With atLeast ≥ len(fixed)+want it is exactly Place.
func PlaceAtLeast(r Rules, cands []Candidate, fixed []Candidate, want, atLeast int) ([]int, error) {
	out, err := Place(r, cands, fixed, want)
	if err == nil || !errors.Is(err, ErrImpossible) {
		return out, err
	}
	first := err
	lowest := max(atLeast-len(fixed), 0)
	for m := want - 1; m >= lowest && m >= 0; m-- {
		total := len(fixed) + m
		if total < r.K {
			break
		}
		sub := Rules{K: r.K, N: total, RedundantGroups: r.RedundantGroups, RedundantNodes: r.RedundantNodes}
		if out, err := Place(sub, cands, fixed, m); err == nil {
			return out, nil
		}
		if out, err := Place(Rules{K: r.K, N: total}, cands, fixed, m); err == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w; and not even %d of the %d shards fit on distinct usable backends", first, atLeast, len(fixed)+want)
}
