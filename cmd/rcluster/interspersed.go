package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed returns c's arguments with the command's own flags among
// them applied to c (urfave/cli stops parsing flags at the first argument,
// but `rcluster node kill 7001 --wait-failover` is how people write it, as
// with redis-cli and `rcluster create`). "--" ends flag parsing.
func interspersed(c *cli.Context) ([]string, error) {
	byName := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			byName[n] = f
		}
	}
	args := c.Args().Slice()
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i+1:]...), nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" || isNumber(a) {
			rest = append(rest, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, ok := byName[name]
		if !ok {
			return nil, usagef("flag provided but not defined: %s", a)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, usagef("flag needs an argument: %s", a)
			}
			i++
			value = args[i]
		}
		// By the flag's first name: urfave/cli keeps a value per alias, and
		// reads the first (c.String("file") would miss a Set("f", ...)).
		if err := c.Set(f.Names()[0], value); err != nil {
			return nil, usagef("%s: %w", a, err)
		}
	}
	return rest, nil
}

func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
