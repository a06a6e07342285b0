package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Config files. serve reads an optional TOML file (-config FILE) whose keys
// are serve's flag names, at the top level, with the flag's value in TOML
// form:
//
//	tap      = "zc0"
//	addr     = ["192.0.2.2/24"]
//	addr6    = ["2001:db8::2/64"]
//	mtu      = 9000
//	services = "echo,perf"
//	metrics  = "127.0.0.1:9100"
//
// The file sets flags through the same parsers the command line uses, so a
// value means the same in both places and is checked the same way; flags
// given on the command line override the file (a repeatable flag given on
// the command line replaces the file's list). TOML was chosen over YAML for
// its unambiguous types (no "no" that is a boolean) and one-line values;
// github.com/BurntSushi/toml is the reference Go implementation with precise
// syntax errors.

// errConfig marks an error in a config file.
var errConfig = errors.New("config")

// loadConfig reads the TOML file at path and sets the flags of fs from it,
// recording in o which flags it set. skip names flags a file may not set.
func loadConfig(fs *flag.FlagSet, path string, o *origins, skip ...string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: cannot read the config file: %v", errConfig, err)
	}
	var m map[string]any
	if _, err := toml.Decode(string(data), &m); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%w: %s:%d:%d: %s (TOML syntax, e.g. mtu = 1500 or addr = [\"192.0.2.2/24\"])",
				errConfig, path, pe.Position.Line, pe.Position.Col, pe.Message)
		}
		return fmt.Errorf("%w: %s: %v", errConfig, path, err)
	}
	lines := strings.Split(string(data), "\n")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Report problems in the order a reader meets them.
	sort.Slice(keys, func(i, j int) bool { return keyLine(lines, keys[i]) < keyLine(lines, keys[j]) })
	o.file = path
	if o.keys == nil {
		o.keys = map[string]bool{}
	}
	for _, k := range keys {
		at := fmt.Sprintf("%s:%d", path, keyLine(lines, k))
		if _, ok := m[k].(map[string]any); ok {
			return fmt.Errorf("%w: %s: [%s]: tables are not used: every key is a flag name at the top level of the file, e.g. mtu = 1500", errConfig, at, k)
		}
		f := fs.Lookup(k)
		if f == nil || contains(skip, k) {
			return fmt.Errorf("%w: %s: unknown key %q%s; the keys are the flag names of %s (see -help)",
				errConfig, at, k, suggest(fs, k, skip), fs.Name())
		}
		vals, err := tomlValues(m[k])
		if err != nil {
			return fmt.Errorf("%w: %s: %s: %v", errConfig, at, k, err)
		}
		_, list := f.Value.(sealer)
		if len(vals) != 1 && !list {
			return fmt.Errorf("%w: %s: %s takes one value, not a list: want e.g. %s = %s", errConfig, at, k, k, example(f))
		}
		for _, v := range vals {
			if err := checkKind(f, m[k], v); err != nil {
				return fmt.Errorf("%w: %s: %s = %s: %v", errConfig, at, k, tomlRepr(m[k]), err)
			}
			if err := fs.Set(k, v); err != nil {
				return fmt.Errorf("%w: %s: %s = %s: %v", errConfig, at, k, tomlRepr(m[k]), err)
			}
		}
		o.keys[k] = true
	}
	return nil
}

// keyLine returns the 1-based line where key is assigned or its table
// starts, or 0.
func keyLine(lines []string, key string) int {
	q := regexp.QuoteMeta(key)
	re := regexp.MustCompile(`^\s*((` + q + `|"` + q + `"|'` + q + `')\s*=|\[\[?\s*` + q + `\s*\]\]?)`)
	for i, l := range lines {
		if re.MatchString(l) {
			return i + 1
		}
	}
	return 0
}

// tomlValues turns a decoded TOML value into the strings a flag's Set
// takes: one for a scalar, one per element for an array.
func tomlValues(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case int64:
		return []string{strconv.FormatInt(x, 10)}, nil
	case float64:
		return []string{strconv.FormatFloat(x, 'f', -1, 64)}, nil
	case bool:
		return []string{strconv.FormatBool(x)}, nil
	case []any:
		var out []string
		for _, e := range x {
			s, err := tomlValues(e)
			if err != nil || len(s) != 1 {
				return nil, errors.New("want an array of strings or numbers")
			}
			out = append(out, s...)
		}
		if len(out) == 0 {
			return nil, errors.New("an empty array sets nothing; leave the key out instead")
		}
		return out, nil
	case map[string]any:
		return nil, errors.New("tables are not used: every key is a flag name at the top level of the file")
	}
	return nil, fmt.Errorf("a %T cannot be a flag value; want a string, number, boolean or array", v)
}

// checkKind refuses a TOML value of the wrong type for the flag (a string
// for a boolean, a boolean for a number), with an example of the right one.
func checkKind(f *flag.Flag, tv any, s string) error {
	if e, ok := tv.([]any); ok && len(e) > 0 {
		tv = e[0]
	}
	var ok bool
	switch kind := flagKind(f); kind {
	case "boolean":
		_, ok = tv.(bool)
	case "integer":
		_, ok = tv.(int64)
	case "string":
		_, ok = tv.(string)
	default: // sizes and lists take strings or numbers
		_, isBool := tv.(bool)
		ok = !isBool
	}
	if ok {
		return nil
	}
	return fmt.Errorf("want %s, e.g. %s = %s", article(flagKind(f)), f.Name, example(f))
}

// flagKind names the TOML type a flag takes.
func flagKind(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "boolean"
	}
	switch reflect.TypeOf(f.Value).String() {
	case "*flag.intValue", "*flag.int64Value", "*flag.uintValue", "*flag.uint64Value":
		return "integer"
	case "*flag.stringValue":
		return "string"
	case "*flag.durationValue":
		return "duration string"
	}
	return "value"
}

func article(kind string) string {
	if kind == "integer" {
		return "an integer"
	}
	return "a " + kind
}

// example is a TOML value of the right type for f: its default, or a
// placeholder.
func example(f *flag.Flag) string {
	switch flagKind(f) {
	case "boolean":
		return "true"
	case "integer":
		return f.DefValue
	}
	if f.DefValue != "" {
		return strconv.Quote(f.DefValue)
	}
	return `"..."`
}

// tomlRepr prints a decoded value as it would appear in the file.
func tomlRepr(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = tomlRepr(e)
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// suggest returns `; did you mean "mtu"?` for a key close to a flag name.
func suggest(fs *flag.FlagSet, key string, skip []string) string {
	best, bestD := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		if contains(skip, f.Name) {
			return
		}
		if d := editDistance(strings.ToLower(key), f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
