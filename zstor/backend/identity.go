package backend

import (
	"context"
	"fmt"
	"strings"
)

// ServerID asks the backend's server who it is: INFO's instance_id (random
// per boot, as in 0-db) and boot_time, "instance@boot". Two configured
// addresses answering with one ServerID reach one server process, whatever
// their spelling. "" with a nil error when the server does not say.
func (b *Backend) ServerID(ctx context.Context) (string, error) {
	cl, err := b.client(ctx)
	if err != nil {
		return "", err
	}
	info, err := cl.Info(ctx)
	if err != nil {
		b.report(ctx, err)
		return "", fmt.Errorf("backend %s: info: %w", b, err)
	}
	inst, boot := strings.TrimSpace(info["instance_id"]), strings.TrimSpace(info["boot_time"])
	if inst == "" || boot == "" {
		return "", nil
	}
	return inst + "@" + boot, nil
}
