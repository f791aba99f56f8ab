package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrAlreadyRunning is wrapped by RunOptions' error when a daemon already
// answers on the socket.
var ErrAlreadyRunning = errors.New("another zstor daemon is running on this socket")

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// checkNoDaemon fails when a daemon accepts connections on path, or when
// path exists and is not a socket (we never remove what we did not make).
// A socket file nobody accepts on is stale: a daemon that was killed. It is
// removed.
func checkNoDaemon(path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("zstor monitor: socket path %s is %d bytes, the limit is %d", path, len(path), maxSocketPath)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("zstor monitor: socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("zstor monitor: %s exists and is not a socket; refusing to replace it", path)
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("zstor monitor: %w (%s)", ErrAlreadyRunning, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("zstor monitor: cannot tell whether a daemon is live on %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("zstor monitor: remove stale socket %s: %w", path, err)
	}
	return nil
}

// listenSocket listens on path with mode 0600 from the first instant: the
// socket is bound inside a fresh private directory (0700), chmod'ed, and
// then hard-linked to path. link(2) fails when path exists, so two daemons
// racing for the same path cannot replace each other's socket. It returns
// the listener and the socket file's identity, for removeIfSame.
func listenSocket(path string, log *slog.Logger) (*net.UnixListener, os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("zstor monitor: socket directory: %w", err)
	}
	tmpdir, err := os.MkdirTemp(dir, ".zs")
	if err != nil {
		return nil, nil, fmt.Errorf("zstor monitor: socket: %w", err)
	}
	defer os.RemoveAll(tmpdir)
	tmp := filepath.Join(tmpdir, "s")
	if len(tmp) > maxSocketPath {
		// No room for the private directory: bind in place and chmod. A
		// client of another user could connect between the two calls
		// only if the directory lets it; put sockets in a private
		// directory to close that window.
		tmp = path
		log.Warn("zstor monitor: socket path too long for a private bind; binding in place", slog.String("socket", path))
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("zstor monitor: listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		ln.Close()
		if tmp == path {
			os.Remove(path)
		}
		return nil, nil, fmt.Errorf("zstor monitor: socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if tmp != path {
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, os.ErrExist) {
				err = fmt.Errorf("%w (it appeared while starting)", ErrAlreadyRunning)
			}
			return fail(err)
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return ln, fi, nil
}

// removeIfSame removes the socket file if it is still ours (a daemon started
// after we stopped accepting may already have put its own there).
func removeIfSame(path string, fi os.FileInfo) {
	if now, err := os.Lstat(path); err == nil && os.SameFile(fi, now) {
		os.Remove(path)
	}
}
