package pipeline

import (
	"context"
	"sync"
)

// runOrdered is the concurrency skeleton shared by Encode and Decode.
//
// next is called from one goroutine and produces jobs in order until it
// reports false or an error; work runs on up to workers goroutines; consume
// is called on the caller's goroutine with the results strictly in the order
// of their jobs. At most workers+2 jobs exist at once (workers queued or in
// progress, one being produced, one being consumed), which is what bounds
// memory.
//
// The first error — from next, work, consume or ctx — cancels the rest and is
// returned after every goroutine has finished. A next blocked in a read
// cannot be interrupted; runOrdered returns once it comes back.
func runOrdered[J, R any](ctx context.Context, workers int,
	next func() (J, bool, error),
	work func(context.Context, J) (R, error),
	consume func(R) error,
) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	type slot struct {
		job  J
		res  R
		err  error
		done chan struct{}
	}
	order := make(chan *slot, workers) // slots in job order, for consume
	tasks := make(chan *slot)          // slots to work on

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for s := range tasks {
				if err := context.Cause(ctx); err != nil {
					s.err = err
				} else {
					s.res, s.err = work(ctx, s.job)
				}
				close(s.done)
			}
		})
	}
	wg.Go(func() {
		defer close(tasks)
		defer close(order)
		for ctx.Err() == nil {
			j, ok, err := next()
			if err != nil {
				// Delivered in order: everything produced before it is
				// consumed first.
				s := &slot{err: err, done: make(chan struct{})}
				close(s.done)
				select {
				case order <- s:
				case <-ctx.Done():
				}
				return
			}
			if !ok {
				return
			}
			s := &slot{job: j, done: make(chan struct{})}
			select {
			case order <- s:
			case <-ctx.Done():
				return
			}
			select {
			case tasks <- s:
			case <-ctx.Done():
				s.err = context.Cause(ctx)
				close(s.done)
				return
			}
		}
	})

	var first error
	for s := range order {
		<-s.done
		if first != nil {
			continue // drain
		}
		err := s.err
		if err == nil {
			err = consume(s.res)
		}
		if err != nil {
			first = err
			cancel(err)
		}
	}
	wg.Wait()
	if first == nil {
		// The producer stops early, without an error slot, when ctx is
		// cancelled from outside.
		first = context.Cause(ctx)
	}
	return first
}
