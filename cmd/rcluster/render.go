package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

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
			"naming the file up would write.\n\n" +
			"Examples:\n" +
			"   rcluster render | less\n" +
			"   rcluster render --plan\n" +
			"   rcluster render --config 7001 > redis_7001.conf",
		Flags: []cli.Flag{fileFlag,
			&cli.BoolFlag{Name: "plan", Usage: "print only the slot plan"},
			&cli.IntFlag{Name: "config", Usage: "print only the redis.conf of the node on `PORT`, without header"},
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
						_, err = stdout.Write(conf)
						return err
					}
				}
				return usagef("--config %d: no node of %s listens on port %d (ports: %s)", port, s.Describe(), port, portList(s.Ports))
			}
			return renderAll(stdout, s, !c.Bool("plan"))
		},
	}
}

// renderAll prints the plan and, with configs, every node's config.
func renderAll(w io.Writer, s *spec.Spec, configs bool) error {
	plan, err := slots.NewPlan(s.Nodes(), s.Replicas)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# rcluster render: cluster %q from %s; nothing was started or written.\n", s.Name, s.Describe())
	fmt.Fprintf(&b, "# Slot plan: %d masters, %s each, state in %s\n", len(plan.Shards), plural(s.Replicas, "replica"), s.Dir)
	writePlan(&b, plan)
	if configs {
		for _, n := range s.Nodes() {
			conf, err := confgen.Render(s, n)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "\n# ==> %s <==\n", s.ConfFile(n.Port))
			b.Write(conf)
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
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
