// Package cloudformation holds TCS's AWS infrastructure as code — two
// CloudFormation templates, embedded here so that tools can print them and
// tests can check them — and a reader for them.
//
//   - home.yaml, deployed once in the home region: the source-of-truth table
//     (point-in-time recovery, deletion protection), the change stream (KMS
//     encryption), and the IAM policies of catalog and streamer publish;
//     optionally (AuditArchive=enabled) the audit archive, which copies
//     every audit record to an S3 bucket under Object Lock.
//   - region.yaml, deployed once per serving region: the replica table, the
//     applier's lease table, the invalidation topic, and the IAM policies of
//     streamer apply and tcs.
//
// Both also create CloudWatch alarms on what AWS measures (the stream's
// iterator age, the tables' throttles and system errors, an invalidation
// topic gone silent or failing deliveries), notifying the SNS topic
// AlarmTopicArn when it is set; docs/operations.md gives their thresholds.
//
// infra/provision creates the same tables, stream and topics through the SDK
// (tcsctl infra apply; the emulators get them that way) and its tests check
// that names, key schemas, IAM actions and alarms here agree with the code.
package cloudformation

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// Home and Region are the templates' YAML source.
var (
	//go:embed home.yaml
	Home []byte
	//go:embed region.yaml
	Region []byte
)

// Template is a parsed template. Short-form intrinsic functions (!Ref, !Sub,
// !GetAtt …) are turned into their long form ({"Ref": …}, {"Fn::Sub": …}),
// so values are plain maps, lists and scalars, as in a JSON template.
type Template struct {
	Parameters map[string]Parameter `yaml:"Parameters"`
	Conditions map[string]any       `yaml:"Conditions"`
	Resources  map[string]Resource  `yaml:"Resources"`
	Outputs    map[string]any       `yaml:"Outputs"`
}

// Parameter is a template parameter.
type Parameter struct {
	Type           string `yaml:"Type"`
	Default        any    `yaml:"Default"`
	AllowedValues  []any  `yaml:"AllowedValues"`
	AllowedPattern string `yaml:"AllowedPattern"`
}

// Resource is a template resource.
type Resource struct {
	Type string `yaml:"Type"`
	// Condition names the template condition the resource is created
	// under; "" means always.
	Condition      string         `yaml:"Condition"`
	DeletionPolicy string         `yaml:"DeletionPolicy"`
	Properties     map[string]any `yaml:"Properties"`
}

// Parse reads a template.
func Parse(src []byte) (*Template, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	if err := longForm(&root); err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	var t Template
	if err := root.Decode(&t); err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	return &t, nil
}

// longForm rewrites each node tagged with a short-form intrinsic function
// into a one-key mapping, as CloudFormation reads it.
func longForm(n *yaml.Node) error {
	for _, c := range n.Content {
		if err := longForm(c); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return nil
	}
	name := strings.TrimPrefix(n.Tag, "!")
	if name != "Ref" && name != "Condition" {
		name = "Fn::" + name
	}
	inner := *n
	inner.Tag = ""
	switch inner.Kind {
	case yaml.ScalarNode:
		inner.Tag = "!!str"
		if name == "Fn::GetAtt" { // !GetAtt Res.Attr is [Res, Attr] in long form
			res, attr, ok := strings.Cut(inner.Value, ".")
			if !ok {
				return fmt.Errorf("line %d: !GetAtt %q: want Resource.Attribute", n.Line, inner.Value)
			}
			inner = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: res}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: attr}}}
		}
	case yaml.SequenceNode:
		inner.Tag = "!!seq"
	case yaml.MappingNode:
		inner.Tag = "!!map"
	}
	*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, &inner}}
	return nil
}

var subVar = regexp.MustCompile(`\$\{([^}!]+)\}`)

// Resolve evaluates a string-valued property: a literal, {"Ref": param} or
// {"Fn::Sub": "…${param}…"}, with vars giving parameters and pseudo
// parameters (AWS::Region …). A reference to anything not in vars is an
// error, so a test cannot silently compare against a placeholder.
func Resolve(v any, vars map[string]string) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case map[string]any:
		if ref, ok := v["Ref"].(string); ok && len(v) == 1 {
			val, ok := vars[ref]
			if !ok {
				return "", fmt.Errorf("resolve !Ref %s: unknown", ref)
			}
			return val, nil
		}
		if sub, ok := v["Fn::Sub"].(string); ok && len(v) == 1 {
			var missing []string
			out := subVar.ReplaceAllStringFunc(sub, func(m string) string {
				name := m[2 : len(m)-1]
				val, ok := vars[name]
				if !ok {
					missing = append(missing, name)
				}
				return val
			})
			if len(missing) > 0 {
				return "", fmt.Errorf("resolve !Sub %q: unknown %s", sub, strings.Join(missing, ", "))
			}
			return out, nil
		}
	}
	return "", fmt.Errorf("resolve %v: not a string, !Ref or !Sub", v)
}
