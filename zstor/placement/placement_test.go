package placement

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

func cands(groups ...int) []Candidate {
	var out []Candidate
	for g, n := range groups {
		for range n {
			i := len(out)
			out = append(out, Candidate{Index: i, ID: fmt.Sprint("b", i), Group: g, Free: int64(1000 - i)})
		}
	}
	return out
}

func countsOf(t *testing.T, all []Candidate, chosen []int, fixed []Candidate) []int {
	t.Helper()
	byIndex := map[int]Candidate{}
	for _, c := range all {
		byIndex[c.Index] = c
	}
	maxG := 0
	for _, c := range all {
		maxG = max(maxG, c.Group)
	}
	counts := make([]int, maxG+1)
	seen := map[string]bool{}
	for _, f := range fixed {
		counts[f.Group]++
		seen[f.ID] = true
	}
	for _, i := range chosen {
		c := byIndex[i]
		if seen[c.ID] {
			t.Fatalf("backend %s chosen twice", c.ID)
		}
		seen[c.ID] = true
		counts[c.Group]++
	}
	return counts
}

func TestSingleGroupPrefersFreeSpace(t *testing.T) {
	all := cands(8)
	all[7].Free = 1 << 40 // the last one has the most room
	got, err := Place(Rules{K: 4, N: 6}, all, nil, 6)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 7 {
		t.Fatalf("first choice %d, want the backend with most free space (7)", got[0])
	}
	for _, i := range got {
		if i == 5 || i == 6 {
			t.Fatalf("chose %d, which has less free space than unchosen ones: %v", i, got)
		}
	}
}

func TestSeveralGroups(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r      Rules
		groups []int
		ok     bool
		maxPer int // max shards in any group, 0 = no check
	}{
		{"two groups cannot survive a group loss", Rules{K: 4, N: 6, RedundantGroups: 1}, []int{3, 3}, false, 0},
		{"three groups survive one loss", Rules{K: 4, N: 6, RedundantGroups: 1}, []int{4, 4, 4}, true, 2},
		{"uneven groups", Rules{K: 2, N: 5, RedundantGroups: 1}, []int{1, 5, 5}, true, 3},
		{"nodes per group", Rules{K: 2, N: 6, RedundantNodes: 1}, []int{3, 3}, true, 0},
		{"groups and nodes", Rules{K: 2, N: 8, RedundantGroups: 1, RedundantNodes: 1}, []int{3, 3, 3}, true, 3},
		{"too strict", Rules{K: 4, N: 6, RedundantGroups: 1, RedundantNodes: 1}, []int{2, 2, 2}, false, 0},
		{"not enough backends", Rules{K: 4, N: 6}, []int{2, 3}, false, 0},
		{"many groups", Rules{K: 10, N: 16, RedundantGroups: 2}, []int{4, 4, 4, 4, 4, 4, 4, 4}, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := cands(tc.groups...)
			got, err := Place(tc.r, all, nil, tc.r.N)
			if !tc.ok {
				if !errors.Is(err, ErrImpossible) {
					t.Fatalf("got %v, %v; want ErrImpossible", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			counts := countsOf(t, all, got, nil)
			if !Valid(tc.r, counts) {
				t.Fatalf("invalid placement, counts %v", counts)
			}
			for _, c := range counts {
				if tc.maxPer > 0 && c > tc.maxPer {
					t.Fatalf("counts %v exceed %d in a group", counts, tc.maxPer)
				}
			}
		})
	}
}

func TestFixedAndDuplicates(t *testing.T) {
	all := cands(3, 3, 3)
	r := Rules{K: 4, N: 6, RedundantGroups: 1}
	// Two shards already in group 0: the rest must avoid group 0.
	fixed := []Candidate{all[0], all[1]}
	got, err := Place(r, all, fixed, 4)
	if err != nil {
		t.Fatal(err)
	}
	counts := countsOf(t, all, got, fixed)
	if !Valid(r, counts) || counts[0] != 2 {
		t.Fatalf("counts %v", counts)
	}
	// A duplicate config entry is one backend.
	dup := cands(6)
	dup[5].ID = dup[4].ID
	if _, err := Place(Rules{K: 4, N: 6}, dup, nil, 6); !errors.Is(err, ErrImpossible) {
		t.Fatalf("duplicate backend counted twice: %v", err)
	}
}

// TestAgainstBruteForce checks on random instances that Place succeeds
// exactly when some valid count vector exists, and returns a valid one.
func TestAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 400; iter++ {
		ng := 1 + rng.IntN(4)
		groups := make([]int, ng)
		for i := range groups {
			groups[i] = rng.IntN(5)
		}
		n := 1 + rng.IntN(8)
		r := Rules{K: 1 + rng.IntN(n), N: n, RedundantGroups: rng.IntN(3), RedundantNodes: rng.IntN(3)}
		all := cands(groups...)
		exists := false
		var rec func(g int, counts []int, left int)
		rec = func(g int, counts []int, left int) {
			if exists {
				return
			}
			if g == ng {
				if left == 0 && Valid(r, counts) {
					exists = true
				}
				return
			}
			for c := 0; c <= min(groups[g], left); c++ {
				rec(g+1, append(counts, c), left-c)
			}
		}
		rec(0, nil, n)
		got, err := Place(r, all, nil, n)
		if exists != (err == nil) {
			t.Fatalf("groups %v rules %+v: brute force says %v, Place says %v", groups, r, exists, err)
		}
		if err == nil {
			if c := countsOf(t, all, got, nil); !Valid(r, c) {
				t.Fatalf("groups %v rules %+v: invalid counts %v", groups, r, c)
			}
		}
	}
}

func TestPlaceAtLeastDegraded(t *testing.T) {
	all := cands(6)
	// All six usable: exactly Place.
	got, err := PlaceAtLeast(Rules{K: 4, N: 6}, all, nil, 6, 5)
	if err != nil || len(got) != 6 {
		t.Fatalf("healthy: %v, %v", got, err)
	}
	// One of six down: five shards, on distinct backends.
	got, err = PlaceAtLeast(Rules{K: 4, N: 6}, all[:5], nil, 6, 5)
	if err != nil || len(got) != 5 {
		t.Fatalf("one down: %v, %v", got, err)
	}
	countsOf(t, all, got, nil)
	// Two down with at least 5 required: refused.
	if _, err := PlaceAtLeast(Rules{K: 4, N: 6}, all[:4], nil, 6, 5); !errors.Is(err, ErrImpossible) {
		t.Fatalf("two down, at least 5: %v", err)
	}
	// With fixed shards (a rewrite of 2 shards, one backend left).
	fixed := all[:4]
	got, err = PlaceAtLeast(Rules{K: 4, N: 6}, all[4:5], fixed, 2, 5)
	if err != nil || len(got) != 1 || got[0] != 4 {
		t.Fatalf("fixed 4, one candidate: %v, %v", got, err)
	}
}

func TestPlaceAtLeastKeepsGroupRulesWhenItCan(t *testing.T) {
	// k=2 n=6, two groups of 3, redundant_groups=1: full placement 3+3.
	// With one backend of group 1 down, 3+2 still survives the loss of
	// either group (2 ≥ k): the degraded placement must keep that.
	all := cands(3, 3)
	r := Rules{K: 2, N: 6, RedundantGroups: 1}
	got, err := PlaceAtLeast(r, all[:5], nil, 6, 3)
	if err != nil || len(got) != 5 {
		t.Fatalf("%v, %v", got, err)
	}
	c := countsOf(t, all, got, nil)
	if !Valid(Rules{K: 2, N: 5, RedundantGroups: 1}, c) {
		t.Fatalf("degraded placement %v breaks the group rules it could keep", c)
	}
	// A whole group down: 3 shards in one group cannot survive losing it;
	// distinct backends only, and still 3 shards.
	got, err = PlaceAtLeast(r, all[:3], nil, 6, 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("group down: %v, %v", got, err)
	}
}
