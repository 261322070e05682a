package regionlist_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/cmd/internal/regionlist"
)

func TestParse(t *testing.T) {
	t.Parallel()
	got, err := regionlist.Parse(regionlist.Default)
	if err != nil {
		t.Fatal(err)
	}
	want := []regionlist.Region{{"us-east-1", "127.0.0.1:9001"}, {"eu-west-1", "127.0.0.1:9002"}, {"ap-southeast-2", "127.0.0.1:9003"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Parse(Default) (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}, regionlist.Addrs(got)); d != "" {
		t.Errorf("Addrs (-want +got):\n%s", d)
	}
	got, err = regionlist.Parse(" a=h:1 ,, b=[::1]:2 ")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]regionlist.Region{{"a", "h:1"}, {"b", "[::1]:2"}}, got); d != "" {
		t.Errorf("spaces and empty entries (-want +got):\n%s", d)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", "no region given"},
		{" , ", "no region given"},
		{"us-east-1", `"us-east-1" is not REGION=HOST:PORT`},
		{"=h:1", `"=h:1" is not REGION=HOST:PORT`},
		{"a=", `"a=" is not REGION=HOST:PORT`},
		{"a=host", `a: "host" is not HOST:PORT`},
		{"a=h:1,a=h:2", "region a listed twice"},
	} {
		_, err := regionlist.Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "--regions") {
			t.Errorf("Parse(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}
