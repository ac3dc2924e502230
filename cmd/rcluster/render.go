package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/cluster"
	"github.com/rcluster/rcluster/internal/confgen"
	"github.com/rcluster/rcluster/internal/slots"
	"github.com/rcluster/rcluster/internal/spec"
)

func renderCommand(fileFlag cli.Flag, stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "render",
		Usage: "print the slot plan and every node's redis.conf without starting or writing anything",
		UsageText: "rcluster render [-f cluster.yaml] [--plan | --config PORT]\n\n" +
			"A dry run of `rcluster up`: the masters with their slots and config epochs,\n" +
			"the replicas of each, then each node's rendered redis.conf under a header\n" +
			"naming the file up would write. Passwords are shown as [redacted] unless\n" +
			"--show-secrets is given.\n\n" +
			"Examples:\n" +
			"   rcluster render | less\n" +
			"   rcluster render --plan\n" +
			"   rcluster render --config 7001 > redis_7001.conf",
		Flags: []cli.Flag{fileFlag,
			&cli.BoolFlag{Name: "plan", Usage: "print only the slot plan"},
			&cli.IntFlag{Name: "config", Usage: "print only the redis.conf of the node on `PORT`, without header"},
			&cli.BoolFlag{Name: "show-secrets", Usage: "print auth: passwords as they go into redis.conf (redacted by default)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("render takes no arguments, got %q", c.Args().First())
			}
			if c.Bool("plan") && c.IsSet("config") {
				return usagef("give either --plan or --config PORT, not both")
			}
			s, err := loadSpec(c)
			if err != nil {
				return err
			}
			if c.IsSet("config") {
				port := c.Int("config")
				for _, n := range s.Nodes() {
					if n.Port == port {
						conf, err := confgen.Render(s, n)
						if err != nil {
							return err
						}
						if !c.Bool("show-secrets") {
							conf = redactConf(conf, s)
						}
						_, err = stdout.Write(conf)
						return err
					}
				}
				return usagef("--config %d: no node of %s listens on port %d (ports: %s)", port, s.Describe(), port, portList(s.Ports))
			}
			return renderAll(stdout, s, !c.Bool("plan"), c.Bool("show-secrets"))
		},
	}
}

// renderAll prints the plan and, with configs, every node's config.
func renderAll(w io.Writer, s *spec.Spec, configs, secrets bool) error {
	plan, err := slots.NewPlan(s.Nodes(), s.Replicas)
	if err != nil {
		return err
	}
	var b strings.Builder
	// A formed cluster the spec now reshapes: what up would do, first.
	if sp, err := (&cluster.Cluster{Spec: s}).PlanScale(); err != nil {
		return err
	} else if sp != nil {
		sp.Write(&b)
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "# rcluster render: cluster %q from %s; nothing was started or written.\n", s.Name, s.Describe())
	fmt.Fprintf(&b, "# Slot plan: %d masters, %s each, state in %s\n", len(plan.Shards), plural(s.Replicas, "replica"), s.Dir)
	writePlan(&b, plan)
	if configs {
		for _, n := range s.Nodes() {
			conf, err := confgen.Render(s, n)
			if err != nil {
				return err
			}
			if !secrets {
				conf = redactConf(conf, s)
			}
			fmt.Fprintf(&b, "\n# ==> %s <==\n", s.ConfFile(n.Port))
			b.Write(conf)
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// redactConf replaces the spec's passwords in a rendered redis.conf with
// [redacted]: the argument of requirepass and masterauth, and the
// >password rules of user lines, so render's output can go to CI logs.
func redactConf(conf []byte, s *spec.Spec) []byte {
	if s.Auth == nil {
		return conf
	}
	secrets := []string{s.Auth.Password.Reveal()}
	for _, u := range s.Auth.Users {
		secrets = append(secrets, u.Password.Reveal())
	}
	lines := strings.Split(string(conf), "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch strings.ToLower(f[0]) {
		case "requirepass", "masterauth":
			lines[i] = f[0] + " [redacted]"
		case "user":
			for _, pw := range secrets {
				if pw != "" {
					lines[i] = strings.ReplaceAll(lines[i], confgen.Quote(">"+pw), ">[redacted]")
				}
			}
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// writePlan prints one line per master and per replica.
func writePlan(w io.Writer, p *slots.Plan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tNODE\tSLOTS\tCOUNT\tEPOCH\tREPLICA OF")
	for _, sh := range p.Shards {
		fmt.Fprintf(tw, "master\t%s\t%d-%d\t%d\t%d\t-\n", sh.Master.Addr(), sh.Slots.Start, sh.Slots.End,
			sh.Slots.End-sh.Slots.Start+1, sh.Epoch)
		for _, r := range sh.Replicas {
			fmt.Fprintf(tw, "replica\t%s\t-\t-\t-\t%s\n", r.Addr(), sh.Master.Addr())
		}
	}
	_ = tw.Flush()
}

// plural is "1 replica", "2 replicas".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
