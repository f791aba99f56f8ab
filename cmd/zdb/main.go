// Command zdb is a 0-db v2 compatible key-value server (docs/zdb.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"qss/zdb"
	"qss/zdb/server"
)

type config struct {
	data, index, listen, socket, mode, admin, hook, logfile string
	port                                                    int
	dualnet, protect, sync, background, verbose, dump, ver  bool
	datasize, maxsize                                       int64
	inflight                                                size
	synctime, rotate                                        int
	compactRatio                                            float64
	compactHorizon                                          time.Duration
	compactInterval                                         time.Duration
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	var c config
	fs := flag.NewFlagSet("zdb", flag.ContinueOnError)
	fs.StringVar(&c.data, "data", "./zdb-data", "data files directory")
	fs.StringVar(&c.index, "index", "./zdb-index", "index files directory")
	fs.StringVar(&c.listen, "listen", "127.0.0.1", "listen address (0-db's default is ::; ours is loopback)")
	fs.IntVar(&c.port, "port", 9900, "listen port")
	fs.StringVar(&c.socket, "socket", "", "unix socket path (instead of TCP, unless --dualnet)")
	fs.BoolVar(&c.dualnet, "dualnet", false, "listen on both TCP and the unix socket")
	fs.StringVar(&c.mode, "mode", "", "single runtime mode: user or seq (direct is seq); default: mixed, per namespace")
	fs.Int64Var(&c.datasize, "datasize", zdb.DefaultDataSize, "data file size before rotation, in bytes")
	fs.Int64Var(&c.maxsize, "maxsize", 0, "default maxsize of namespaces, in bytes (0: unlimited)")
	c.inflight = size(defaultInFlight())
	fs.Var(&c.inflight, "inflight", "memory that requests in flight may hold, all connections together (`BYTES`, or with a K, M or G suffix)")
	fs.StringVar(&c.admin, "admin", "", "admin password (without it every client is admin)")
	fs.BoolVar(&c.protect, "protect", false, "make the default namespace read-only without the admin password")
	fs.StringVar(&c.hook, "hook", "", "executable called on events")
	fs.BoolVar(&c.sync, "sync", false, "fsync every write")
	fs.IntVar(&c.synctime, "synctime", 0, "fsync every N seconds")
	fs.IntVar(&c.rotate, "rotate", 0, "rotate changed data files every N seconds")
	fs.Float64Var(&c.compactRatio, "compact-ratio", zdb.DefaultCompactRatio, "compact a namespace when this share of its data files is dead (0: only on COMPACT)")
	fs.DurationVar(&c.compactInterval, "compact-interval", 10*time.Second, "how often the dead share of each namespace is checked against --compact-ratio")
	fs.DurationVar(&c.compactHorizon, "compact-horizon", 0, "never compact files changed within this long (HISTORY keeps every version written within it)")
	fs.BoolVar(&c.background, "background", false, "run in the background")
	fs.StringVar(&c.logfile, "logfile", "", "log to this file instead of stderr")
	fs.BoolVar(&c.verbose, "verbose", false, "debug logging")
	fs.BoolVar(&c.dump, "dump", false, "print the index entries of every namespace and exit")
	fs.BoolVar(&c.ver, "version", false, "print the version and exit")
	// Exit statuses are 0-db's: --help prints the usage on stdout and
	// exits 1, as does any command-line mistake (EXIT_FAILURE).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(os.Stdout, fs)
			return 1
		}
		fmt.Fprintf(os.Stderr, "zdb: %v (zdb --help lists the flags)\n", err)
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "zdb: unexpected argument %q (zdb --help lists the flags)\n", fs.Arg(0))
		return 1
	}
	if c.ver {
		fmt.Println("zdb", server.Version)
		return 0
	}
	direct := c.mode == "direct"
	if direct {
		c.mode = "seq" // 0-db replaced its direct mode by seq and takes the name as seq
	}
	if err := validate(&c); err != nil {
		fmt.Fprintln(os.Stderr, "zdb:", err)
		return 1
	}
	if c.background && os.Getenv("ZDB_DAEMONIZED") == "" {
		return daemonize(argv)
	}

	var out io.Writer = os.Stderr
	if c.logfile != "" {
		f, err := os.OpenFile(c.logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "zdb:", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	if direct {
		log.Warn("--mode direct is seq: 0-db replaced its direct mode by the sequential one")
	}

	if c.dump {
		// 0-db creates missing directories before anything, --dump included.
		for _, dir := range []string{c.data, c.index} {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				fmt.Fprintln(os.Stderr, "zdb:", err)
				return 1
			}
		}
		if err := zdb.Dump(os.Stdout, c.index); err != nil {
			fmt.Fprintln(os.Stderr, "zdb:", err)
			return 1
		}
		return 0
	}
	if path := os.Getenv("ZDB_CPUPROFILE"); path != "" {
		// A debugging aid for benchmarks: profile the whole run.
		f, err := os.Create(path)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	return serve(c, log)
}

// usage prints the flags the way they are written on the command line.
func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "Usage: zdb [flags]   (single-dash forms work too)")
	fmt.Fprintln(w)
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		arg := "--" + f.Name
		if name != "" {
			arg += " " + name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  %-26s %s%s\n", arg, help, def)
	})
}

func validate(c *config) error {
	if c.mode != "" && c.mode != "user" && c.mode != "seq" {
		return fmt.Errorf("--mode must be user or seq, not %q", c.mode)
	}
	if c.datasize < zdb.MinDataSize || c.datasize > zdb.MaxDataSize {
		return fmt.Errorf("--datasize must be at least %d and below 4 GiB", zdb.MinDataSize)
	}
	if c.protect && c.admin == "" {
		return errors.New("--protect needs --admin")
	}
	if c.maxsize < 0 || c.synctime < 0 || c.rotate < 0 {
		return errors.New("--maxsize, --synctime and --rotate cannot be negative")
	}
	if c.compactRatio < 0 || c.compactRatio >= 1 || c.compactHorizon < 0 || c.compactInterval < 100*time.Millisecond {
		return errors.New("--compact-ratio must be in [0, 1), --compact-horizon not negative, --compact-interval at least 100ms")
	}
	if c.inflight < 1<<20 {
		return errors.New("--inflight must be at least 1M")
	}
	if c.port <= 0 || c.port > 65535 {
		return fmt.Errorf("--port %d out of range", c.port)
	}
	if c.dualnet && c.socket == "" {
		return errors.New("--dualnet needs --socket")
	}
	return nil
}

func serve(c config, log *slog.Logger) int {
	tcpAddr := net.JoinHostPort(c.listen, strconv.Itoa(c.port))
	instance := "tcp://" + tcpAddr
	if c.socket != "" && !c.dualnet {
		instance = "unix://" + c.socket
	}
	opts := zdb.Options{
		DataDir: c.data, IndexDir: c.index, DataSize: c.datasize, MaxSize: uint64(c.maxsize),
		Sync: c.sync, SyncTime: time.Duration(c.synctime) * time.Second,
		Rotate: time.Duration(c.rotate) * time.Second, Logger: log,
		CompactRatio: c.compactRatio, CompactHorizon: c.compactHorizon,
		CompactInterval: c.compactInterval,
	}
	if c.compactRatio == 0 {
		opts.CompactRatio = -1 // automatic compaction off
	}
	if c.hook != "" {
		// 0-db's --hook: the program runs for each event of the engine.
		hooks := zdb.NewExecHooks(c.hook, instance, log)
		opts.Hooks = hooks
		// Runs after eng.Close (deferred below): let the background hooks
		// of the shutdown (namespace-closing) finish, within reason.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hooks.Wait(ctx)
		}()
	}
	if c.mode != "" {
		m := zdb.ModeUser
		if c.mode == "seq" {
			m = zdb.ModeSeq
		}
		opts.Mode = &m
	}
	if c.protect {
		opts.ProtectDefault = c.admin
	}
	eng, err := zdb.Open(opts)
	if err != nil {
		log.Error("cannot open the database", "err", err)
		return 1
	}
	defer func() {
		if err := eng.Close(); err != nil {
			log.Error("closing the database failed", "err", err)
		}
	}()

	var listeners []net.Listener
	if c.socket == "" || c.dualnet {
		l, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			log.Error("cannot listen", "addr", tcpAddr, "err", err)
			return 1
		}
		listeners = append(listeners, l)
		if c.admin == "" && !isLoopback(c.listen) {
			log.Warn("listening beyond loopback without --admin: every client is admin", "addr", tcpAddr)
		}
	}
	if c.socket != "" {
		os.Remove(c.socket)
		l, err := net.Listen("unix", c.socket)
		if err != nil {
			log.Error("cannot listen", "socket", c.socket, "err", err)
			return 1
		}
		os.Chmod(c.socket, 0o600)
		listeners = append(listeners, l)
	}

	// Signals are caught before the ready hook runs and before the address
	// is printed: a SIGTERM sent as soon as the server is announced (or by
	// the hook) is a clean shutdown, not Go's default death by signal.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// Fatal signals sent to the process (a fault inside Go code is a panic,
	// not a signal): fire the crash hook, then close the files as on a
	// normal shutdown, since the process state is intact.
	fatal := make(chan os.Signal, 1)
	signal.Notify(fatal, syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL, syscall.SIGABRT, syscall.SIGQUIT)

	stop := make(chan struct{}, 1)
	srv := server.New(server.Config{
		Engine: eng, AdminPassword: c.admin, InstanceID: instance, Logger: log,
		OnStop: func() { stop <- struct{}{} }, InFlight: int64(c.inflight),
	})
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func(l net.Listener) { errc <- srv.Serve(l) }(l)
	}
	if err := eng.Announce(context.Background(), zdb.EventReady); err != nil {
		log.Error("ready hook failed, stopping", "err", err)
		srv.Close(context.Background())
		return 1
	}
	// Announced once ready: tools (and tests) wait for this line.
	for _, l := range listeners {
		fmt.Printf("zdb listening on %s\n", l.Addr())
	}

	code := 0
	select {
	case s := <-sig:
		log.Info("signal received, shutting down", "signal", s.String())
		eng.Announce(context.Background(), zdb.EventClose)
	case s := <-fatal:
		log.Error("fatal signal received, shutting down", "signal", s.String())
		eng.Announce(context.Background(), zdb.EventCrash)
		code = 1
	case <-stop:
		log.Info("STOP received, shutting down")
	case err := <-errc:
		if err != nil {
			log.Error("listener failed", "err", err)
			code = 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Close(ctx)
	if c.socket != "" {
		os.Remove(c.socket)
	}
	return code
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// daemonize starts the same command again, detached, and returns at once.
func daemonize(argv []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "zdb:", err)
		return 1
	}
	cmd := exec.Command(exe, argv...)
	cmd.Env = append(os.Environ(), "ZDB_DAEMONIZED=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err == nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "zdb:", err)
		return 1
	}
	fmt.Printf("zdb started in the background, pid %d\n", cmd.Process.Pid)
	return 0
}

// size is a byte count flag: a number, optionally followed by K, M or G
// (powers of 1024).
type size int64

func (s *size) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *size) Set(v string) error {
	mult := int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'k', 'K':
			mult, v = 1<<10, v[:n-1]
		case 'm', 'M':
			mult, v = 1<<20, v[:n-1]
		case 'g', 'G':
			mult, v = 1<<30, v[:n-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return errors.New("not a size")
	}
	*s = size(n * mult)
	return nil
}

// defaultInFlight is 256 MiB, or an eighth of the memory on a machine
// with less than 2 GiB (at least 16 MiB).
func defaultInFlight() int64 {
	budget := int64(server.DefaultInFlight)
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		total := int64(si.Totalram) * int64(si.Unit)
		budget = min(budget, max(total/8, 16<<20))
	}
	return budget
}
