package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"qss/qsfs"
	qconfig "qss/qsfs/config"
	"qss/qsfs/users"
)

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the live RPO, upload queue, cache use, backends and redundancy",
		Long: `Status asks the running mount for its state. Exit status: 0 when all is
well, 2 when something is at risk (RPO above target, failing uploads,
unreachable backends, objects below full redundancy, cache over its cap),
3 when qsfs is not running on the config's directory, 1 on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := qsfs.DialControl(cfg.Path)
			if err != nil {
				if asJSON {
					json.NewEncoder(os.Stdout).Encode(map[string]any{"running": false, "dir": cfg.Path})
				}
				return &codedError{exitStopped, err}
			}
			s, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				enc.Encode(struct {
					Running bool `json:"running"`
					qsfs.Status
				}{true, s})
			} else {
				printStatus(os.Stdout, s)
			}
			if len(s.AtRisk) > 0 {
				return &codedError{exitAtRisk, nil}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, s qsfs.Status) {
	fmt.Fprintf(w, "local directory   %s\n", s.Dir)
	fmt.Fprintf(w, "live RPO          %s (target %s)\n", s.RPO.Dur().Round(100*time.Millisecond), s.RPOTarget.Dur())
	if s.LastPoint.Generation > 0 {
		fmt.Fprintf(w, "last stored point %d, cut %s\n", s.LastPoint.Generation, s.LastPoint.Cut.Local().Format(time.DateTime))
	} else {
		fmt.Fprintf(w, "last stored point none yet\n")
	}
	fmt.Fprintf(w, "upload queue      %d objects, %s (%d failing; %d points waiting)\n", s.Queue.Jobs, size(s.Queue.Bytes), s.Queue.Failing, s.PointsPending)
	fmt.Fprintf(w, "cache             %s of %s\n", size(s.Cache.Used), size(s.Cache.Cap))
	fmt.Fprintf(w, "remote            %d objects, %s (%d to delete after the grace period)\n", s.RemoteObjects, size(s.RemoteBytes), s.Garbage)
	up := 0
	for _, b := range s.Backends {
		if b.Reachable {
			up++
		}
	}
	fmt.Fprintf(w, "backends          %d of %d reachable\n", up, len(s.Backends))
	for _, b := range s.Backends {
		state := "up"
		if !b.Reachable {
			state = "DOWN " + b.Error
		}
		fmt.Fprintf(w, "  %-22s %s\n", b.Address, state)
	}
	if s.LowestRedundancy > 0 {
		fmt.Fprintf(w, "lowest redundancy %d of %d shards\n", s.LowestRedundancy, s.Expected)
	}
	if s.LossesSurvivable >= 0 {
		fmt.Fprintf(w, "losses survivable %d more backends\n", s.LossesSurvivable)
	}
	if len(s.AtRisk) == 0 {
		fmt.Fprintln(w, "at risk           nothing")
	}
	for _, r := range s.AtRisk {
		fmt.Fprintf(w, "AT RISK           %s\n", r)
	}
}

func size(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func userCmd(g *globals) *cobra.Command {
	user := &cobra.Command{Use: "user", Short: "Manage the web and WebDAV users"}
	// withUsers runs change on the config's user store, with the password
	// read from stdin when withPassword.
	withUsers := func(withPassword bool, change func(st *users.Store, name, pw string) (string, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			pw := ""
			if withPassword {
				if pw, err = readPassword(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			st, err := usersOf(cfg)
			if err != nil {
				return err
			}
			msg, err := change(st, args[0], pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		}
	}
	user.AddCommand(&cobra.Command{
		Use:   "add NAME",
		Short: "Add a user; the password is read from the first line of stdin",
		Args:  cobra.ExactArgs(1),
		RunE: withUsers(true, func(st *users.Store, name, pw string) (string, error) {
			return "user " + name + " added", st.Add(name, pw)
		}),
	})
	user.AddCommand(&cobra.Command{
		Use:   "passwd NAME",
		Short: "Set a user's password, read from the first line of stdin; its web sessions end",
		Args:  cobra.ExactArgs(1),
		RunE: withUsers(true, func(st *users.Store, name, pw string) (string, error) {
			return "password of " + name + " changed; its web and WebDAV logins end within seconds", st.SetPassword(name, pw)
		}),
	})
	user.AddCommand(&cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a user; its web sessions end",
		Args:  cobra.ExactArgs(1),
		RunE: withUsers(false, func(st *users.Store, name, _ string) (string, error) {
			return "user " + name + " removed", st.Remove(name)
		}),
	})
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			st, err := usersOf(cfg)
			if err != nil {
				return err
			}
			us, err := st.List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				type u struct {
					Name        string    `json:"name"`
					Created     time.Time `json:"created"`
					PasswordSet time.Time `json:"password_set"`
				}
				l := make([]u, 0, len(us))
				for _, x := range us {
					l = append(l, u{x.Name, x.Created, x.PasswordSet})
				}
				return json.NewEncoder(out).Encode(l)
			}
			for _, x := range us {
				fmt.Fprintf(out, "%-24s created %s, password set %s\n", x.Name, x.Created.Format(time.DateTime), x.PasswordSet.Format(time.DateTime))
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	user.AddCommand(list)
	return user
}

func usersOf(cfg *qconfig.Config) (*users.Store, error) {
	if err := os.MkdirAll(cfg.Path, 0o700); err != nil {
		return nil, err
	}
	return users.Open(cfg.Path)
}

func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, users.MaxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on stdin (give it as the first line)")
	}
	return line, nil
}

func initCmd(g *globals) *cobra.Command {
	var o qconfig.TemplateOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented config with fresh random keys (mode 0600) at --config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := qconfig.Template(o)
			if err != nil {
				return err
			}
			if err := qconfig.WriteNew(g.config, data); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: replace the placeholder backends with yours, then run: qsfs -c %s mount MOUNTPOINT\n", g.config, g.config)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Path, "path", "", "local directory ([qsfs] path; default "+qconfig.TemplatePath+")")
	cmd.Flags().StringVar(&o.CacheSize, "cache-size", "", "local cache cap (default "+qconfig.TemplateCacheSize+")")
	cmd.Flags().StringVar(&o.RPO, "rpo", "", "recovery point objective (default "+qconfig.TemplateRPO+")")
	cmd.Flags().StringVar(&o.Web, "web", "", "web interface address, - for none (default "+qconfig.TemplateWeb+")")
	return cmd
}
