package zstor

import "context"

// PutRecordForTest commits rec as the record of key, as an older build
// might have written it.
func (c *Client) PutRecordForTest(ctx context.Context, key string, rec *Record) error {
	return c.putRecord(ctx, c.paths.metaKey(key), rec)
}
