package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvePassword(t *testing.T) {
	t.Setenv("REDISCLI_AUTH", "from-env")
	var w bytes.Buffer
	if pw, err := resolvePassword("", "from-env", &w); err != nil || pw != "from-env" || w.Len() != 0 {
		t.Errorf("env password: %q, %v, warned %q", pw, err, w.String())
	}
	if pw, err := resolvePassword("", "typed", &w); err != nil || pw != "typed" || !strings.Contains(w.String(), "--password-file") {
		t.Errorf("command-line password: %q, %v, warning %q", pw, err, w.String())
	}
	w.Reset()
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := resolvePassword(file, "typed", &w); err != nil || pw != "s3cret" || w.Len() != 0 {
		t.Errorf("--password-file: %q, %v, warned %q", pw, err, w.String())
	}
	if _, err := resolvePassword(filepath.Join(t.TempDir(), "missing"), "", &w); err == nil {
		t.Error("a missing --password-file was accepted")
	}
}
