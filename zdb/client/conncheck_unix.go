//go:build unix

package client

import (
	"net"
	"syscall"
	"time"
)

// connAlive reports whether an idle connection is still usable: the peer has
// not closed it and has sent nothing unasked. It peeks at the socket without
// blocking.
func connAlive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// The last command's deadline may have passed while the connection
	// was idle; RawConn.Read would fail on it without looking.
	if nc.SetReadDeadline(time.Time{}) != nil {
		return false
	}
	alive := true
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EINTR:
				continue
			case n > 0: // unsolicited data: the stream is out of step
				alive = false
			case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			default: // n == 0 with no error is EOF; anything else is a failure
				alive = false
			}
			return true
		}
	})
	return err == nil && alive
}
