package zdbfs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	"qss/zdb"
	"qss/zdb/client"
)

// Space accounting (statfs) and a full disk.
//
// statfs reports what zdb holds and what it can still take: the bytes
// stored in both namespaces (data and index), and as free space the least
// of what the namespaces' size limits (maxsize) leave and what the disks
// under them have free — both read with NSINFO, which 0-db answers too.
// The size= option (Config.Capacity), when given, caps the total.
//
// A write that fails because the disk under zdb is full is reported as
// ENOSPC, not EIO: the engine says so directly (its error wraps the OS's
// ENOSPC); over RESP zdb and 0-db answer a disk-full commit with their
// generic "Cannot write data/index right now", so the namespace's free
// disk space is then asked for, and below spaceLow it is a full disk.
// The failed writes stay pending (metadata log, dirty blocks) and are
// retried, so once space is freed the mount goes on.

// nsSpace is what one namespace reports about its space.
type nsSpace struct {
	Used     uint64 // bytes stored: data and index files
	Limit    uint64 // maxsize (0: none)
	Live     uint64 // payload bytes of live keys (what maxsize is checked against)
	DiskFree uint64 // free bytes of the disks under its data and index (the lesser)
}

// spacer is a Store that can report its namespace's space.
type spacer interface {
	space(ctx context.Context) (nsSpace, error)
}

// spaceLow is the free disk space under which a failed write is taken for
// a full disk: a commit needs room for the entry and its index record.
const spaceLow = 4 << 20

func parseSpace(info map[string]string) (nsSpace, error) {
	num := func(k string) uint64 {
		v, _ := strconv.ParseUint(info[k], 10, 64)
		return v
	}
	if _, ok := info["data_disk_freespace_bytes"]; !ok {
		return nsSpace{}, fmt.Errorf("NSINFO has no data_disk_freespace_bytes: %w", errors.ErrUnsupported)
	}
	s := nsSpace{Live: num("data_size_bytes"), Limit: num("data_limits_bytes")}
	s.Used = s.Live + num("index_size_bytes")
	s.DiskFree = min(num("data_disk_freespace_bytes"), num("index_disk_freespace_bytes"))
	return s, nil
}

func (s *ClientStore) space(ctx context.Context) (nsSpace, error) {
	info, err := s.c.NSInfo(ctx, s.c.Namespace())
	var re *client.ReplyError
	if errors.As(err, &re) {
		// The server answered but will not tell (an old server, a
		// protected namespace): statfs shows size= instead.
		return nsSpace{}, fmt.Errorf("NSINFO: %w (%w)", errors.ErrUnsupported, err)
	}
	if err != nil {
		return nsSpace{}, mapClientErr("nsinfo", err)
	}
	return parseSpace(info)
}

func (s *EngineStore) space(context.Context) (nsSpace, error) {
	sp, err := parseSpace(client.ParseInfo([]byte(s.ns.Info(false))))
	if err != nil {
		return sp, err
	}
	if u := s.ns.Usage(); u.DataBytes > 0 {
		sp.Used += uint64(u.DataBytes) - sp.Live // files, garbage included
	}
	return sp, nil
}

// isWriteFailure reports whether err is zdb's answer to a failed commit
// (a full disk among other causes).
func isWriteFailure(err error) bool {
	return errors.Is(err, client.ErrWriteFailed) || errors.Is(err, zdb.ErrWrite)
}

// spaceStore is a Store whose write failures caused by a full disk are
// ErrNoSpace.
type spaceStore struct {
	Store
}

func (s spaceStore) check(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) {
		return errors.Join(ErrNoSpace, err)
	}
	if !isWriteFailure(err) {
		return err
	}
	sp, ok := s.Store.(spacer)
	if !ok {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if info, serr := sp.space(ctx); serr == nil && info.DiskFree < spaceLow {
		return errors.Join(ErrNoSpace, err)
	}
	return err
}

// Set implements Store.
func (s spaceStore) Set(ctx context.Context, key, value []byte) error {
	return s.check(ctx, s.Store.Set(ctx, key, value))
}

// Del implements Store.
func (s spaceStore) Del(ctx context.Context, key []byte) error {
	return s.check(ctx, s.Store.Del(ctx, key))
}

// Apply implements Store.
func (s spaceStore) Apply(ctx context.Context, ops []Op) error {
	return s.check(ctx, s.Store.Apply(ctx, ops))
}

func (s spaceStore) space(ctx context.Context) (nsSpace, error) {
	if sp, ok := s.Store.(spacer); ok {
		return sp.space(ctx)
	}
	return nsSpace{}, errors.ErrUnsupported
}

// statfsCache keeps the last statfs figures for a second: df and file
// managers call statfs in bursts, each a round trip per namespace.
type statfsCache struct {
	mu   sync.Mutex
	at   time.Time
	used uint64
	free uint64
	err  error
}

// usage returns the bytes stored in both namespaces and the bytes they
// can still take (see the top of this file).
func (f *FS) usage(ctx context.Context) (used, free uint64, err error) {
	c := &f.statfs
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < time.Second {
		return c.used, c.free, c.err
	}
	used, free = 0, ^uint64(0)
	for _, st := range []Store{f.rawMeta, f.data} {
		sp, ok := st.(spacer)
		if !ok {
			err = errors.ErrUnsupported
			break
		}
		var s nsSpace
		if s, err = sp.space(ctx); err != nil {
			break
		}
		used += s.Used
		free = min(free, s.DiskFree)
		if s.Limit > 0 {
			free = min(free, s.Limit-min(s.Limit, s.Live))
		}
	}
	c.at, c.used, c.free, c.err = time.Now(), used, free, err
	return used, free, err
}
