package client

import (
	"bytes"
	"context"
	"fmt"
	"net"

	"qss/internal/resp"
)

// Pipeline queues commands and sends them together: Exec writes all of
// them with one write on one connection and then reads all replies, which
// saves a network round trip per command. A Pipeline is not safe for
// concurrent use; it may be reused after Exec.
type Pipeline struct {
	c    *Client
	buf  bytes.Buffer
	w    *resp.Writer
	refs []pipeRef // arguments of DoRef sent from the caller's memory
	ops  []string
	err  error // a command that cannot be sent
}

// pipeRef is an argument sent in place: its bytes go right after the
// first at bytes of the pipeline's buffer.
type pipeRef struct {
	at int
	b  []byte
}

// refMin is the size from which DoRef sends an argument in place rather
// than copying it.
const refMin = 8 << 10

// Pipeline returns an empty pipeline running on c.
func (c *Client) Pipeline() *Pipeline {
	p := &Pipeline{c: c}
	p.w = resp.NewWriter(&p.buf, 4096)
	return p
}

// Do queues one command. Its arguments are copied, so the caller may reuse
// them at once.
func (p *Pipeline) Do(args ...[]byte) {
	for _, a := range args {
		if len(a) > MaxPayload && p.err == nil {
			p.err = &BatchError{Index: len(p.ops), Err: &ReplyError{Text: ErrPayloadTooBig.Text}}
		}
	}
	p.w.Command(args...)
	p.ops = append(p.ops, opName(args))
}

// DoRef queues one command like Do, but large arguments are sent from
// the caller's memory instead of being copied (one copy less per byte for
// big values): the caller must not change them until Exec or Reset
// returns.
func (p *Pipeline) DoRef(args ...[]byte) {
	for _, a := range args {
		if len(a) > MaxPayload && p.err == nil {
			p.err = &BatchError{Index: len(p.ops), Err: &ReplyError{Text: ErrPayloadTooBig.Text}}
		}
	}
	p.w.Array(len(args))
	for _, a := range args {
		if len(a) < refMin {
			p.w.Bulk(a)
			continue
		}
		p.w.BulkHeader(len(a))
		p.w.Flush() // into p.buf, which cannot fail
		p.refs = append(p.refs, pipeRef{at: p.buf.Len(), b: a})
		p.w.CRLF()
	}
	p.ops = append(p.ops, opName(args))
}

// Len returns the number of queued commands.
func (p *Pipeline) Len() int { return len(p.ops) }

// Reset discards the queued commands.
func (p *Pipeline) Reset() {
	p.w.Flush()
	p.buf.Reset()
	clear(p.refs) // drop the references to the caller's memory
	p.refs = p.refs[:0]
	p.ops = p.ops[:0]
	p.err = nil
}

// Exec sends the queued commands and returns their replies, in order, then
// empties the pipeline. Error replies are returned as values of
// resp.KindError (see AsError), so one failed command does not hide the
// others' replies; the error result reports only a failure of the exchange
// itself (an *OpError), or a queued argument over MaxPayload (in which case
// nothing is sent).
func (p *Pipeline) Exec(ctx context.Context) ([]resp.Value, error) {
	defer p.Reset()
	if p.err != nil {
		return nil, p.err
	}
	n := len(p.ops)
	if n == 0 {
		return nil, nil
	}
	if err := p.w.Flush(); err != nil {
		return nil, err
	}
	c := p.c
	op := p.ops[0]
	if n > 1 {
		op += "+pipeline"
	}
	cn, err := c.get(ctx, op)
	if err != nil {
		return nil, err
	}
	all := p.buf.Bytes()
	bufs := make(net.Buffers, 0, 2*len(p.refs)+1)
	prev := 0
	for _, r := range p.refs {
		bufs = append(bufs, all[prev:r.at], r.b)
		prev = r.at
	}
	bufs = append(bufs, all[prev:])
	out, err := cn.pipeline(ctx, c.opts.IOTimeout, bufs, n)
	broken := err != nil
	for _, v := range out {
		if v.Kind == resp.KindError && fatalReply(string(v.Str)) {
			broken = true
		}
	}
	c.put(cn, broken)
	if err != nil {
		return nil, c.opErr(op, err)
	}
	return out, nil
}

// AsError returns the error of a reply: a *ReplyError for an error reply,
// nil for any other.
func AsError(v resp.Value) error {
	if v.Kind == resp.KindError {
		return &ReplyError{Text: string(v.Str)}
	}
	return nil
}

// SetMany stores values[i] under keys[i] for every i with one pipeline, and
// returns what each SET replied: the key (or seq id), or, for a value that
// was already stored unchanged, the key given. The first error reply stops
// nothing (every command is sent) but is returned as a *BatchError, with
// the ids of all commands.
func (c *Client) SetMany(ctx context.Context, keys, values [][]byte) ([][]byte, error) {
	if len(keys) != len(values) {
		return nil, fmt.Errorf("zdb: SetMany: %d keys but %d values", len(keys), len(values))
	}
	p := c.Pipeline()
	for i := range keys {
		p.Do(cmdSet, keys[i], values[i])
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([][]byte, len(replies))
	var first error
	for i, v := range replies {
		id, _, err := setValue(keys[i], v)
		if err != nil && first == nil {
			first = &BatchError{Index: i, Err: err}
		}
		ids[i] = id
	}
	return ids, first
}

// GetMany returns the values of keys with one pipeline of GETs, with nil for
// a missing key. An error reply is returned as a *BatchError.
func (c *Client) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	p := c.Pipeline()
	for _, k := range keys {
		p.Do(cmdGet, k)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(replies))
	for i, v := range replies {
		b, err := bulkValue("GET", v)
		if err != nil && err != ErrNotFound {
			return nil, &BatchError{Index: i, Err: err}
		}
		out[i] = b
	}
	return out, nil
}
