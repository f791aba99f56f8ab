package zstor

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"qss/zstor/backend"
)

// One data backend may be configured under several spellings
// (127.0.0.1:P, localhost:P, [::ffff:127.0.0.1]:P, a host name): they are
// one failure domain and must never get two shards of a chunk. zstor merges
// them: backends whose addresses resolve to the same IP and port, or whose
// servers report the same identity (INFO instance_id and boot_time, which
// also catches addresses that differ yet reach one process), with the same
// namespace, count as one backend for placement. Records keep naming
// backends as configured (Backend.ID), so either spelling finds its shards.

// identities maps every configured backend to the identity placement
// compares. It is rebuilt with each health snapshot.
type identities struct {
	mu       sync.RWMutex
	resolved []string // per backend index: resolved "ip:port/namespace" (or the lower-cased address when resolution failed)
	server   []string // per backend index: server identity "instance@boot", "" when unknown
	canon    []string // per backend index: identity of its merged class
}

// resolveAll resolves every backend address once (at Open). Resolution
// failures (no DNS) fall back to the textual address.
func (c *Client) resolveAll(ctx context.Context) {
	all := c.backends.All()
	c.ids.resolved = make([]string, len(all))
	c.ids.server = make([]string, len(all))
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, b := range all {
		wg.Go(func() { c.ids.resolved[i] = resolveAddr(ctx, b.Config.Address) + "/" + b.Config.Namespace })
	}
	wg.Wait()
	c.mergeIdentities()
}

// resolveAddr returns "ip:port" for an address, IPv4-mapped IPv6 unmapped
// and, for a host name, the lowest of the addresses it resolves to (so
// "localhost" and "127.0.0.1" agree); the lower-cased address when it
// cannot be resolved.
func resolveAddr(ctx context.Context, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.ToLower(addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(ip.Unmap().WithZone(ip.Zone()).String(), port)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return strings.ToLower(addr)
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	slices.SortFunc(ips, func(a, b netip.Addr) int { return a.Compare(b) })
	return net.JoinHostPort(ips[0].String(), port)
}

// noteServerIDs records the server identities seen by a health snapshot
// (ids[i] "" = unknown; a known one is kept until replaced) and merges.
func (c *Client) noteServerIDs(ids []string) {
	c.ids.mu.Lock()
	changed := false
	for i, id := range ids {
		if id != "" && c.ids.server[i] != id {
			c.ids.server[i] = id
			changed = true
		}
	}
	c.ids.mu.Unlock()
	if changed {
		c.mergeIdentities()
	}
}

// mergeIdentities groups backends that share a resolved address or a
// server identity and namespace (transitively) and names each group after
// its first backend's configured ID; it warns about every new merge.
func (c *Client) mergeIdentities() {
	all := c.backends.All()
	c.ids.mu.Lock()
	defer c.ids.mu.Unlock()
	parent := make([]int, len(all))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	union := func(a, b int) {
		ra, rb := find(a), find(b)
		if ra < rb {
			parent[rb] = ra
		} else if rb < ra {
			parent[ra] = rb
		}
	}
	byResolved, byServer := map[string]int{}, map[string]int{}
	for i, b := range all {
		if j, ok := byResolved[c.ids.resolved[i]]; ok {
			union(i, j)
		} else {
			byResolved[c.ids.resolved[i]] = i
		}
		if s := c.ids.server[i]; s != "" {
			key := s + "/" + b.Config.Namespace
			if j, ok := byServer[key]; ok {
				union(i, j)
			} else {
				byServer[key] = i
			}
		}
	}
	canon := make([]string, len(all))
	for i := range all {
		r := find(i)
		canon[i] = all[r].ID()
		if r != i && (c.ids.canon == nil || c.ids.canon[i] != canon[i]) && all[r].ID() != all[i].ID() {
			c.log.Warn("zstor: two configured data backends are one server; they count as one backend (never two shards of a chunk)",
				slog.String("backend", all[i].String()), slog.String("same_as", all[r].String()))
		}
	}
	c.ids.canon = canon
}

// canonID is the identity placement compares to keep two shards of a chunk
// off one backend: the same for every spelling of one backend.
func (c *Client) canonID(b *backend.Backend) string {
	c.ids.mu.RLock()
	defer c.ids.mu.RUnlock()
	if all := c.backends.All(); b.Index < len(c.ids.canon) && all[b.Index] == b {
		return c.ids.canon[b.Index]
	}
	return b.ID()
}

// BackendIdentity returns the identity shared by every configured
// spelling of the backend b (see canonID); callers counting distinct
// backends compare these.
func (c *Client) BackendIdentity(b *backend.Backend) string { return c.canonID(b) }

// healthAll is Set.HealthAll plus, for each reachable backend, its server
// identity, fed to the merge of spellings.
func (c *Client) healthAll(ctx context.Context) []backend.Health {
	all := c.backends.All()
	out := make([]backend.Health, len(all))
	ids := make([]string, len(all))
	var wg sync.WaitGroup
	for i, b := range all {
		wg.Go(func() {
			out[i] = b.Health(ctx)
			if out[i].Reachable {
				if id, err := b.ServerID(ctx); err == nil && id != "" {
					ids[i] = id
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() == nil {
		c.noteServerIDs(ids)
	}
	return out
}
