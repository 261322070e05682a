package cloudformation_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/infra/cloudformation"
)

func TestParseLongForm(t *testing.T) {
	t.Parallel()
	tpl, err := cloudformation.Parse([]byte(`
Parameters:
  Prefix: {Type: String, Default: tcs}
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${Prefix}-x-${AWS::Region}"
      Arn: !GetAtt Other.Arn
      Ref: !Ref Prefix
      Join: !Join ["-", [a, b]]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := tpl.Resources["T"].Properties
	want := map[string]any{
		"TableName": map[string]any{"Fn::Sub": "${Prefix}-x-${AWS::Region}"},
		"Arn":       map[string]any{"Fn::GetAtt": []any{"Other", "Arn"}},
		"Ref":       map[string]any{"Ref": "Prefix"},
		"Join":      map[string]any{"Fn::Join": []any{"-", []any{"a", "b"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}
	vars := map[string]string{"Prefix": "p", "AWS::Region": "eu-west-1"}
	if name, err := cloudformation.Resolve(got["TableName"], vars); err != nil || name != "p-x-eu-west-1" {
		t.Errorf("Resolve(TableName) = %q, %v", name, err)
	}
	if _, err := cloudformation.Resolve(got["TableName"], map[string]string{"Prefix": "p"}); err == nil {
		t.Error("Resolve with AWS::Region unset succeeded")
	}
	if _, err := cloudformation.Resolve(got["Arn"], vars); err == nil {
		t.Error("Resolve(!GetAtt) succeeded")
	}
}

func TestTemplatesParse(t *testing.T) {
	t.Parallel()
	for name, src := range map[string][]byte{"home": cloudformation.Home, "region": cloudformation.Region} {
		tpl, err := cloudformation.Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(tpl.Resources) == 0 {
			t.Errorf("%s: no resources", name)
		}
		for id, r := range tpl.Resources {
			if r.Type == "" {
				t.Errorf("%s: resource %s has no Type", name, id)
			}
		}
	}
}
