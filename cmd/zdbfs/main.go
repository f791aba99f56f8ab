// Command zdbfs mounts a POSIX filesystem stored in zdb namespaces.
//
//	zdbfs [-o option[,option…]] MOUNTPOINT
//	zdbfs --help | --version
//
// The options are listed by usage (zdbfs --help) and in the README. SIGINT
// and SIGTERM flush everything and unmount.
//
// ZDBFS_CPUPROFILE=FILE writes a CPU profile of the whole mount (a
// benchmarking aid).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"qss/zdb/client"
	"qss/zdbfs"
)

type server struct{ host, port, unix, password, name string }

// usageText is what --help prints: every option parseArgs takes.
const usageText = `usage: zdbfs [-o option[,option...]] MOUNTPOINT
       zdbfs --help | --version

Mounts a POSIX filesystem whose inodes, directories and data live in two
zdb namespaces (our zdb or the C 0-db v2). Unmount with umount,
fusermount3 -u, SIGINT or SIGTERM: all of them flush everything first.

zdb servers (0-db-fs compatible):
  host=HOST port=PORT    server of both namespaces (default 127.0.0.1:9900)
  unix=PATH              unix socket of both namespaces
  mh= mp= mu=            metadata namespace server: host, port, unix socket
  dh= dp= du=            data namespace server: host, port, unix socket
  mn=NAME dn=NAME        namespace names (default zdbfs-meta, zdbfs-data)
  ms=PASS ds=PASS        namespace passwords
  autons                 create missing namespaces (as admin with ms=/ds=)

Filesystem:
  size=N                 caps the size statfs reports (K/M/G/T suffixes;
                         default: what zdb and its disks can hold)
  cache=N                memory for cached blocks and inodes (default 64M)
  flushage=DURATION      dirty data older than this is stored (default 2s)
  syncclose              close of a written file waits until it is in zdb
  asyncclose             the default: stored in the background; fsync,
                         syncfs and unmount are the durability points
  closetimeout=DURATION  an unmount waits this long at most for zdb
                         (default 1m); past it, unflushed data is lost as
                         in a crash and zdbfs exits with an error
  readahead=N            kernel readahead window (default 4M; 0: the
                         kernel's; root only)
  procs=N                Go processors (default: the runtime's)
  background             detach once mounted

Kernel caching (for measurements; the defaults are the measured choice):
  entrytimeout=DURATION  how long the kernel trusts a name (default 1s)
  attrtimeout=DURATION   how long it trusts attributes (default 1s)
  negtimeout=DURATION    how long it caches "no such name" (default 0)
  nokillpriv             do not ask for FUSE_HANDLE_KILLPRIV_V2

FUSE:
  allow_other, ro, fsname=NAME, debug (log every request; also -d), and
  any other FUSE mount option, passed to the kernel. default_permissions
  is always on. -f and -s are accepted and ignored.

  -h, --help             this text
  -V, --version          the version
`

// errHelp and errVersion are --help and --version: not errors, requests.
var (
	errHelp    = errors.New("help requested")
	errVersion = errors.New("version requested")
)

// version is zdbfs's version with the module's VCS revision when the
// binary was built from a checkout.
func version() string {
	v := fmt.Sprintf("zdbfs 1.0 (format v%d", zdbfs.FormatVersion)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += ", revision " + s.Value[:12]
			}
		}
		v += ", " + bi.GoVersion
	}
	return v + ")"
}

type config struct {
	mountpoint string
	meta, data server
	size       uint64
	cache      int64
	flushAge   time.Duration
	syncClose  bool
	closeTime  time.Duration
	procs      int
	autons     bool
	background bool
	mo         zdbfs.MountOptions
}

func parseSize(s string) (uint64, error) {
	mul := uint64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mul = 1 << 10
		case 'm', 'M':
			mul = 1 << 20
		case 'g', 'G':
			mul = 1 << 30
		case 't', 'T':
			mul = 1 << 40
		}
		if mul > 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v * mul, err
}

func parseArgs(args []string) (*config, error) {
	c := &config{
		meta: server{host: "127.0.0.1", port: "9900", name: "zdbfs-meta"},
		data: server{host: "127.0.0.1", port: "9900", name: "zdbfs-data"},
	}
	var host, port, unix string
	var opts []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" && i+1 < len(args):
			i++
			opts = append(opts, strings.Split(args[i], ",")...)
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-h" || a == "--help" || a == "-help":
			return nil, errHelp
		case a == "-V" || a == "--version" || a == "-version":
			return nil, errVersion
		case a == "-f" || a == "-s":
		case a == "-d":
			c.mo.Debug = true
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("unknown flag %s (zdbfs --help lists the options)", a)
		case c.mountpoint == "":
			c.mountpoint = a
		default:
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
	}
	if c.mountpoint == "" {
		return nil, errors.New("no mountpoint given (usage: zdbfs [-o options] MOUNTPOINT; zdbfs --help lists the options)")
	}
	var metaSet, dataSet [3]bool
	for _, o := range opts {
		if o == "" {
			continue
		}
		k, v, _ := strings.Cut(o, "=")
		var err error
		switch k {
		case "host":
			host = v
		case "port":
			port = v
		case "unix":
			unix = v
		case "mh":
			c.meta.host, metaSet[0] = v, true
		case "mp":
			c.meta.port, metaSet[1] = v, true
		case "mu":
			c.meta.unix, metaSet[2] = v, true
		case "dh":
			c.data.host, dataSet[0] = v, true
		case "dp":
			c.data.port, dataSet[1] = v, true
		case "du":
			c.data.unix, dataSet[2] = v, true
		case "ms":
			c.meta.password = v
		case "ds":
			c.data.password = v
		case "mn":
			c.meta.name = v
		case "dn":
			c.data.name = v
		case "size":
			c.size, err = parseSize(v)
		case "cache":
			var n uint64
			n, err = parseSize(v)
			c.cache = int64(n)
		case "readahead":
			var n uint64
			n, err = parseSize(v)
			c.mo.ReadAhead = int(n)
			switch {
			case err != nil:
			case n == 0:
				c.mo.ReadAhead = -1 // the kernel's default
			case n < 4096:
				err = errors.New("at least 4K, or 0 for the kernel's default")
			}
		case "procs":
			c.procs, err = strconv.Atoi(v)
			if err == nil && c.procs < 1 {
				err = errors.New("must be at least 1")
			}
		case "flushage":
			c.flushAge, err = time.ParseDuration(v)
		case "closetimeout":
			c.closeTime, err = time.ParseDuration(v)
			if err == nil && c.closeTime <= 0 {
				err = errors.New("must be positive")
			}
		case "entrytimeout", "attrtimeout", "negtimeout":
			var d time.Duration
			d, err = time.ParseDuration(v)
			if err == nil && d == 0 {
				d = -1 // none
			}
			switch k {
			case "entrytimeout":
				c.mo.EntryTimeout = d
			case "attrtimeout":
				c.mo.AttrTimeout = d
			default:
				c.mo.NegativeTimeout = d
			}
		case "nokillpriv":
			c.mo.NoKillPriv = true
		case "syncclose":
			c.syncClose = true
		case "asyncclose": // the default
			c.syncClose = false
		case "autons":
			c.autons = true
		case "background":
			c.background = true
		case "allow_other":
			c.mo.AllowOther = true
		case "ro":
			c.mo.ReadOnly = true
		case "fsname":
			c.mo.FSName = v
		case "debug":
			c.mo.Debug = true
		case "default_permissions", "rw":
		default:
			c.mo.Options = append(c.mo.Options, o)
		}
		if err != nil {
			return nil, fmt.Errorf("option %s: %w", o, err)
		}
	}
	for _, s := range []struct {
		srv *server
		set [3]bool
	}{{&c.meta, metaSet}, {&c.data, dataSet}} {
		if host != "" && !s.set[0] {
			s.srv.host = host
		}
		if port != "" && !s.set[1] {
			s.srv.port = port
		}
		if unix != "" && !s.set[2] {
			s.srv.unix = unix
		}
	}
	return c, nil
}

func (s server) addr() string {
	if s.unix != "" {
		return s.unix
	}
	return s.host + ":" + s.port
}

func openStore(ctx context.Context, log *slog.Logger, s server, autons bool) (zdbfs.Store, error) {
	if autons {
		admin, err := client.New(ctx, client.Options{Addr: s.addr(), AdminPassword: s.password, PoolSize: 1})
		if err != nil {
			return nil, fmt.Errorf("autons: connect %s: %w", s.addr(), err)
		}
		err = admin.NSNew(ctx, s.name)
		if err == nil && s.password != "" {
			err = admin.NSSet(ctx, s.name, "password", s.password)
			if err == nil {
				err = admin.NSSet(ctx, s.name, "public", "0")
			}
		}
		admin.Close()
		if err != nil && !errors.Is(err, client.ErrNamespaceExists) {
			return nil, fmt.Errorf("autons: create namespace %s: %w", s.name, err)
		}
	}
	c, err := client.New(ctx, client.Options{Addr: s.addr(), Namespace: s.name, Password: s.password,
		DialTimeout: 3 * time.Second, IOTimeout: 30 * time.Second,
		PoolSize: 16}) // readahead runs up to 16 fetches at once
	if err != nil {
		return nil, fmt.Errorf("namespace %s on %s: %w", s.name, s.addr(), err)
	}
	cs := zdbfs.NewClientStore(c)
	if err := cs.Probe(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("namespace %s on %s: %w", s.name, s.addr(), err)
	}
	if !cs.Pipelining() {
		log.Info("server is not our zdb (the C 0-db?): one request at a time per connection, no pipelines",
			"namespace", s.name, "server", s.addr())
	}
	return cs, nil
}

// procs is the number of Go processors to run with, 0 to leave the
// runtime's choice: the procs= option. On a machine of two CPUs, procs=1
// serves FUSE requests one after another on one core, waking no second
// thread across CPUs per request, and leaves the other core to the
// application and zdb: creating 10,000 files took 1.12-1.55 s instead of
// 1.64-2.00 s, an untar 3.4-4.0 s instead of 4.1-5.2 s. It is not the
// default because the background work (flushing closed files, trimming
// the inode table) then shares that one processor with the requests and
// falls behind under a stream of creates: 200,000 files created by 4
// processes peaked at 110-190 MiB of RSS instead of 52 MiB with a 64 MiB
// cache, past the memory bound; and 4-job random reads lose a third.
func procs(opt int) int { return max(opt, 0) }

// readyFD is the pipe a background child reports its mount on.
const readyEnv = "ZDBFS_READY_FD"

func run(args []string) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	c.mo.CloseTimeout = c.closeTime
	level := slog.LevelInfo
	if c.mo.Debug {
		level = slog.LevelDebug // go-fuse's request log and diagnostics
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// What go-fuse (or anything else) prints with the standard log package
	// goes through the same handler.
	slog.SetDefault(log)
	// Before anything else: a user without the mount helper gets this one
	// error, not a failure after connecting to zdb.
	if err := zdbfs.CheckMountHelper(); err != nil {
		return err
	}
	if c.background && os.Getenv(readyEnv) == "" {
		return daemonize()
	}
	if path := os.Getenv("ZDBFS_CPUPROFILE"); path != "" {
		// A debugging aid for benchmarks: profile the whole mount.
		if pf, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A safety net for the Go heap at twice what the caches may hold
		// (a tighter limit makes the collector run without pause when the
		// caches are full).
		cache := c.cache
		if cache <= 0 {
			cache = 64 << 20
		}
		debug.SetMemoryLimit(2*cache + 64<<20)
	}
	if os.Getenv("GOGC") == "" {
		// The heap may grow to 1.5× what is live instead of 2×: what the
		// caches hold is most of it, and the cache size is the memory
		// bound users set.
		debug.SetGCPercent(50)
	}
	if n := procs(c.procs); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	ctx := context.Background()
	meta, err := openStore(ctx, log, c.meta, c.autons)
	if err != nil {
		return err
	}
	defer meta.Close()
	data, err := openStore(ctx, log, c.data, c.autons)
	if err != nil {
		return err
	}
	defer data.Close()
	if cs, ok := data.(*zdbfs.ClientStore); ok {
		cs.Parallel = 4 // block batches overlap (see ClientStore.Parallel)
	}
	f, err := zdbfs.New(ctx, zdbfs.Config{Meta: meta, Data: data, Capacity: c.size, CacheBytes: c.cache,
		FlushAge: c.flushAge, SyncClose: c.syncClose, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Logger: log})
	if err != nil {
		return err
	}
	m, err := zdbfs.MountFS(ctx, f, c.mountpoint, c.mo)
	if err != nil {
		f.Close(ctx)
		return err
	}
	log.Info("mounted", "mountpoint", c.mountpoint, "meta", c.meta.name, "data", c.data.name)
	if os.Getenv(readyEnv) != "" {
		if p := os.NewFile(3, "ready"); p != nil {
			p.Write([]byte("ok\n"))
			p.Close()
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- m.Wait() }()
	select {
	case err := <-done:
		return err
	case s := <-sigs:
		log.Info("signal: flushing and unmounting", "signal", s.String())
		return m.Unmount()
	}
}

// daemonize starts the same command in a new session and returns once it
// reports the filesystem mounted.
func daemonize() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), readyEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	w.Close()
	buf := make([]byte, 3)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "ok\n" {
		return errors.New("background zdbfs failed to mount (see its log)")
	}
	return nil
}

func main() {
	err := run(os.Args[1:])
	switch {
	case err == nil:
	case errors.Is(err, errHelp):
		fmt.Print(usageText)
	case errors.Is(err, errVersion):
		fmt.Println(version())
	default:
		printError(os.Stderr, err)
		os.Exit(1)
	}
}

// printError writes err with one "zdbfs: " prefix on each of its lines.
func printError(w io.Writer, err error) {
	for line := range strings.SplitSeq(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintln(w, "zdbfs: "+strings.TrimPrefix(line, "zdbfs: "))
	}
}
