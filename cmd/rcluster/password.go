package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// passwordWarning is printed, as redis-cli's -a warning is, when a password
// comes from the command line, where other users can read it in ps.
const passwordWarning = "rcluster: warning: a password given with --password on the command line may not be safe " +
	"(other users can read it in the process list); use --password-file FILE or the REDISCLI_AUTH environment variable\n"

// passwordFlags are the ways to give commands a password, the safe ones
// first.
func passwordFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "password-file", Usage: "read the password from `FILE` (its first line)"},
		&cli.StringFlag{Name: "password", EnvVars: []string{"REDISCLI_AUTH"},
			Usage: "password (prefer env REDISCLI_AUTH or --password-file: a command line is visible to other users)"},
	}
}

// resolvePassword picks the password: --password-file when given, else
// --password or REDISCLI_AUTH (the value the flag parsed to); it warns on w
// when the value came from the command line rather than the environment.
func resolvePassword(file, flagValue string, w io.Writer) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("--password-file: %w", err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimRight(first, "\r"), nil
	}
	if flagValue != "" && flagValue != os.Getenv("REDISCLI_AUTH") {
		fmt.Fprint(w, passwordWarning)
	}
	return flagValue, nil
}

// password is resolvePassword for a command using passwordFlags.
func password(c *cli.Context, w io.Writer) (string, error) {
	return resolvePassword(c.String("password-file"), c.String("password"), w)
}
