package main

import (
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressBar is one file's progress on the terminal. A nil *progressBar
// does nothing, so callers need not check whether bars are on.
type progressBar struct {
	p *mpb.Progress
	b *mpb.Bar
}

// newBar draws a bar named name for total bytes on stdout.
func (a *app) newBar(name string, total int64) *progressBar {
	p := mpb.New(mpb.WithOutput(a.stdout), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	b := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
			decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
		),
		mpb.BarRemoveOnComplete(),
	)
	return &progressBar{p: p, b: b}
}

// add is the zstor Progress callback: n more bytes done.
func (pb *progressBar) add(n int) { pb.b.IncrBy(n) }

// finish completes the bar (or abandons it on failure) and waits until
// it is drawn for the last time, so the next line prints below it.
func (pb *progressBar) finish(ok bool) {
	if pb == nil {
		return
	}
	if ok {
		pb.b.SetTotal(-1, true)
	} else {
		pb.b.Abort(true)
	}
	pb.p.Wait()
}
