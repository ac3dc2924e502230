package spec

// Default returns the built-in default spec (3 masters on 127.0.0.1:7001-7003,
// replicas 0, dir ./.rcluster/dev made absolute against cwd).
func Default() (*Spec, error) { panic("unimplemented") }

// Load reads, strictly decodes (unknown keys, wrong types, syntax errors are
// errors naming file:line), defaults and validates the spec at path.
// Relative dir/template are resolved against the file's directory.
func Load(path string) (*Spec, error) { panic("unimplemented") }

// Resolve picks the spec file: flag value, else $RCLUSTER_FILE, else
// ./cluster.yaml if it exists, else the built-in default.
func Resolve(flagPath string, getenv func(string) string) (*Spec, error) { panic("unimplemented") }

// Validate reports every problem at once as *Error.
func (s *Spec) Validate() error { panic("unimplemented") }

// Problem is one spec problem, with file:line when known.
type Problem struct {
	File string
	Line int
	Msg  string
}

// Error is a spec error (exit code 2): one or more problems.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string { panic("unimplemented") }
