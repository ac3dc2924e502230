package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

func init() {
	// -v means --verbose here; the version is --version only.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version", DisableDefaultText: true}
	cli.VersionPrinter = func(c *cli.Context) {
		fmt.Fprintf(c.App.Writer, "rcluster %s\n", c.App.Version)
	}
}

// verbosityFlags are accepted by the app and by every command, before or
// after the command name: `rcluster -q up` and `rcluster up -q` are the same.
func verbosityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"},
			Usage: "print more detail (the binary used, each node's stop, forming phases)"},
	}
}

// Verbosity levels.
const (
	levelQuiet   = -1 // errors only
	levelNormal  = 0  // one line per step
	levelVerbose = 1  // plus detail lines
)

// verbosity reads -q/-v from the command and the app: -q wins over -v.
func verbosity(c *cli.Context) int {
	level := levelNormal
	for _, x := range c.Lineage() {
		if localBool(x, "quiet") {
			return levelQuiet
		}
		if localBool(x, "verbose") {
			level = levelVerbose
		}
	}
	return level
}

// localBool reads a flag set on this context only (c.Bool would fall back
// to parent contexts, where the same name means another flag).
func localBool(c *cli.Context, name string) bool {
	for _, n := range c.LocalFlagNames() {
		if n == name {
			return c.Bool(name)
		}
	}
	return false
}

// detailWriter is w at verbose level and io.Discard below it.
func detailWriter(c *cli.Context, w io.Writer) io.Writer {
	if verbosity(c) >= levelVerbose {
		return w
	}
	return io.Discard
}

// versionString is the build's version: -ldflags "-X main.version=..." when
// given, else the module version and VCS revision Go recorded.
func versionString() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	v := version
	if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
		v = mv
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && !strings.Contains(v, rev) {
		v += " (" + rev + dirty + ")"
	}
	return v + " " + bi.GoVersion
}

// unknownCommand is the usage error for `rcluster NAME` when NAME is no
// command, with a suggestion when one is close.
func unknownCommand(cmds []*cli.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if s := suggest(name, commandNames(cmds)); s != "" {
		msg += ". " + fmt.Sprintf(cli.SuggestDidYouMeanTemplate, s)
	} else {
		msg += " (see `rcluster --help`)"
	}
	return &UsageError{fmt.Errorf("%s", msg)}
}

func commandNames(cmds []*cli.Command) []string {
	var out []string
	for _, c := range cmds {
		if !c.Hidden {
			out = append(out, c.Names()...)
		}
	}
	return out
}

// suggest returns the candidate closest to s when it is close enough to be a
// likely typo (edit distance with transpositions at most 1 for short words,
// 2 otherwise), or a unique candidate s is a prefix of; else "".
func suggest(s string, candidates []string) string {
	s = strings.ToLower(s)
	best, bestD := "", 1<<30
	var prefixed []string
	for _, c := range candidates {
		if len(s) >= 2 && strings.HasPrefix(c, s) {
			prefixed = append(prefixed, c)
		}
		if d := osaDistance(s, c); d < bestD { // ties: the first candidate (a primary name)
			best, bestD = c, d
		}
	}
	limit := 2
	if len(s) <= 4 {
		limit = 1
	}
	if bestD <= limit && bestD < len(s) {
		return best
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	return ""
}

// osaDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent letters.
func osaDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// flagSuggestion adds "Did you mean --x?" to an unknown-flag error of cmd.
func flagSuggestion(cmd *cli.Command, app *cli.App, err error) error {
	const prefix = "flag provided but not defined: -"
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return err
	}
	given := strings.TrimLeft(strings.TrimPrefix(msg, prefix), "-")
	var flags []cli.Flag
	if cmd != nil {
		flags = cmd.Flags
	} else if app != nil {
		flags = app.Flags
	}
	var names []string
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) > 1 {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	if s := suggest(given, names); s != "" {
		return fmt.Errorf("%w. "+cli.SuggestDidYouMeanTemplate, err, "--"+s)
	}
	return err
}
