// Package config resolves a command's settings from four sources, in this
// order of precedence: command-line flag, KEYHOLD_* environment variable,
// config file, built-in default. Every setting has all four: the flag
// --NAME, the variable KEYHOLD_NAME (dashes become underscores), the file
// line "NAME = VALUE", and its default.
//
// The file format is deliberately flat: one "name = value" per line, '#'
// starts a comment, values may be double-quoted (Go string syntax). It is a
// subset of TOML, so editors highlight it, and every value has one line, so
// a bad one is reported as FILE:LINE.
//
// It never reads or logs a setting's value in an error unless it is the
// value that failed to parse (settings are paths, addresses and durations,
// not secrets).
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Kind is a setting's value type.
type Kind int

const (
	String Kind = iota
	Bool
	Duration
	Int
)

func (k Kind) String() string {
	switch k {
	case Bool:
		return "bool"
	case Duration:
		return "duration"
	case Int:
		return "int"
	}
	return "string"
}

// Setting is one configurable value and where it lands.
type Setting struct {
	Name    string // "data-dir": flag --data-dir, env KEYHOLD_DATA_DIR, file key data-dir
	Usage   string // one line for --help and the example file
	Default string
	Kind    Kind
	// Target receives the resolved value: *string, *bool, *time.Duration
	// or *int, matching Kind.
	Target any
	// Check validates a parsed value beyond its kind (nil: any value).
	Check func(v string) error
	// FlagOnly settings are not read from the file (e.g. --config itself).
	FlagOnly bool
	// Example is the value the example file shows when it differs from
	// Default (e.g. a commented-out path); "" shows Default.
	Example string
}

// EnvName is the environment variable of a setting.
func EnvName(name string) string {
	return "KEYHOLD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Set is a command's settings.
type Set struct {
	Command  string // "serve", for messages and the example header
	Settings []*Setting
	// Sources records, after Resolve, where each value came from:
	// "default", "file PATH:LINE", "env KEYHOLD_X", "flag --x".
	Sources map[string]string
}

// flagValue is a pflag.Value that only records the raw text: parsing and
// validation happen in Resolve so that a bad flag, variable or file line
// is reported the same way.
type flagValue struct {
	s   *Setting
	raw string
}

func (v *flagValue) String() string     { return v.raw }
func (v *flagValue) Set(x string) error { v.raw = x; return nil }
func (v *flagValue) Type() string {
	if v.s.Kind == Bool {
		return "bool" // lets pflag accept --flag without a value
	}
	return v.s.Kind.String()
}
func (v *flagValue) IsBoolFlag() bool { return v.s.Kind == Bool }

// Bind registers one flag per setting on fs.
func (s *Set) Bind(fs *pflag.FlagSet) {
	for _, st := range s.Settings {
		f := fs.VarPF(&flagValue{s: st, raw: st.Default}, st.Name, "", st.Usage+envHint(st))
		f.DefValue = st.Default
		if st.Kind == Bool {
			f.NoOptDefVal = "true"
		}
	}
}

func envHint(st *Setting) string {
	return " (env " + EnvName(st.Name) + ")"
}

// Resolve fills every Target. fs is the parsed flag set Bind registered
// on; file is the config file path ("" for none); getenv looks up the
// environment (os.Getenv in production). The error names where the bad
// value came from: "FILE:LINE: name: ...", "KEYHOLD_X: ...", "--x: ...".
func (s *Set) Resolve(fs *pflag.FlagSet, file string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	fileVals := map[string]fileValue{}
	if file != "" {
		var err error
		if fileVals, err = s.readFile(file); err != nil {
			return err
		}
	}
	s.Sources = map[string]string{}
	var errs []error
	for _, st := range s.Settings {
		raw, where := st.Default, "default"
		if fv, ok := fileVals[st.Name]; ok {
			raw, where = fv.value, fmt.Sprintf("%s:%d", file, fv.line)
		}
		if v, ok := lookupEnv(getenv, EnvName(st.Name)); ok {
			raw, where = v, EnvName(st.Name)
		}
		if f := fs.Lookup(st.Name); f != nil && f.Changed {
			raw, where = f.Value.String(), "--"+st.Name
		}
		if err := assign(st, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, st.Name, err))
			continue
		}
		s.Sources[st.Name] = where
	}
	return errors.Join(errs...)
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	if getenv == nil {
		return os.LookupEnv(name)
	}
	v := getenv(name)
	return v, v != ""
}

// assign parses raw by the setting's kind into its target.
func assign(st *Setting, raw string) error {
	switch st.Kind {
	case String:
		*st.Target.(*string) = raw
	case Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", raw)
		}
		*st.Target.(*bool) = b
	case Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 1h)", raw)
		}
		if d < 0 {
			return fmt.Errorf("%q is negative", raw)
		}
		*st.Target.(*time.Duration) = d
	case Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		*st.Target.(*int) = n
	}
	if st.Check != nil {
		return st.Check(raw)
	}
	return nil
}

type fileValue struct {
	value string
	line  int
}

func (s *Set) readFile(path string) (map[string]fileValue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	known := map[string]*Setting{}
	for _, st := range s.Settings {
		if !st.FlagOnly {
			known[st.Name] = st
		}
	}
	out := map[string]fileValue{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected \"name = value\"", path, n)
		}
		key = strings.TrimSpace(key)
		val, err := parseValue(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, n, key, err)
		}
		if _, ok := known[key]; !ok {
			return nil, fmt.Errorf("%s:%d: unknown setting %q for keyhold %s (see keyhold config example)", path, n, key, s.Command)
		}
		if prev, dup := out[key]; dup {
			return nil, fmt.Errorf("%s:%d: %s is already set on line %d", path, n, key, prev.line)
		}
		out[key] = fileValue{value: val, line: n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return out, nil
}

// parseValue reads a value: "quoted" (Go syntax, then an optional trailing
// comment) or bare up to a '#' comment.
func parseValue(v string) (string, error) {
	if strings.HasPrefix(v, `"`) {
		q, err := strconv.QuotedPrefix(v)
		if err != nil {
			return "", errors.New("unterminated or invalid quoted string")
		}
		rest := strings.TrimSpace(v[len(q):])
		if rest != "" && !strings.HasPrefix(rest, "#") {
			return "", fmt.Errorf("unexpected %q after the quoted value", rest)
		}
		return strconv.Unquote(q)
	}
	if i := strings.Index(v, "#"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v, nil
}

// WriteExample writes a complete, commented config file: every setting
// with its usage, environment variable and default, commented out so that
// the file changes nothing until a line is enabled.
func (s *Set) WriteExample(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# keyhold %s configuration file (keyhold %s --config FILE).\n", s.Command, s.Command)
	fmt.Fprintf(bw, "# One \"name = value\" per line; '#' starts a comment; quote values with spaces.\n")
	fmt.Fprintf(bw, "# Precedence: command-line flag > KEYHOLD_* environment variable > this file > default.\n")
	fmt.Fprintf(bw, "# Every line below shows the default and is commented out.\n")
	for _, st := range s.Settings {
		if st.FlagOnly {
			continue
		}
		val := st.Default
		if st.Example != "" {
			val = st.Example
		}
		fmt.Fprintf(bw, "\n# %s\n# type: %s; flag: --%s; environment: %s\n", st.Usage, st.Kind, st.Name, EnvName(st.Name))
		fmt.Fprintf(bw, "# %s = %s\n", st.Name, quoteIfNeeded(val))
	}
	return bw.Flush()
}

func quoteIfNeeded(v string) string {
	if v == "" || strings.ContainsAny(v, " \t#\"") {
		return strconv.Quote(v)
	}
	return v
}

// Names lists the settings' names, sorted.
func (s *Set) Names() []string {
	var out []string
	for _, st := range s.Settings {
		out = append(out, st.Name)
	}
	sort.Strings(out)
	return out
}
