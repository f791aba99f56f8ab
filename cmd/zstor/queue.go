package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) queueCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "list the stores waiting in the daemon's queue (store -n)",
		Long: "List the stores queued on the running daemon (store -n), the next due first: the\n" +
			"file, when it was queued, failed attempts so far, when it is tried next, and the last\n" +
			"error. A job leaves the queue once its store committed. Without a running daemon, the\n" +
			"queue file it left (SOCKET.queue) is read: those stores run when it starts again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.loadConfig(); err != nil {
				return err
			}
			return a.queue(cmd.Context(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the jobs as JSON")
	return cmd
}

// queue prints the daemon's queued jobs.
func (a *app) queue(ctx context.Context, asJSON bool) error {
	if a.cfg.Socket == "" {
		return errors.New("zstor queue: the config sets no `socket`: there is no daemon and so no queue")
	}
	if listJobs == nil || readQueue == nil {
		return errors.New("zstor queue: daemon not available in this build")
	}
	var jobs []queuedJob
	var err error
	running := false
	if r := a.dial(ctx); r != nil {
		defer r.Close()
		running = true
		jobs, err = listJobs(ctx, r)
	} else {
		socket, aerr := filepath.Abs(a.cfg.Socket)
		if aerr != nil {
			return fmt.Errorf("zstor queue: socket %q: %w", a.cfg.Socket, aerr)
		}
		jobs, err = readQueue(socket)
		if err == nil && !asJSON {
			a.notice("no daemon is running on %s: these stores run when it starts", a.cfg.Socket)
		}
	}
	if err != nil {
		return err
	}
	if asJSON {
		if jobs == nil {
			jobs = []queuedJob{}
		}
		return a.writeJSON(struct {
			DaemonRunning bool        `json:"daemon_running"`
			Jobs          []queuedJob `json:"jobs"`
		}{running, jobs})
	}
	if len(jobs) == 0 {
		a.printf("the queue is empty")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUED\tATTEMPTS\tNEXT\tPATH\tLAST ERROR")
	for _, j := range jobs {
		next := "now"
		if d := j.Next.Sub(now); d > 0 {
			next = "in " + d.Round(time.Second).String()
		}
		lastErr := j.LastErr
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", j.Queued.UTC().Format(time.RFC3339), j.Attempts, next, j.Path, lastErr)
	}
	return tw.Flush()
}
