package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rcluster/rcluster/internal/ui"
	"github.com/rcluster/rcluster/internal/verify"
)

// verifyLines returns how verify prints each check on stderr: nothing with
// --json, only failures with -q, every check otherwise (green/red marks on a
// terminal only).
func verifyLines(c *cli.Context, stderr io.Writer) func(verify.Result) {
	if c.Bool("json") {
		return func(verify.Result) {}
	}
	quiet := verbosity(c) == levelQuiet
	color := ui.UseColor(stderr)
	return func(r verify.Result) {
		if quiet && r.OK {
			return
		}
		mark := ui.Paint(color, "32", "✓")
		switch {
		case r.Skipped:
			mark = ui.Paint(color, "33", "-")
		case !r.OK:
			mark = ui.Paint(color, "31", "✗")
		}
		line := fmt.Sprintf(" %s %s (%s)", mark, r.Name, r.Duration.Round(time.Millisecond))
		if r.Detail != "" {
			line += ": " + r.Detail
		}
		fmt.Fprintln(stderr, line)
	}
}

// JUnit XML, the subset CI systems (GitHub test reporters, GitLab, Jenkins)
// read: one testsuite, one testcase per check, a failure element whose
// message is the check's detail, times in seconds.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

const junitSuiteName = "rcluster.verify"

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// writeJUnit writes rep as JUnit XML; started is when the run began.
func writeJUnit(w io.Writer, rep verify.Report, started time.Time) error {
	s := junitSuite{Name: junitSuiteName, Timestamp: started.UTC().Format("2006-01-02T15:04:05"), Cases: []junitCase{}}
	var total time.Duration
	for _, c := range rep.Checks {
		jc := junitCase{Name: c.Name, Classname: junitSuiteName, Time: seconds(c.Duration)}
		switch {
		case c.Skipped:
			jc.Skipped = &junitSkipped{Message: c.Detail}
			s.Skipped++
		case !c.OK:
			msg := c.Detail
			if msg == "" {
				msg = "check failed"
			}
			jc.Failure = &junitFailure{Message: msg, Type: "failure", Text: msg}
			s.Failures++
		}
		total += c.Duration
		s.Cases = append(s.Cases, jc)
	}
	s.Tests = len(s.Cases)
	s.Time = seconds(total)
	out := junitSuites{Name: "rcluster", Tests: s.Tests, Failures: s.Failures, Time: s.Time, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// writeJUnitFile writes the report to path (created or truncated, 0644).
func writeJUnitFile(path string, rep verify.Report, started time.Time) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("junit report: %w", err)
	}
	if err := writeJUnit(f, rep, started); err != nil {
		f.Close()
		return fmt.Errorf("junit report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("junit report %s: %w", path, err)
	}
	return nil
}
