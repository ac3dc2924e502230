package main

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/urfave/cli/v2"
)

// Flags after the arguments count, under any of their names: `-f FILE`
// after a NODE must reach the "file" flag loadSpec reads.
func TestInterspersedFlagsByAnyName(t *testing.T) {
	var file string
	var wait bool
	var args []string
	app := &cli.App{Name: "app", Writer: io.Discard, ErrWriter: io.Discard, Commands: []*cli.Command{{
		Name: "node",
		Flags: []cli.Flag{&cli.StringFlag{Name: "file", Aliases: []string{"f"}},
			&cli.BoolFlag{Name: "wait-failover"}},
		Action: func(c *cli.Context) error {
			var err error
			args, err = interspersed(c)
			file, wait = c.String("file"), c.Bool("wait-failover")
			return err
		},
	}}}
	if err := app.RunContext(context.Background(), []string{"app", "node", "kill", "7001", "-f", "x.yaml", "--wait-failover", "7002"}); err != nil {
		t.Fatal(err)
	}
	if file != "x.yaml" || !wait || !slices.Equal(args, []string{"kill", "7001", "7002"}) {
		t.Fatalf("file %q wait %v args %v", file, wait, args)
	}
}
