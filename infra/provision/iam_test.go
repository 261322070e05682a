package provision_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/infra/cloudformation"
)

// A small IAM policy evaluator, enough for the statements of our templates:
// Allow and Deny statements with Action lists, Resource ARNs (wildcards,
// !GetAtt X.Arn and !Ref of the template's tables, stream and topic) and
// Conditions with the StringEquals and StringLike operators, optionally
// qualified ForAllValues: or ForAnyValue:. Anything else in a statement
// fails the test, so that a template cannot grow a clause the drift tests
// silently ignore.

// request is one API call as IAM sees it.
type request struct {
	action   string // "dynamodb:Query"
	resource string // ARN
	// context holds the condition keys the call carries, each with its
	// values (dynamodb:LeadingKeys may have several).
	context map[string][]string
}

func (r request) String() string {
	return fmt.Sprintf("%s on %s %v", r.action, r.resource, r.context)
}

type decision string

const (
	allowed      decision = "allowed"
	denied       decision = "explicitly denied"
	notPermitted decision = "not allowed (implicit deny)"
)

// policy is one AWS::IAM::ManagedPolicy of a parsed template, with what its
// intrinsic functions need.
type policy struct {
	name string
	tpl  *cloudformation.Template
	vars map[string]string
}

func (p policy) statements(t *testing.T) []map[string]any {
	t.Helper()
	r, ok := p.tpl.Resources[p.name]
	if !ok || r.Type != "AWS::IAM::ManagedPolicy" {
		t.Fatalf("no AWS::IAM::ManagedPolicy %s", p.name)
	}
	doc, _ := r.Properties["PolicyDocument"].(map[string]any)
	return list(t, doc["Statement"])
}

// decide evaluates req as IAM does for one identity policy: an explicit
// Deny wins, then any Allow; nothing matching is an implicit deny.
func (p policy) decide(t *testing.T, req request) decision {
	t.Helper()
	var allow bool
	for _, st := range p.statements(t) {
		for k := range st {
			if !slices.Contains([]string{"Sid", "Effect", "Action", "Resource", "Condition"}, k) {
				t.Fatalf("%s statement %v: %s is not understood by this test's evaluator", p.name, st["Sid"], k)
			}
		}
		if !p.matches(t, st, req) {
			continue
		}
		switch st["Effect"] {
		case "Deny":
			return denied
		case "Allow":
			allow = true
		default:
			t.Fatalf("%s statement %v: Effect %v", p.name, st["Sid"], st["Effect"])
		}
	}
	if allow {
		return allowed
	}
	return notPermitted
}

func (p policy) matches(t *testing.T, st map[string]any, req request) bool {
	t.Helper()
	var actions []string
	for _, a := range list(t, st["Action"]) {
		actions = append(actions, str(a["."]))
	}
	if !slices.ContainsFunc(actions, func(a string) bool { return glob(a, req.action) }) {
		return false
	}
	res := p.resolveResource(t, st["Resource"])
	if !glob(res, req.resource) {
		return false
	}
	cond, _ := st["Condition"].(map[string]any)
	for op, block := range cond {
		keys, ok := block.(map[string]any)
		if !ok {
			t.Fatalf("%s statement %v: condition %s is not a map", p.name, st["Sid"], op)
		}
		for key, want := range keys {
			if !p.condition(t, op, p.values(t, want), req.context[key]) {
				return false
			}
		}
	}
	return true
}

// condition evaluates one condition key: op is the operator, want the
// policy's values, got the request's (nil when the key is absent).
func (p policy) condition(t *testing.T, op string, want, got []string) bool {
	t.Helper()
	set, base, qualified := strings.Cut(op, ":")
	if !qualified {
		base, set = op, ""
	}
	var match func(pattern, value string) bool
	switch base {
	case "StringEquals":
		match = func(p, v string) bool { return p == v }
	case "StringLike":
		match = glob
	default:
		t.Fatalf("%s: condition operator %s is not understood by this test's evaluator", p.name, op)
	}
	matchesAny := func(v string) bool {
		return slices.ContainsFunc(want, func(w string) bool { return match(w, v) })
	}
	switch set {
	case "ForAllValues": // true for an absent key: every one of no values matches
		return !slices.ContainsFunc(got, func(v string) bool { return !matchesAny(v) })
	case "ForAnyValue", "": // a single-valued operator on an absent key is false
		return slices.ContainsFunc(got, matchesAny)
	default:
		t.Fatalf("%s: condition set operator %s is not understood by this test's evaluator", p.name, set)
		return false
	}
}

func (p policy) values(t *testing.T, v any) []string {
	t.Helper()
	if items, ok := v.([]any); ok {
		var out []string
		for _, it := range items {
			out = append(out, p.resolveString(t, it))
		}
		return out
	}
	return []string{p.resolveString(t, v)}
}

func (p policy) resolveString(t *testing.T, v any) string {
	t.Helper()
	s, err := cloudformation.Resolve(v, p.vars)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return s
}

// resolveResource turns a statement's Resource into an ARN pattern,
// resolving !GetAtt X.Arn and !Ref X of the template's own tables, stream
// and topic.
func (p policy) resolveResource(t *testing.T, v any) string {
	t.Helper()
	m, _ := v.(map[string]any)
	var id string
	if ga, ok := m["Fn::GetAtt"].([]any); ok && len(ga) == 2 && ga[1] == "Arn" {
		id = str(ga[0])
	} else if ref, ok := m["Ref"].(string); ok && p.tpl.Resources[ref].Type != "" {
		id = ref
	} else {
		return p.resolveString(t, v)
	}
	r := p.tpl.Resources[id]
	region, account := p.vars["AWS::Region"], p.vars["AWS::AccountId"]
	name := func(prop string) string { return p.resolveString(t, r.Properties[prop]) }
	switch r.Type {
	case "AWS::DynamoDB::Table":
		return "arn:aws:dynamodb:" + region + ":" + account + ":table/" + name("TableName")
	case "AWS::Kinesis::Stream":
		return "arn:aws:kinesis:" + region + ":" + account + ":stream/" + name("Name")
	case "AWS::SNS::Topic": // !Ref of a topic is its ARN
		return "arn:aws:sns:" + region + ":" + account + ":" + name("TopicName")
	}
	t.Fatalf("%s: resource %s of type %s is not understood by this test's evaluator", p.name, id, r.Type)
	return ""
}

// glob matches IAM's wildcards: * any run of characters, ? one character.
func glob(pattern, s string) bool {
	var re strings.Builder
	re.WriteString("^")
	for _, c := range pattern {
		switch c {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String()).MatchString(s)
}

func TestEvaluator(t *testing.T) {
	t.Parallel()
	tpl, err := cloudformation.Parse([]byte(`
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties: {TableName: !Sub "${Prefix}-t"}
  P:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: [dynamodb:Query]
            Resource: !GetAtt T.Arn
            Condition:
              ForAllValues:StringEquals:
                dynamodb:LeadingKeys: [A, B]
          - Effect: Allow
            Action: [sns:Subscribe]
            Resource: "*"
            Condition:
              StringEquals: {sns:Protocol: sqs}
              StringLike: {sns:Endpoint: !Sub "arn:q:${Prefix}-*"}
          - Effect: Deny
            Action: [dynamodb:Query]
            Resource: "*"
            Condition:
              ForAnyValue:StringLike:
                dynamodb:LeadingKeys: ["X#*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := policy{name: "P", tpl: tpl, vars: map[string]string{"Prefix": "p", "AWS::Region": "r", "AWS::AccountId": "1"}}
	table := "arn:aws:dynamodb:r:1:table/p-t"
	lk := func(keys ...string) map[string][]string { return map[string][]string{"dynamodb:LeadingKeys": keys} }
	for _, tc := range []struct {
		req  request
		want decision
	}{
		{request{"dynamodb:Query", table, lk("A")}, allowed},
		{request{"dynamodb:Query", table, lk("A", "B")}, allowed},
		{request{"dynamodb:Query", table, lk("A", "C")}, notPermitted},
		{request{"dynamodb:Query", table, nil}, allowed}, // ForAllValues of no values
		{request{"dynamodb:Query", table + "x", lk("A")}, notPermitted},
		{request{"dynamodb:Scan", table, lk("A")}, notPermitted},
		{request{"dynamodb:Query", table, lk("A", "X#1")}, denied},
		{request{"dynamodb:Query", table, lk("X")}, notPermitted},
		{request{"sns:Subscribe", "t", map[string][]string{"sns:Protocol": {"sqs"}, "sns:Endpoint": {"arn:q:p-1"}}}, allowed},
		{request{"sns:Subscribe", "t", map[string][]string{"sns:Protocol": {"http"}, "sns:Endpoint": {"arn:q:p-1"}}}, notPermitted},
		{request{"sns:Subscribe", "t", map[string][]string{"sns:Protocol": {"sqs"}, "sns:Endpoint": {"arn:q:o-1"}}}, notPermitted},
		{request{"sns:Subscribe", "t", map[string][]string{"sns:Endpoint": {"arn:q:p-1"}}}, notPermitted},
	} {
		if got := p.decide(t, tc.req); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.req, got, tc.want)
		}
	}
}
