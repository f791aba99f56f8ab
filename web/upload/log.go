package upload

import (
	"context"
	"log/slog"

	xslog "golang.org/x/exp/slog"
)

// tusLogger is a logger of the type tusd takes (golang.org/x/exp/slog)
// that hands its warnings and errors to l. tusd logs every request and
// chunk at Info; those are left out.
func tusLogger(l *slog.Logger) *xslog.Logger {
	return xslog.New(&tusHandler{h: l.Handler()})
}

type tusHandler struct {
	h slog.Handler
}

func (t *tusHandler) Enabled(ctx context.Context, level xslog.Level) bool {
	return level >= xslog.LevelWarn && t.h.Enabled(ctx, slog.Level(level))
}

func (t *tusHandler) Handle(ctx context.Context, r xslog.Record) error {
	rec := slog.NewRecord(r.Time, slog.Level(r.Level), "tusd: "+r.Message, r.PC)
	r.Attrs(func(a xslog.Attr) bool {
		rec.AddAttrs(slog.Any(a.Key, a.Value.Any()))
		return true
	})
	return t.h.Handle(ctx, rec)
}

func (t *tusHandler) WithAttrs(as []xslog.Attr) xslog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Any(a.Key, a.Value.Any())
	}
	return &tusHandler{h: t.h.WithAttrs(out)}
}

func (t *tusHandler) WithGroup(name string) xslog.Handler {
	return &tusHandler{h: t.h.WithGroup(name)}
}
