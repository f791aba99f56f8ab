// Command zdbfs mounts a POSIX filesystem stored in zdb namespaces.
//
//	zdbfs [-o option[,option…]] MOUNTPOINT
//
// Options (compatible with 0-db-fs): host=, port=, unix= (server of both
// namespaces); mh= mp= mu= (metadata server), dh= dp= du= (data server);
// ms= ds= (namespace passwords); mn= dn= (namespace names, default
// zdbfs-meta and zdbfs-data); size= (capacity reported by statfs, bytes,
// K/M/G/T suffixes); autons (create missing namespaces); background;
// cache= (block cache size), flushage= (dirty data age, e.g. 2s),
// readahead= (kernel readahead window, default 4M, 0 for the kernel's own; root only),
// procs= (Go processors, default the runtime's; procs=1 trades throughput for latency on 2 CPUs),
// syncclose (close of a written file waits until it is in zdb; by default it
// is stored in the background, and fsync, syncfs and unmount are the
// durability points; asyncclose, the default, is accepted); and the
// standard FUSE options (allow_other, ro, fsname=, debug, …), passed to the
// kernel. SIGINT and SIGTERM flush everything and unmount.
//
// ZDBFS_CPUPROFILE=FILE writes a CPU profile of the whole mount (a
// benchmarking aid).
package main

import (
	"context"
	"errors"
	"fmt"
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

type config struct {
	mountpoint string
	meta, data server
	size       uint64
	cache      int64
	flushAge   time.Duration
	syncClose  bool
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
		case a == "-f" || a == "-s":
		case a == "-d":
			c.mo.Debug = true
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("unknown flag %s", a)
		case c.mountpoint == "":
			c.mountpoint = a
		default:
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
	}
	if c.mountpoint == "" {
		return nil, errors.New("usage: zdbfs [-o options] MOUNTPOINT")
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

func openStore(ctx context.Context, s server, autons bool) (zdbfs.Store, error) {
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
	return zdbfs.NewClientStore(c), nil
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
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
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
	meta, err := openStore(ctx, c.meta, c.autons)
	if err != nil {
		return err
	}
	defer meta.Close()
	data, err := openStore(ctx, c.data, c.autons)
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
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "zdbfs:", err)
		os.Exit(1)
	}
}
