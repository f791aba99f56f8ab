package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"qss/zstor"
	"qss/zstor/pipeline"
)

// ErrNotRunning is wrapped by Dial's error when no daemon listens on the
// socket (no socket file, or a stale one nobody accepts on). The command
// line then runs the operation in-process.
var ErrNotRunning = errors.New("zstor daemon is not running")

// keyForTimeout bounds KeyFor, whose signature (that of *zstor.Client) has
// no context.
const keyForTimeout = 30 * time.Second

// Client talks to a running daemon over its unix socket. Its methods mirror
// those of *zstor.Client, so the command line can use either. Each call is
// one connection: one request, one response (docs/zstor-daemon.md). Safe
// for concurrent use.
//
// The options' callbacks (Progress, Started) are served by progress lines
// the daemon sends while it works. Paths are made absolute here, since the daemon does not share
// the caller's working directory.
type Client struct {
	socket string
	// PID and Config are the daemon's process id and config file, as it
	// reported them when dialled.
	PID    int
	Config string
}

// Dial checks that a daemon of this protocol version answers on socket.
// When nothing listens there, the error wraps ErrNotRunning.
func Dial(ctx context.Context, socket string) (*Client, error) {
	c := &Client{socket: socket}
	var p pingResult
	if err := c.call(ctx, request{Op: opPing}, &p); err != nil {
		return nil, err
	}
	c.PID, c.Config = p.PID, p.Config
	return c, nil
}

// Close releases nothing (there is no connection between calls); it exists
// so that a Client can stand in for a *zstor.Client.
func (c *Client) Close() error { return nil }

// call sends one request and decodes the result into out (nil: ignore it).
func (c *Client) call(ctx context.Context, req request, out any) error {
	return c.callProgress(ctx, req, out, nil)
}

// callProgress is call with progress: each progress line the daemon sends
// before its response goes to onProgress (which req.Progress asks for).
func (c *Client) callProgress(ctx context.Context, req request, out any, onProgress func(progressInfo)) error {
	req.V = ProtocolVersion
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (nothing listens on %s)", ErrNotRunning, c.socket)
		}
		return fmt.Errorf("zstor daemon: connect to %s: %w", c.socket, err)
	}
	defer conn.Close()
	// A cancelled context interrupts the exchange at once; the daemon
	// sees the connection close and cancels the operation.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("zstor daemon: %w", err)
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return c.ioErr(ctx, "send the request", err)
	}
	br := bufio.NewReader(conn)
	var r struct {
		V        int             `json:"v"`
		OK       bool            `json:"ok"`
		Error    *wireError      `json:"error"`
		Result   json.RawMessage `json:"result"`
		Progress *progressInfo   `json:"progress"`
	}
	for {
		resp, err := readLine(br, maxResponseBytes)
		if err != nil {
			return c.ioErr(ctx, "read the answer", err)
		}
		r.Progress = nil
		if err := json.Unmarshal(resp, &r); err != nil {
			return fmt.Errorf("zstor daemon: malformed answer: %w", err)
		}
		if r.Progress == nil {
			break
		}
		if onProgress != nil {
			onProgress(*r.Progress)
		}
	}
	if r.Error != nil {
		return &RemoteError{Kind: r.Error.Kind, Msg: r.Error.Msg}
	}
	if r.V != ProtocolVersion {
		return fmt.Errorf("zstor daemon speaks protocol v%d, this client v%d: restart the daemon with this build", r.V, ProtocolVersion)
	}
	if !r.OK {
		return errors.New("zstor daemon: answer has neither a result nor an error")
	}
	if out != nil && len(r.Result) > 0 {
		if err := json.Unmarshal(r.Result, out); err != nil {
			return fmt.Errorf("zstor daemon: malformed %s result: %w", req.Op, err)
		}
	}
	return nil
}

func (c *Client) ioErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("zstor daemon: %w", context.Cause(ctx))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("zstor daemon on %s closed the connection before answering (did it stop?)", c.socket)
	}
	return fmt.Errorf("zstor daemon on %s: %s: %w", c.socket, what, err)
}

// readLine reads one '\n'-terminated line of at most limit bytes.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var out []byte
	for {
		chunk, err := r.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > limit {
			return nil, fmt.Errorf("message longer than %d bytes", limit)
		}
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(out) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func abs(path string) (string, error) {
	if path == "" {
		return "", errors.New("zstor: empty path")
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("zstor: %s: %w", path, err)
	}
	return p, nil
}

// Store asks the daemon to store the file at path and waits for the result.
func (c *Client) Store(ctx context.Context, path string, o zstor.StoreOptions) (*zstor.StoreResult, error) {
	p, err := abs(path)
	if err != nil {
		return nil, err
	}
	var r storeResult
	req := request{Op: opStore, Path: p, Key: o.Key, DeleteLocal: o.DeleteLocal, Links: o.Links, Progress: o.Progress != nil}
	if err := c.callProgress(ctx, req, &r, progressFunc(o.Progress, nil)); err != nil {
		return nil, err
	}
	return r.toZstor()
}

// Queue durably enqueues a store of the file at path (store -n): it returns
// once the job is on disk in the daemon's queue; the daemon stores the file
// in the background, retrying with backoff until it succeeds.
func (c *Client) Queue(ctx context.Context, path string, o zstor.StoreOptions) error {
	p, err := abs(path)
	if err != nil {
		return err
	}
	return c.call(ctx, request{Op: opQueue, Path: p, Key: o.Key, DeleteLocal: o.DeleteLocal}, nil)
}

// progressFunc turns zstor's Progress (bytes since the last call) and
// Started (the total, once) callbacks into a handler of progress lines
// (bytes done so far, total or -1).
func progressFunc(progress func(int), started func(int64)) func(progressInfo) {
	if progress == nil && started == nil {
		return nil
	}
	var last int64
	told := false
	return func(p progressInfo) {
		if !told && p.Total >= 0 {
			told = true
			if started != nil {
				started(p.Total)
			}
		}
		if p.Done > last && progress != nil {
			progress(int(p.Done - last))
			last = p.Done
		}
	}
}

// Jobs lists the daemon's queue of stores (store -n), the next due first.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	var r jobsResult
	if err := c.call(ctx, request{Op: opJobs}, &r); err != nil {
		return nil, err
	}
	return r.Jobs, nil
}

// Retrieve asks the daemon to rebuild the file at path, with its progress
// reported through o.Progress and o.Started.
func (c *Client) Retrieve(ctx context.Context, path string, o zstor.RetrieveOptions) (*zstor.RetrieveResult, error) {
	p, err := abs(path)
	if err != nil {
		return nil, err
	}
	var r retrieveResult
	req := request{Op: opRetrieve, Path: p, Key: o.Key, Protect: o.Protect, Progress: o.Progress != nil || o.Started != nil}
	if err := c.callProgress(ctx, req, &r, progressFunc(o.Progress, o.Started)); err != nil {
		return nil, err
	}
	return r.toZstor()
}

// Check returns the stored checksum of an object key; an error wrapping
// zstor.ErrNotStored when there is none.
func (c *Client) Check(ctx context.Context, key string) (pipeline.Checksum, error) {
	var r checkResult
	if err := c.call(ctx, request{Op: opCheck, Key: key}, &r); err != nil {
		return pipeline.Checksum{}, err
	}
	return parseSum(r.Checksum)
}

// Delete frees an object's shards and removes its record; it returns how
// many shards could not be freed.
func (c *Client) Delete(ctx context.Context, key string) (int, error) {
	var r deleteResult
	if err := c.call(ctx, request{Op: opDelete, Key: key}, &r); err != nil {
		return 0, err
	}
	return r.Leaked, nil
}

// List returns the objects under prefix and how many records could not be
// decrypted.
func (c *Client) List(ctx context.Context, prefix string) ([]zstor.Entry, int, error) {
	var r listResult
	if err := c.call(ctx, request{Op: opList, Prefix: prefix}, &r); err != nil {
		return nil, 0, err
	}
	es, err := toEntries(r.Entries)
	return es, r.Undecryptable, err
}

// Rebuild re-creates the missing or corrupt shards of an object key.
func (c *Client) Rebuild(ctx context.Context, key string) (*zstor.RebuildResult, error) {
	var r rebuildResult
	if err := c.call(ctx, request{Op: opRebuild, Key: key}, &r); err != nil {
		return nil, err
	}
	z := r.toZstor()
	return &z, nil
}

// Scrub verifies every shard of every object.
func (c *Client) Scrub(ctx context.Context) (*zstor.ScrubReport, error) {
	var r scrubResult
	if err := c.call(ctx, request{Op: opScrub}, &r); err != nil {
		return nil, err
	}
	return r.toZstor(), nil
}

// Repair restores full redundancy of every object under prefix.
func (c *Client) Repair(ctx context.Context, prefix string) (*zstor.RepairReport, error) {
	var r repairResult
	if err := c.call(ctx, request{Op: opRepair, Prefix: prefix}, &r); err != nil {
		return nil, err
	}
	return r.toZstor(), nil
}

// KeyFor returns the object key of a local path under the daemon's config.
func (c *Client) KeyFor(path string) (string, error) {
	p, err := abs(path)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyForTimeout)
	defer cancel()
	var r keyForResult
	if err := c.call(ctx, request{Op: opKeyFor, Path: p}, &r); err != nil {
		return "", err
	}
	return r.Key, nil
}
