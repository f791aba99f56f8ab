package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"qss/zstor"
	"qss/zstor/backend"
	"qss/zstor/config"
	"qss/zstor/meta"
	"qss/zstor/placement"
)

// test and status ask every backend directly (never through the daemon):
// they are how an operator finds out what works.

// probeTimeout bounds the dial and each request of a probe.
const probeTimeout = 3 * time.Second

// probeRow is one backend's state as test and status report it.
type probeRow struct {
	kind      string // "meta" or "data"
	group     int    // data group; -1 for metadata
	name      string // address/namespace, or the etcd endpoint
	reachable bool
	mode      string // NSINFO's mode ("" unknown, or etcd)
	modeOK    bool   // seq mode for data, user mode for zdb metadata
	err       string // why not reachable
	entries   int64  // -1 unknown
	used      int64  // -1 unknown
	free      int64  // -1 unknown
	usage     float64
	health    backend.Health // data backends: the NSINFO answer
}

func (r probeRow) usable() bool { return r.reachable && r.modeOK }

// backendJSON is one backend in the --json output of test and status;
// unknown numbers are null.
type backendJSON struct {
	Kind      string   `json:"kind"`
	Group     *int     `json:"group"` // null for metadata
	Backend   string   `json:"backend"`
	Reachable bool     `json:"reachable"`
	Mode      string   `json:"mode,omitempty"`
	ModeOK    bool     `json:"mode_ok"`
	Entries   *int64   `json:"entries"`
	Used      *int64   `json:"used_bytes"`
	Free      *int64   `json:"free_bytes"`
	Usage     *float64 `json:"usage_percent"`
	Error     string   `json:"error,omitempty"`
}

func (r probeRow) json() backendJSON {
	known := func(n int64) *int64 {
		if n < 0 {
			return nil
		}
		return &n
	}
	b := backendJSON{Kind: r.kind, Backend: r.name, Reachable: r.reachable, Mode: r.mode, ModeOK: r.modeOK,
		Entries: known(r.entries), Used: known(r.used), Free: known(r.free), Error: r.err}
	if r.group >= 0 {
		g := r.group
		b.Group = &g
	}
	if r.usage >= 0 {
		u := r.usage
		b.Usage = &u
	}
	return b
}

// probe is the state of every configured backend.
type probe struct {
	meta       []probeRow
	metaQuorum int // usable metadata backends the store needs
	data       []probeRow
}

// probeBackends asks every metadata and data backend for its state, all
// at once.
func probeBackends(ctx context.Context, cfg *config.Config, log *slog.Logger) *probe {
	p := &probe{}
	opts := backend.Options{DialTimeout: probeTimeout, IOTimeout: probeTimeout, PoolSize: 1, DownFor: -1, Logger: log}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if cfg.Meta.Type == config.MetaEtcd {
			p.meta, p.metaQuorum = probeEtcd(ctx, cfg.Meta, log), 1
			return
		}
		// The zdb metadata backends answer NSINFO like data backends do.
		set := backend.New([]config.Group{{Backends: cfg.Meta.Backends}}, opts)
		defer set.Close()
		for _, h := range set.HealthAll(ctx) {
			r := rowOf("meta", -1, h)
			r.modeOK = r.reachable && !strings.HasPrefix(h.Mode, "seq")
			p.meta = append(p.meta, r)
		}
		p.metaQuorum = len(cfg.Meta.Backends)/2 + 1
	}()
	set := backend.New(cfg.Groups, opts)
	defer set.Close()
	for _, h := range set.HealthAll(ctx) {
		r := rowOf("data", h.Backend.Group, h)
		r.modeOK = r.reachable && h.Seq()
		p.data = append(p.data, r)
	}
	<-done
	return p
}

func rowOf(kind string, group int, h backend.Health) probeRow {
	r := probeRow{kind: kind, group: group, name: h.Backend.String(), reachable: h.Reachable, mode: h.Mode,
		entries: -1, used: -1, free: -1, usage: -1, health: h}
	if !h.Reachable {
		if h.Err != nil {
			r.err = h.Err.Error()
		}
		return r
	}
	r.entries, r.used, r.free, r.usage = h.Entries, h.Used, h.Free(), h.UsagePercent()
	return r
}

// probeEtcd reports each etcd endpoint, and the number of records.
func probeEtcd(ctx context.Context, m config.Meta, log *slog.Logger) []probeRow {
	var rows []probeRow
	s, err := meta.NewEtcd(ctx, m.Endpoints, m.Prefix, m.Username, m.Password,
		meta.WithEtcdTimeouts(probeTimeout, probeTimeout), meta.WithEtcdLogger(log))
	if err != nil {
		for _, ep := range m.Endpoints {
			rows = append(rows, probeRow{kind: "meta", group: -1, name: ep, err: err.Error(), entries: -1, used: -1, free: -1, usage: -1})
		}
		return rows
	}
	defer s.Close()
	records := int64(0)
	for _, err := range s.Keys(ctx, "") {
		if err != nil {
			records = -1
			break
		}
		records++
	}
	for _, h := range s.Health(ctx) {
		r := probeRow{kind: "meta", group: -1, name: h.Address, reachable: h.Reachable, modeOK: h.Reachable,
			err: h.Err, entries: -1, used: -1, free: -1, usage: -1}
		if h.Reachable {
			r.entries = records
		}
		rows = append(rows, r)
	}
	return rows
}

func (a *app) testCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "test",
		Short: "check the config: reach every backend, check its mode, compute a placement",
		Long: "Connect to every metadata and data backend, check that it answers and that its\n" +
			"namespace has the right mode, and compute a placement of a chunk's shards.\n" +
			"The exit status is 1 when the config cannot work.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.loadConfig(); err != nil {
				return err
			}
			return a.test(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// test prints one line per backend, then the placement, and fails when
// the metadata store lacks a quorum or no placement is possible.
func (a *app) test(ctx context.Context, asJSON bool) error {
	cfg := a.cfg
	p := probeBackends(ctx, cfg, a.log)
	var tw io.Writer = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	if asJSON {
		tw = io.Discard
	}
	var problems []string

	okMeta := 0
	for _, r := range p.meta {
		detail := ""
		switch {
		case !r.reachable:
			detail = "unreachable: " + r.err
		case !r.modeOK:
			detail = fmt.Sprintf("namespace in %s mode; metadata needs a user-mode namespace", r.mode)
		case cfg.Meta.Type == config.MetaEtcd:
			detail = "etcd"
		default:
			detail = r.mode + " mode"
		}
		fmt.Fprintf(tw, "meta\t%s\t%s\t%s\n", okWord(r.usable()), r.name, detail)
		if r.usable() {
			okMeta++
		}
	}
	if okMeta < p.metaQuorum {
		problems = append(problems, fmt.Sprintf("%d of %d metadata backends usable, %d needed", okMeta, len(p.meta), p.metaQuorum))
	}

	var cands []placement.Candidate
	for i, r := range p.data {
		detail := fmt.Sprintf("group %d: ", r.group)
		switch {
		case !r.reachable:
			detail += "unreachable: " + r.err
		case !r.modeOK:
			detail += fmt.Sprintf("namespace in %s mode; data needs a sequential-mode namespace", r.mode)
		default:
			detail += fmt.Sprintf("%s mode, %s free", r.mode, sizeString(r.free))
			cands = append(cands, placement.Candidate{Index: i, ID: r.health.Backend.ID(), Group: r.group, Free: r.free})
		}
		fmt.Fprintf(tw, "data\t%s\t%s\t%s\n", okWord(r.usable()), r.name, detail)
	}
	rules := placement.Rules{K: cfg.MinimalShards, N: cfg.ExpectedShards,
		RedundantGroups: cfg.RedundantGroups, RedundantNodes: cfg.RedundantNodes}
	picks, err := placement.Place(rules, cands, nil, cfg.ExpectedShards)
	var names []string
	if err != nil {
		fmt.Fprintf(tw, "placement\tFAIL\t-\t%v\n", err)
		problems = append(problems, fmt.Sprintf("no placement of %d shards on the %d usable data backends", cfg.ExpectedShards, len(cands)))
	} else {
		for _, i := range picks {
			names = append(names, p.data[i].name)
		}
		fmt.Fprintf(tw, "placement\tok\tk=%d n=%d\t%s\n", cfg.MinimalShards, cfg.ExpectedShards, strings.Join(names, ", "))
	}
	if f, ok := tw.(*tabwriter.Writer); ok {
		f.Flush()
	}
	if asJSON {
		type placementJSON struct {
			OK       bool     `json:"ok"`
			K        int      `json:"k"`
			N        int      `json:"n"`
			Backends []string `json:"backends"`
			Error    string   `json:"error,omitempty"`
		}
		out := struct {
			OK        bool          `json:"ok"`
			Backends  []backendJSON `json:"backends"`
			Placement placementJSON `json:"placement"`
			Problems  []string      `json:"problems"`
		}{OK: len(problems) == 0, Problems: append([]string{}, problems...),
			Placement: placementJSON{OK: err == nil, K: cfg.MinimalShards, N: cfg.ExpectedShards, Backends: append([]string{}, names...)}}
		if err != nil {
			out.Placement.Error = err.Error()
		}
		for _, r := range append(p.meta, p.data...) {
			out.Backends = append(out.Backends, r.json())
		}
		if err := a.writeJSON(out); err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("zstor test: the config cannot work: %s", strings.Join(problems, "; "))
	}
	if !asJSON {
		a.printf("config OK: %d of %d metadata and %d of %d data backends usable", okMeta, len(p.meta), len(cands), len(p.data))
	}
	return nil
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "a table of the metadata and data backends, and the objects' redundancy; exit 1 when anything is degraded",
		Long: "Print a table of the metadata and data backends (reachable, mode, entries, used,\n" +
			"free, usage) and a count of the stored objects by health. The exit status is 1, with\n" +
			"one line on stderr naming the problems, when a backend is unreachable or in the wrong\n" +
			"mode, the objects cannot be listed, or an object is below full redundancy; 0 when all\n" +
			"is well.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.loadConfig(); err != nil {
				return err
			}
			return a.status(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// objectHealth counts the stored objects by health, for status.
type objectHealth struct {
	Total      int    `json:"total"`
	Healthy    int    `json:"healthy"`
	Degraded   int    `json:"degraded"`
	Unreadable int    `json:"unreadable"`
	Error      string `json:"error,omitempty"` // the objects could not be listed
}

// objectsHealth lists every object (through the daemon when one runs) and
// counts them by health.
func (a *app) objectsHealth(ctx context.Context) objectHealth {
	var h objectHealth
	o, _, err := a.openOps(ctx)
	if err == nil {
		defer o.Close()
		var es []zstor.Entry
		es, _, err = o.List(ctx, "")
		for _, e := range es {
			h.Total++
			switch {
			case e.MinShards < e.K:
				h.Unreadable++
			case e.MinShards < e.N:
				h.Degraded++
			default:
				h.Healthy++
			}
		}
	}
	if err != nil {
		h.Error = oneLine(err)
	}
	return h
}

// status prints the backends and the objects' health, and fails when
// anything is less than fully healthy.
func (a *app) status(ctx context.Context, asJSON bool) error {
	p := probeBackends(ctx, a.cfg, a.log)
	objs := a.objectsHealth(ctx)
	var problems []string
	down, wrong := 0, 0
	rows := append(p.meta, p.data...)
	for _, r := range rows {
		switch {
		case !r.reachable:
			down++
		case !r.modeOK:
			wrong++
		}
	}
	if down > 0 {
		problems = append(problems, fmt.Sprintf("%d backends unreachable", down))
	}
	if wrong > 0 {
		problems = append(problems, fmt.Sprintf("%d backends in the wrong mode", wrong))
	}
	if objs.Error != "" {
		problems = append(problems, "the objects cannot be listed: "+objs.Error)
	}
	if objs.Degraded > 0 {
		problems = append(problems, fmt.Sprintf("%d objects below full redundancy", objs.Degraded))
	}
	if objs.Unreadable > 0 {
		problems = append(problems, fmt.Sprintf("%d objects unreadable until backends return", objs.Unreadable))
	}
	if asJSON {
		out := struct {
			OK       bool          `json:"ok"`
			Backends []backendJSON `json:"backends"`
			Objects  objectHealth  `json:"objects"`
			Problems []string      `json:"problems"`
		}{OK: len(problems) == 0, Objects: objs, Problems: append([]string{}, problems...)}
		for _, r := range rows {
			out.Backends = append(out.Backends, r.json())
		}
		if err := a.writeJSON(out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tGROUP\tBACKEND\tREACHABLE\tMODE\tENTRIES\tUSED\tFREE\tUSAGE\tNOTE")
		for _, r := range rows {
			group, mode, note := "-", "-", r.err
			if r.group >= 0 {
				group = strconv.Itoa(r.group)
			}
			if r.mode != "" {
				mode = r.mode
			}
			if r.reachable && !r.modeOK {
				note = "wrong mode"
			}
			usage := "-"
			if r.usage >= 0 {
				usage = fmt.Sprintf("%.1f%%", r.usage)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.kind, group, r.name, yesNo(r.reachable), mode,
				count(r.entries), sizeString(r.used), sizeString(r.free), usage, note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if objs.Error == "" {
			a.printf("objects: %d (%d healthy, %d degraded, %d unreadable)", objs.Total, objs.Healthy, objs.Degraded, objs.Unreadable)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("zstor status: %s", strings.Join(problems, "; "))
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func count(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// sizeString renders bytes in binary units without a space ("1.5GiB"),
// so that the columns split on whitespace; "-" when unknown.
func sizeString(n int64) string {
	if n < 0 {
		return "-"
	}
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(1024), 0
	for m := n / 1024; m >= 1024 && exp < 5; m /= 1024 {
		div *= 1024
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
