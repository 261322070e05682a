package provision_test

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/infra/cloudformation"
	tcssns "github.com/tcs-dev/tcs/tcs/sns"
)

// cloudWatchMetrics are the metrics the alarms may watch, each with the
// dimension sets AWS publishes it under (the services' CloudWatch metric
// references): an alarm on a dimension set AWS never publishes would never
// see data, and with "no data is not breaching" never fire.
var cloudWatchMetrics = map[string][][]string{
	"AWS/Kinesis GetRecords.IteratorAgeMilliseconds": {{"StreamName"}},
	"AWS/DynamoDB ReadThrottleEvents":                {{"TableName"}, {"GlobalSecondaryIndexName", "TableName"}},
	"AWS/DynamoDB WriteThrottleEvents":               {{"TableName"}, {"GlobalSecondaryIndexName", "TableName"}},
	"AWS/DynamoDB ThrottledRequests":                 {{"Operation", "TableName"}},
	"AWS/DynamoDB SystemErrors":                      {{"Operation", "TableName"}},
	"AWS/SNS NumberOfMessagesPublished":              {{"TopicName"}},
	"AWS/SNS NumberOfNotificationsFailed":            {{"TopicName"}},
	"AWS/SQS ApproximateAgeOfOldestMessage":          {{"QueueName"}},
}

// insightsQuery is the form of the Metrics Insights queries the alarms use:
// one aggregate over a SCHEMA, filtered on one dimension by equality (the
// WHERE operators Metrics Insights documents are = and !=, joined by AND
// or OR: no prefix or pattern match).
var insightsQuery = regexp.MustCompile(`^SELECT (SUM|MAX|MIN|AVG)\(([A-Za-z.]+)\) FROM SCHEMA\("([A-Za-z/]+)"((?:, [A-Za-z]+)+)\) WHERE ([A-Za-z]+) (=) '([^']*)'$`)

// insightsTagQuery is the form of the Metrics Insights queries that select
// resources by a resource tag (the nodes' queues, whose names are
// generated): one aggregate over a namespace, filtered on one tag by
// equality, as AWS documents for alarms ("WHERE tag.keyName = 'value'").
// The key is letters, digits and underscores only, so that it needs no
// quoting.
var insightsTagQuery = regexp.MustCompile(`^SELECT (SUM|MAX|MIN|AVG)\(([A-Za-z.]+)\) FROM "([A-Za-z/]+)" WHERE (tag\.[A-Za-z0-9_]+) (=) '([^']*)'$`)

// insightsStat names a Metrics Insights function as the alarm statistic it
// computes over each period.
var insightsStat = map[string]string{"SUM": "Sum", "MAX": "Maximum", "MIN": "Minimum", "AVG": "Average"}

// alarm is an AWS::CloudWatch::Alarm of a template, reduced to what it
// watches and when it fires.
type alarm struct {
	id, template string
	name         string
	metric       string // "<namespace> <metric name>"
	dims         []string
	// filter is the dimension the alarm selects its data by:
	// "TableName = acme-tcs-catalog".
	filter     string
	stat       string
	threshold  any
	comparison string
	period     any
	evals      any
	datapoints any
	missing    any
	props      map[string]any
	// condition is the template condition the alarm is created under, if
	// any.
	condition string
}

// watches is what the alarm watches, for comparing with what must be
// watched: metric and filter.
func (a alarm) watches() string { return a.template + ": " + a.metric + " where " + a.filter }

// alarms returns the alarms of both templates, their intrinsic functions
// resolved with the test's parameters and, for !Ref, ${…} and !GetAtt of a
// resource's name, the name the template gives that resource.
func alarms(t *testing.T) []alarm {
	t.Helper()
	homeT, regionT, homeVars, regionVars := templates(t)
	var out []alarm
	for _, tc := range []struct {
		name string
		tpl  *cloudformation.Template
		vars map[string]string
	}{{"home", homeT, homeVars}, {"region", regionT, regionVars}} {
		vars := map[string]string{}
		for k, v := range tc.vars {
			vars[k] = v
		}
		for id, r := range tc.tpl.Resources {
			for _, key := range []string{"TableName", "Name", "TopicName"} {
				if v, ok := r.Properties[key]; ok && r.Type != "AWS::CloudWatch::Alarm" {
					if name, err := cloudformation.Resolve(v, tc.vars); err == nil {
						vars[id] = name
					}
				}
			}
		}
		var ids []string
		for id, r := range tc.tpl.Resources {
			if r.Type == "AWS::CloudWatch::Alarm" {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		for _, id := range ids {
			a := parseAlarm(t, tc.name, id, tc.tpl.Resources[id].Properties, vars)
			a.condition = tc.tpl.Resources[id].Condition
			out = append(out, a)
		}
	}
	return out
}

func parseAlarm(t *testing.T, tplName, id string, p map[string]any, vars map[string]string) alarm {
	t.Helper()
	resolve := func(v any) string {
		t.Helper()
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			if ga, ok := m["Fn::GetAtt"].([]any); ok && len(ga) == 2 && slices.Contains([]any{"TopicName", "Name"}, ga[1]) {
				if name, ok := vars[str(ga[0])]; ok {
					return name
				}
			}
		}
		s, err := cloudformation.Resolve(v, vars)
		if err != nil {
			t.Fatalf("%s.yaml %s: %v", tplName, id, err)
		}
		return s
	}
	a := alarm{id: id, template: tplName, name: resolve(p["AlarmName"]), threshold: p["Threshold"],
		comparison: str(p["ComparisonOperator"]), evals: p["EvaluationPeriods"], datapoints: p["DatapointsToAlarm"],
		missing: p["TreatMissingData"], props: p}
	switch {
	case p["Metrics"] != nil:
		qs := list(t, p["Metrics"])
		if len(qs) != 1 || qs[0]["ReturnData"] != true {
			t.Fatalf("%s.yaml %s: Metrics %v: want one query that returns its data", tplName, id, qs)
		}
		q := resolve(qs[0]["Expression"])
		if m := insightsTagQuery.FindStringSubmatch(q); m != nil {
			// A tag filter selects whole resources; the metric keeps the
			// dimensions AWS publishes it with.
			a.stat, a.metric, a.period = insightsStat[m[1]], m[3]+" "+m[2], qs[0]["Period"]
			a.filter = m[4] + " " + m[5] + " " + m[6]
			if dimSets := cloudWatchMetrics[a.metric]; len(dimSets) > 0 {
				a.dims = dimSets[0]
			}
			return a
		}
		m := insightsQuery.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("%s.yaml %s: Metrics Insights query %q is not of the form %s or %s", tplName, id, q, insightsQuery, insightsTagQuery)
		}
		a.stat, a.metric, a.period = insightsStat[m[1]], m[3]+" "+m[2], qs[0]["Period"]
		a.dims = strings.Split(strings.TrimPrefix(m[4], ", "), ", ")
		a.filter = m[5] + " " + m[6] + " " + m[7]
		if !slices.Contains(a.dims, m[5]) {
			t.Errorf("%s.yaml %s: the query filters on %s, which is not in its SCHEMA %v (it would match nothing)", tplName, id, m[5], a.dims)
		}
	default:
		a.stat, a.metric, a.period = str(p["Statistic"]), str(p["Namespace"])+" "+str(p["MetricName"]), p["Period"]
		for _, d := range list(t, p["Dimensions"]) {
			a.dims = append(a.dims, str(d["Name"]))
			a.filter = str(d["Name"]) + " = " + resolve(d["Value"])
		}
		if len(a.dims) != 1 {
			t.Errorf("%s.yaml %s: dimensions %v: want exactly one", tplName, id, a.dims)
		}
	}
	sort.Strings(a.dims)
	return a
}

// TestTemplateAlarmsMatchCode checks that the alarms watch exactly the
// AWS-native signals of the resources the templates create and the code
// uses: the change stream's iterator age, throttles and system errors of
// the catalog and replica tables, and the age of the oldest message in the
// region's invalidation topic going silent or failing deliveries; each on a
// metric and dimension set AWS publishes, notifying AlarmTopicArn only when
// it is set.
func TestTemplateAlarmsMatchCode(t *testing.T) {
	t.Parallel()
	var want []string
	add := func(tpl, metric, filter string) { want = append(want, tpl+": "+metric+" where "+filter) }
	add("home", "AWS/Kinesis GetRecords.IteratorAgeMilliseconds", "StreamName = "+names.Stream())
	for _, table := range []struct{ tpl, name string }{{"home", names.CatalogTable()}, {"region", names.ReplicaTable(serving)}} {
		for _, m := range []string{"ReadThrottleEvents", "WriteThrottleEvents", "ThrottledRequests", "SystemErrors"} {
			add(table.tpl, "AWS/DynamoDB "+m, "TableName = "+table.name)
		}
	}
	add("region", "AWS/SNS NumberOfMessagesPublished", "TopicName = "+tcssns.TopicName(prefix, serving))
	add("region", "AWS/SNS NumberOfNotificationsFailed", "TopicName = "+tcssns.TopicName(prefix, serving))
	// The nodes' queues, by the tag tcs/sns puts on each (their names are
	// generated).
	add("region", "AWS/SQS ApproximateAgeOfOldestMessage", "tag."+tcssns.TagAlarmGroup+" = "+tcssns.AlarmGroup(prefix, serving))

	as := alarms(t)
	var got []string
	alarmNames := map[string]string{}
	for _, a := range as {
		got = append(got, a.watches())
		if dimSets, ok := cloudWatchMetrics[a.metric]; !ok {
			t.Errorf("%s.yaml %s: metric %q is not one the test knows AWS publishes", a.template, a.id, a.metric)
		} else if !slices.ContainsFunc(dimSets, func(s []string) bool { return slices.Equal(s, a.dims) }) {
			t.Errorf("%s.yaml %s: %s with dimensions %v: AWS publishes it with %v only", a.template, a.id, a.metric, a.dims, dimSets)
		}
		if !strings.HasPrefix(a.name, prefix+"-") {
			t.Errorf("%s.yaml %s: AlarmName %q does not start with the prefix %q", a.template, a.id, a.name, prefix)
		}
		if other, dup := alarmNames[a.name]; dup {
			t.Errorf("%s and %s are both named %q", other, a.id, a.name)
		}
		alarmNames[a.name] = a.id
		desc := resolveDescription(t, a)
		if len(desc) == 0 || len(desc) > 1024 {
			t.Errorf("%s.yaml %s: AlarmDescription of %d characters: CloudWatch takes 1 to 1024", a.template, a.id, len(desc))
		}
		for _, m := range regexp.MustCompile(`docs/runbooks/[A-Za-z]+\.md`).FindAllString(desc, -1) {
			if _, err := os.Stat("../../" + m); err != nil {
				t.Errorf("%s.yaml %s: AlarmDescription names %s: %v", a.template, a.id, m, err)
			}
		}
		if a.period != 60 {
			t.Errorf("%s.yaml %s: period %v, want 60 (operations.md counts minutes)", a.template, a.id, a.period)
		}
		if a.missing != "breaching" && a.missing != "notBreaching" {
			t.Errorf("%s.yaml %s: TreatMissingData %v: say whether no data is breaching", a.template, a.id, a.missing)
		}
		actions := map[string]any{"Fn::If": []any{"HasAlarmTopic",
			[]any{map[string]any{"Ref": "AlarmTopicArn"}}, map[string]any{"Ref": "AWS::NoValue"}}}
		for _, key := range []string{"AlarmActions", "OKActions"} {
			if diff := cmp.Diff(actions, a.props[key]); diff != "" {
				t.Errorf("%s.yaml %s: %s (-want +got):\n%s", a.template, a.id, key, diff)
			}
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alarms (-must be watched +templates watch):\n%s", diff)
	}

	homeT, regionT, _, _ := templates(t)
	for name, tpl := range map[string]*cloudformation.Template{"home": homeT, "region": regionT} {
		if p, ok := tpl.Parameters["AlarmTopicArn"]; !ok || p.Default != "" {
			t.Errorf("%s.yaml: parameter AlarmTopicArn %+v, want one defaulting to \"\" (no actions)", name, p)
		}
		// CloudFormation matches AllowedPattern against the whole value.
		pattern, err := regexp.Compile("^(?:" + tpl.Parameters["AlarmTopicArn"].AllowedPattern + ")$")
		if err != nil {
			t.Fatalf("%s.yaml: AlarmTopicArn AllowedPattern: %v", name, err)
		}
		for v, want := range map[string]bool{
			"": true, "arn:aws:sns:eu-west-1:123456789012:ops-pager": true, "arn:aws-cn:sns:cn-north-1:123456789012:ops_1": true,
			"ops-pager": false, "arn:aws:sqs:eu-west-1:123456789012:ops": false, "arn:aws:sns:eu-west-1:1234:ops": false,
		} {
			if got := pattern.MatchString(v); got != want {
				t.Errorf("%s.yaml: AlarmTopicArn %q allowed: %v, want %v", name, v, got, want)
			}
		}
		want := map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "AlarmTopicArn"}, ""}}}}
		if diff := cmp.Diff(want, tpl.Conditions["HasAlarmTopic"]); diff != "" {
			t.Errorf("%s.yaml: condition HasAlarmTopic (-want +got):\n%s", name, diff)
		}
	}
}

// resolveDescription returns the alarm's AlarmDescription with the test's
// parameters substituted.
func resolveDescription(t *testing.T, a alarm) string {
	t.Helper()
	vars := map[string]string{"Prefix": prefix, "AWS::Region": serving}
	d, err := cloudformation.Resolve(a.props["AlarmDescription"], vars)
	if err != nil {
		t.Errorf("%s.yaml %s: AlarmDescription: %v", a.template, a.id, err)
	}
	return d
}

// TestAlarmThresholdsDocumented checks that docs/operations.md has a row
// for every alarm, giving its statistic, threshold and window exactly as
// the template sets them, and no row for an alarm the templates lack.
func TestAlarmThresholdsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z]+Alarm)` \\|(.*)$").FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = m[2]
	}
	if len(rows) == 0 {
		t.Fatal("docs/operations.md has no alarm table (rows starting with | `<Id>Alarm` |)")
	}
	for _, a := range alarms(t) {
		row, ok := rows[a.id]
		if !ok {
			t.Errorf("docs/operations.md has no row for %s (%s.yaml)", a.id, a.template)
			continue
		}
		delete(rows, a.id)
		op := map[string]string{"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": "≥",
			"LessThanThreshold": "<", "LessThanOrEqualToThreshold": "≤"}[a.comparison]
		if op == "" {
			t.Errorf("%s: ComparisonOperator %q is not one the test knows", a.id, a.comparison)
		}
		when := fmt.Sprintf("%s %s %v in %v of %v minutes", a.stat, op, a.threshold, a.datapoints, a.evals)
		metric := a.metric[strings.IndexByte(a.metric, ' ')+1:]
		for _, want := range []string{" " + a.template + " ", "`" + metric + "`", when} {
			if !strings.Contains(row, want) {
				t.Errorf("docs/operations.md row of %s does not say %q:\n%s", a.id, want, row)
			}
		}
		if a.missing == "breaching" && !strings.Contains(row, "no data") {
			t.Errorf("docs/operations.md row of %s does not say that no data alarms:\n%s", a.id, row)
		}
	}
	for id := range rows {
		t.Errorf("docs/operations.md documents alarm %s, which no template has", id)
	}
}

// TestQueueAgeAlarmConditions checks how the region template ties the
// queue-age alarm to CloudWatch's resource tags on telemetry, without which
// a tag filter matches nothing: the alarm exists unless QueueAgeAlarm is
// off, and the template turns the feature on only when asked to (it is one
// per account and region, so a second stack must not).
func TestQueueAgeAlarmConditions(t *testing.T) {
	t.Parallel()
	_, regionT, _, _ := templates(t)
	p, ok := regionT.Parameters["QueueAgeAlarm"]
	if !ok {
		t.Fatal("region.yaml has no QueueAgeAlarm parameter")
	}
	if diff := cmp.Diff([]any{"enable-tags", "tags-enabled", "off"}, p.AllowedValues); diff != "" || p.Default != "enable-tags" {
		t.Errorf("QueueAgeAlarm default %v, allowed values (-want +got):\n%s", p.Default, diff)
	}
	conds := map[string]any{
		"HasQueueAgeAlarm":     map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "QueueAgeAlarm"}, "off"}}}},
		"EnablesTelemetryTags": map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "QueueAgeAlarm"}, "enable-tags"}},
	}
	for name, want := range conds {
		if diff := cmp.Diff(want, regionT.Conditions[name]); diff != "" {
			t.Errorf("region.yaml condition %s (-want +got):\n%s", name, diff)
		}
	}
	var tagged []string
	for _, a := range alarms(t) {
		if strings.HasPrefix(a.filter, "tag.") {
			tagged = append(tagged, a.id)
			if a.condition != "HasQueueAgeAlarm" {
				t.Errorf("%s.yaml %s filters by a tag but has condition %q, want HasQueueAgeAlarm", a.template, a.id, a.condition)
			}
		}
	}
	if len(tagged) == 0 {
		t.Error("no alarm filters by a tag")
	}
	var enrichment []string
	for id, r := range regionT.Resources {
		if r.Type == "AWS::ObservabilityAdmin::TelemetryEnrichment" {
			enrichment = append(enrichment, id)
			if r.Condition != "EnablesTelemetryTags" || r.Properties["Scope"] != "ACCOUNT" {
				t.Errorf("region.yaml %s: condition %q, Scope %v; want EnablesTelemetryTags, ACCOUNT", id, r.Condition, r.Properties["Scope"])
			}
		}
	}
	if len(enrichment) != 1 {
		t.Errorf("region.yaml has %d AWS::ObservabilityAdmin::TelemetryEnrichment resources, want 1", len(enrichment))
	}
}
