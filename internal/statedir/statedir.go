// Package statedir owns a cluster's state directory: the versioned state
// file (rcluster-state.json) that says which cluster lives there and which
// of the directory's paths rcluster created, and the purge that removes
// exactly those paths and nothing else.
//
// A state dir may be a directory the user already had (`dir: .`, or a
// folder holding notes): rcluster records every path of its layout that did
// not exist before it made it (Claim, called before anything is created),
// and Purge deletes only recorded paths. Files it did not create survive;
// a directory goes only when it is empty once rcluster's files are gone.
package statedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/rcluster/rcluster/internal/spec"
)

// File names inside a state dir.
const (
	StateFile = "rcluster-state.json"
	LockFile  = "rcluster.lock"
	// EventsFile is internal/events' log (events.FileName).
	EventsFile = "events.jsonl"
)

// Version is the state file format this build writes. Version 1 (no
// "version" key) was written only after an up completed and recorded
// neither the runtime nor what rcluster created.
const Version = 2

// State is the content of rcluster-state.json. It never holds a secret.
type State struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Runtime is process, docker or external.
	Runtime string `json:"runtime"`
	// Host and Ports describe process and docker clusters; Nodes is every
	// node's address (the only topology of an external cluster).
	Host     string   `json:"host,omitempty"`
	Ports    []int    `json:"ports,omitempty"`
	Nodes    []string `json:"nodes,omitempty"`
	Replicas int      `json:"replicas"`
	// Security is none, auth, tls or auth+tls.
	Security string `json:"security,omitempty"`
	// Formed is true once an up completed: only then do Host, Ports,
	// Nodes and Replicas describe a cluster that exists.
	Formed bool `json:"formed"`
	// Created lists the paths (relative to the state dir, slash-separated;
	// "." is the dir itself) that rcluster created. Trees are directories
	// whose whole content is rcluster's (a node's data dir): Purge removes
	// them with everything in them.
	Created []string `json:"created,omitempty"`
	Trees   []string `json:"trees,omitempty"`
}

// Path is dir's state file.
func Path(dir string) string { return filepath.Join(dir, StateFile) }

// Read returns dir's state, or nil when it has none. A version 1 file is
// read as a formed cluster of runtime process whose created paths are
// unknown (Legacy reports that).
func Read(dir string) (*State, error) {
	b, err := os.ReadFile(Path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", Path(dir), err)
	}
	if st.Version == 0 {
		st.Version, st.Formed = 1, true
	}
	if st.Version > Version {
		return nil, fmt.Errorf("%s: state version %d is newer than this rcluster understands (%d); use a newer rcluster", Path(dir), st.Version, Version)
	}
	if st.Runtime == "" {
		st.Runtime = "process"
	}
	return &st, nil
}

// Legacy reports whether st comes from a version 1 file, which did not
// record what rcluster created.
func (st *State) Legacy() bool { return st.Version < 2 }

// Write replaces dir's state file atomically (0600), as version Version.
func Write(dir string, st *State) error {
	st.Version = Version
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+StateFile+".*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if _, err = f.Write(append(b, '\n')); err == nil {
		err = f.Close()
	} else {
		f.Close()
	}
	if err == nil {
		err = os.Rename(f.Name(), Path(dir))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// Layout is the set of paths rcluster may create in a state dir, relative
// to it: plain paths, and trees (see State.Trees).
type Layout struct {
	Paths []string
	Trees []string
}

// Claim records, in st, every path of l that does not exist in dir yet
// (rcluster is about to create it), plus those in made (paths the caller
// knows it just created, such as "." and the lock file). Call it before
// creating any of them, then Write st. It reports whether st changed.
func Claim(dir string, st *State, l Layout, made ...string) bool {
	changed := false
	add := func(list *[]string, rel string) {
		if !slices.Contains(*list, rel) {
			*list = append(*list, rel)
			changed = true
		}
	}
	if st.Legacy() {
		// A version 1 rcluster did not record what it made; it purged the
		// whole dir. Take the layout's paths that exist as its (never
		// anything else), so that purge still removes them.
		st.Version, changed = Version, true
		for _, rel := range append([]string{".", StateFile, LockFile}, l.Paths...) {
			if Exists(filepath.Join(dir, filepath.FromSlash(rel))) {
				add(&st.Created, rel)
			}
		}
		for _, rel := range l.Trees {
			if Exists(filepath.Join(dir, filepath.FromSlash(rel))) {
				add(&st.Created, rel)
				add(&st.Trees, rel)
			}
		}
	}
	for _, rel := range made {
		add(&st.Created, rel)
	}
	for _, rel := range l.Paths {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel))); errors.Is(err, fs.ErrNotExist) {
			add(&st.Created, rel)
		}
	}
	for _, rel := range l.Trees {
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel))); errors.Is(err, fs.ErrNotExist) {
			add(&st.Created, rel)
			add(&st.Trees, rel)
		}
	}
	return changed
}

// BaseLayout is what rcluster creates in every state dir: the state,
// lock and events files.
func BaseLayout() Layout { return Layout{Paths: []string{StateFile, LockFile, EventsFile}} }

// NodeLayout is BaseLayout plus what rcluster and the nodes it runs create
// for s: the conf, run, log and db dirs with each node's config, pidfile
// and log, the generated TLS material, and each node's data dir as a tree.
// (Which layout a runtime uses is its provider's call: provider.Layout.)
func NodeLayout(s *spec.Spec) Layout {
	l := BaseLayout()
	l.Paths = append(l.Paths, "conf", "run", "log", "db")
	if s.TLS != nil && s.TLS.Generate {
		l.Paths = append(l.Paths, "tls", "tls/"+spec.GeneratedCAFile, "tls/"+spec.GeneratedCertFile, "tls/"+spec.GeneratedKeyFile)
	}
	for _, p := range s.Ports {
		l.Paths = append(l.Paths, rel(s, s.ConfFile(p)), rel(s, s.PidFile(p)), rel(s, s.LogFile(p)))
		l.Trees = append(l.Trees, rel(s, s.DataDir(p)))
	}
	return l
}

func rel(s *spec.Spec, path string) string {
	r, err := filepath.Rel(s.Dir, path)
	if err != nil {
		return path // not inside: validRel refuses it in Purge
	}
	return filepath.ToSlash(r)
}

// Exists reports whether path exists (a broken symlink counts).
func Exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// PurgeResult says what Purge removed and what it left.
type PurgeResult struct {
	Removed int
	// Kept lists the paths of the dir that rcluster did not create (or
	// could not remove), relative to it; the dir stays when any remain.
	Kept []string
	// DirRemoved is true when the state dir itself is gone.
	DirRemoved bool
}

// Purge removes what rcluster created in dir: the paths st records, or, for
// a version 1 state (or none at all), the paths of layout l that exist,
// plus the state and lock files. A recorded directory is removed only when
// it is empty once its recorded content is gone, except trees, which go
// with all their content; the dir itself goes when it is then empty and
// rcluster created it (version 1: always when empty). Nothing else is
// touched: no path outside dir, no file rcluster did not create.
func Purge(dir string, st *State, l Layout) (PurgeResult, error) {
	var res PurgeResult
	created, trees := map[string]bool{}, map[string]bool{}
	if st != nil && !st.Legacy() {
		for _, p := range st.Created {
			created[p] = true
		}
		for _, p := range st.Trees {
			trees[p] = true
		}
	} else {
		for _, p := range append(slices.Clone(l.Paths), l.Trees...) {
			created[p] = true
		}
		for _, p := range l.Trees {
			trees[p] = true
		}
		created["."], created[StateFile], created[LockFile] = true, true, true
	}
	var errs []error
	// Deepest first, so a directory is looked at after its content.
	paths := make([]string, 0, len(created))
	for p := range created {
		if p == "." || !validRel(p) {
			continue
		}
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		di, dj := strings.Count(paths[i], "/"), strings.Count(paths[j], "/")
		if di != dj {
			return di > dj
		}
		return paths[i] > paths[j]
	})
	for _, rel := range paths {
		full := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := os.Lstat(full)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case fi.IsDir() && trees[rel]:
			err = os.RemoveAll(full)
		case fi.IsDir():
			err = os.Remove(full)
			if err != nil && !isNotEmpty(err) {
				errs = append(errs, fmt.Errorf("purge %s: %w", full, err))
			}
			if err != nil {
				continue // holds files rcluster did not create: kept
			}
		default:
			err = os.Remove(full)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("purge %s: %w", full, err))
			continue
		}
		res.Removed++
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		res.DirRemoved = true
	case err != nil:
		errs = append(errs, err)
	default:
		for _, e := range entries {
			res.Kept = append(res.Kept, keptNames(dir, e.Name())...)
		}
		if len(entries) == 0 && created["."] {
			if err := os.Remove(dir); err != nil {
				errs = append(errs, fmt.Errorf("purge %s: %w", dir, err))
			} else {
				res.DirRemoved = true
			}
		}
	}
	return res, errors.Join(errs...)
}

// keptNames lists name, or for a directory the files under it (up to a
// few), relative to dir, for the "kept" message.
func keptNames(dir, name string) []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(dir, name), func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(out) >= 20 {
			return filepath.SkipAll
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if len(out) == 0 {
		out = append(out, name+"/")
	}
	return out
}

// validRel reports whether rel is a clean relative path inside its dir.
func validRel(rel string) bool {
	c := filepath.Clean(filepath.FromSlash(rel))
	return c == filepath.FromSlash(rel) && !filepath.IsAbs(c) && c != ".." && !strings.HasPrefix(c, ".."+string(filepath.Separator))
}

func isNotEmpty(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// ENOTEMPTY on Linux, EEXIST on some systems.
		s := pe.Err.Error()
		return strings.Contains(s, "not empty") || strings.Contains(s, "exists")
	}
	return false
}

// CheckPurgeTarget refuses to purge a dir that cannot be a state dir of its
// own: the filesystem root, the home directory or one of its parents, or
// the directory of the spec file itself (specDir, "" when unknown).
func CheckPurgeTarget(dir, specDir string) error {
	clean := filepath.Clean(dir)
	why := ""
	if clean == filepath.Dir(clean) {
		why = "it is the filesystem root"
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" && why == "" {
		home = filepath.Clean(home)
		if rel, err := filepath.Rel(clean, home); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
			why = "it is your home directory or holds it"
			if rel == "." {
				why = "it is your home directory"
			}
		}
	}
	if specDir != "" && why == "" && filepath.Clean(specDir) == clean {
		why = "it is the directory of the spec file itself"
	}
	if why == "" {
		return nil
	}
	return &PurgeRefusedError{Dir: clean, Why: why}
}

// PurgeRefusedError says why a state dir may not be purged; nothing was
// stopped or deleted.
type PurgeRefusedError struct {
	Dir, Why string
}

func (e *PurgeRefusedError) Error() string {
	return fmt.Sprintf("refusing to purge %s: %s; nothing was stopped or deleted; set `dir:` in the spec to a directory of its own (e.g. ./.rcluster/<name>), or run `rcluster down` without --purge", e.Dir, e.Why)
}
