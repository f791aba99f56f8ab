package dav

import (
	"net/http"
	"net/url"
	"strings"

	"qss/web/files"
)

// webdav.Handler evaluates the lock tokens of an If header (RFC 4918
// 10.4) but not its entity tags. Before handing over, ifETagsFail
// evaluates what the entity tags alone decide: each list of the header is
// a conjunction, so a list with an entity-tag condition that is false is
// false whatever its tokens say; when every list is false that way, the
// request fails with 412 as 10.4.1 requires.

// ifCond is one condition of an If list: a state token or an entity tag.
type ifCond struct {
	not   bool
	token string // "<...>" without the brackets, or ""
	etag  string // "[...]" without the brackets, or ""
}

// ifList is one parenthesised list, with the resource it applies to ("":
// the request's own).
type ifList struct {
	resource string
	conds    []ifCond
}

// parseIf parses an If header; ok is false for one it cannot read
// (webdav.Handler then answers it).
func parseIf(s string) (lists []ifList, ok bool) {
	resource := ""
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return lists, len(lists) > 0
		}
		switch s[0] {
		case '<':
			end := strings.IndexByte(s, '>')
			if end < 0 {
				return nil, false
			}
			resource, s = s[1:end], s[end+1:]
		case '(':
			l := ifList{resource: resource}
			s = s[1:]
			for {
				s = strings.TrimLeft(s, " \t")
				var c ifCond
				if strings.HasPrefix(s, "Not") {
					c.not, s = true, strings.TrimLeft(s[3:], " \t")
				}
				if s == "" {
					return nil, false
				}
				switch s[0] {
				case ')':
					if c.not || len(l.conds) == 0 {
						return nil, false
					}
					s = s[1:]
				case '<':
					end := strings.IndexByte(s, '>')
					if end < 0 {
						return nil, false
					}
					c.token, s = s[1:end], s[end+1:]
					l.conds = append(l.conds, c)
					continue
				case '[':
					end := strings.IndexByte(s, ']')
					if end < 2 {
						return nil, false
					}
					c.etag, s = s[1:end], s[end+1:]
					l.conds = append(l.conds, c)
					continue
				default:
					return nil, false
				}
				break
			}
			lists = append(lists, l)
		default:
			return nil, false
		}
	}
}

// ifETagsFail reports whether the request's If header is false on its
// entity tags alone (see above).
func (h *handler) ifETagsFail(r *http.Request) bool {
	hdr := r.Header.Get("If")
	if hdr == "" {
		return false
	}
	lists, ok := parseIf(hdr)
	if !ok {
		return false
	}
	for _, l := range lists {
		if !h.listFailsOnETag(r, l) {
			return false
		}
	}
	return true
}

func (h *handler) listFailsOnETag(r *http.Request, l ifList) bool {
	p := r.URL.Path
	if l.resource != "" {
		u, err := url.Parse(l.resource)
		if err != nil || (u.Host != "" && !strings.EqualFold(u.Host, r.Host)) {
			return false // not ours to judge: webdav.Handler does
		}
		p = u.Path
	}
	name, err := h.name(p)
	if err != nil {
		return false
	}
	current := ""
	if st, err := h.fs.Stat(r.Context(), name); err == nil {
		current = files.ETag(st)
	}
	for _, c := range l.conds {
		if c.etag == "" {
			continue
		}
		match := current != "" && strings.TrimPrefix(c.etag, "W/") == strings.TrimPrefix(current, "W/")
		if match == c.not {
			return true
		}
	}
	return false
}
