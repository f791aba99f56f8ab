package zstor

import "context"

// PutRecordForTest commits rec as the record of key, as an older build
// might have written it.
func (c *Client) PutRecordForTest(ctx context.Context, key string, rec *Record) error {
	return c.putRecord(ctx, c.paths.metaKey(key), rec)
}

// SetShardGetHookForTest makes every shard GET of a read call fn first
// (nil removes it), so tests can count and time shard fetches.
func (c *Client) SetShardGetHookForTest(fn func(Location)) {
	if fn == nil {
		c.onShardGet.Store(nil)
		return
	}
	c.onShardGet.Store(&fn)
}
