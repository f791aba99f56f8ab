package files

import (
	"net/http"
	"strconv"
	"strings"

	"qss/web/fsys"
)

// Search bounds: the default and largest number of results, and the most
// names one search looks at (a search of a huge tree answers what it
// found with truncated set, rather than walking for minutes).
const (
	DefaultSearchLimit = 200
	MaxSearchLimit     = 1000
	MaxSearchVisit     = 200000
)

// search answers the names under path containing q, case-insensitive,
// walking breadth first (near results first), not following symlinks,
// and stopping when the client goes away.
func (a *API) search(w http.ResponseWriter, r *http.Request) {
	root, err := queryPath(r, "path")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query().Get("q")
	if strings.TrimSpace(q) == "" || len(q) > fsys.MaxName || strings.ContainsAny(q, "/\x00") {
		a.fail(w, r, badf("q: a term of 1 to %d bytes without / is needed", fsys.MaxName))
		return
	}
	limit := DefaultSearchLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxSearchLimit {
			a.fail(w, r, badf("limit: a number from 1 to %d", MaxSearchLimit))
			return
		}
		limit = n
	}
	st, err := a.fs.Stat(root)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !st.IsDir() {
		a.fail(w, r, badf("%s is not a folder", fsys.Display(root)))
		return
	}
	term := strings.ToLower(q)
	entries := []Entry{}
	truncated := false
	visited := 0
	queue := []string{root}
walk:
	for len(queue) > 0 {
		if err := r.Context().Err(); err != nil {
			return // the client is gone: nobody to answer
		}
		dir := queue[0]
		queue = queue[1:]
		des, err := a.fs.ReadDir(dir)
		if err != nil {
			continue // removed meanwhile or unreadable: search the rest
		}
		for _, de := range des {
			if dir == "." && fsys.IsReserved(de.Name()) {
				continue
			}
			visited++
			if visited > MaxSearchVisit {
				truncated = true
				break walk
			}
			name := fsys.Join(dir, de.Name())
			if de.IsDir() {
				queue = append(queue, name)
			}
			if !strings.Contains(strings.ToLower(de.Name()), term) {
				continue
			}
			if len(entries) == limit {
				truncated = true
				break walk
			}
			info, err := de.Info()
			if err != nil {
				continue
			}
			entries = append(entries, a.entry(name, info))
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Entries   []Entry `json:"entries"`
		Truncated bool    `json:"truncated"`
	}{entries, truncated})
}
