package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/exporter/api/timeparse"
)

// decodeError turns an error of decoding the file into a FieldError that names the field, not
// only the line, and says what was expected in words: yaml.v3 reports
// "line 5: cannot unmarshal !!str `lots` into int64" and time errors without any position.
func decodeError(root *yaml.Node, err error) error {
	var te *timeparse.Error
	if errors.As(timeparse.Explain(err), &te) {
		if path, line := pathOf(root, func(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Value == te.Value }); line > 0 {
			return &FieldError{Line: line, Field: path, Msg: te.Msg}
		}
		return &FieldError{Msg: te.Msg}
	}
	fe, ok := yamlError(err).(*FieldError)
	if !ok || fe.Line == 0 {
		return yamlError(err)
	}
	m := typeErrRE.FindStringSubmatch(fe.Msg)
	if m == nil {
		return fe
	}
	path, _ := pathOf(root, func(n *yaml.Node) bool {
		if m[2] == "" { // a list or a mapping where a scalar belongs
			return n.Line == fe.Line && ((m[1] == "seq" && n.Kind == yaml.SequenceNode) || (m[1] == "map" && n.Kind == yaml.MappingNode))
		}
		return n.Line == fe.Line && n.Kind == yaml.ScalarNode && n.Value == m[2]
	})
	fe.Field = path
	if m[2] == "" {
		fe.Msg = fmt.Sprintf("%s, want %s", "found "+yamlKinds[m[1]], goKind(m[3]))
	} else {
		fe.Msg = fmt.Sprintf("%q is %s, want %s", m[2], yamlKinds[m[1]], goKind(m[3]))
	}
	return fe
}

var typeErrRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (.+)$")

var yamlKinds = map[string]string{"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
	"map": "a mapping", "seq": "a list", "null": "empty", "timestamp": "a time"}

func goKind(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "time.Time":
		return "a time"
	case t == "time.Duration":
		return "a duration such as 72h"
	}
	return "a " + t[strings.LastIndexByte(t, '.')+1:]
}

// pathOf finds the first value node (not a mapping key) matching and returns its field path ("plans[0].limits.x")
// and line.
func pathOf(root *yaml.Node, match func(*yaml.Node) bool) (string, int) {
	var walk func(n *yaml.Node, path string) (string, int)
	walk = func(n *yaml.Node, path string) (string, int) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p, l := walk(c, path); l > 0 {
					return p, l
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				sub := n.Content[i].Value
				if path != "" {
					sub = path + "." + sub
				}
				if p, l := walk(n.Content[i+1], sub); l > 0 {
					return p, l
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if p, l := walk(c, fmt.Sprintf("%s[%d]", path, i)); l > 0 {
					return p, l
				}
			}
		}
		// After the children: the deepest node matching wins.
		if n.Kind != yaml.DocumentNode && match(n) {
			return path, n.Line
		}
		return "", 0
	}
	return walk(root, "")
}
