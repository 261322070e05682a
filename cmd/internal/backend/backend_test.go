package backend_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/cmd/internal/backend"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string // "" means valid
	}{
		{"embedded default", nil, nil, ""},
		{"aws", map[string]string{"AWS_REGION": "eu-west-1"}, []string{"--backend", "aws"}, ""},
		{"aws poll from env", map[string]string{"AWS_REGION": "eu-west-1", "TCS_POLL_INTERVAL": "600ms"}, []string{"--backend", "aws"}, ""},
		{"unknown backend", nil, []string{"--backend", "s3"}, `--backend "s3"`},
		{"aws without region", nil, []string{"--backend", "aws"}, "home region"},
		{"bad prefix", map[string]string{"AWS_REGION": "eu-west-1"}, []string{"--backend", "aws", "--aws-prefix", "Bad_Prefix"}, "--aws-prefix"},
		{"zero poll", map[string]string{"AWS_REGION": "eu-west-1"}, []string{"--backend", "aws", "--poll-interval", "0s"}, "--poll-interval"},
		{"bad poll env", map[string]string{"AWS_REGION": "eu-west-1", "TCS_POLL_INTERVAL": "soon"}, []string{"--backend", "aws"}, `TCS_POLL_INTERVAL "soon"`},
		{"aws timeouts", map[string]string{"AWS_REGION": "eu-west-1", "TCS_AWS_TIMEOUT": "3s"}, []string{"--backend", "aws", "--aws-header-timeout", "1s", "--aws-connect-timeout", "500ms"}, ""},
		{"bad aws timeout env", map[string]string{"AWS_REGION": "eu-west-1", "TCS_AWS_TIMEOUT": "ten"}, []string{"--backend", "aws"}, `TCS_AWS_TIMEOUT "ten"`},
		{"bad connect timeout env", map[string]string{"AWS_REGION": "eu-west-1", "TCS_AWS_CONNECT_TIMEOUT": "1"}, []string{"--backend", "aws"}, `TCS_AWS_CONNECT_TIMEOUT "1"`},
		{"zero aws timeout", map[string]string{"AWS_REGION": "eu-west-1"}, []string{"--backend", "aws", "--aws-timeout", "0s"}, "--aws-timeout"},
		{"negative header timeout", map[string]string{"AWS_REGION": "eu-west-1"}, []string{"--backend", "aws", "--aws-header-timeout", "-1s"}, "--aws-header-timeout"},
		{"header over operation", map[string]string{"AWS_REGION": "eu-west-1"}, []string{"--backend", "aws", "--aws-timeout", "2s", "--aws-header-timeout", "3s"}, "exceeds --aws-timeout"},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := backend.Register(fs, func(k string) string { return tc.env[k] })
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Validate() = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// The Kinesis poll interval defaults to a value safe on real Kinesis (1s);
// TCS_POLL_INTERVAL (what the emulator setups set) and the flag override it.
func TestPollIntervalDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  string
		args []string
		want time.Duration
	}{
		{"", nil, time.Second},
		{"100ms", nil, 100 * time.Millisecond},
		{"100ms", []string{"--poll-interval", "600ms"}, 600 * time.Millisecond},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := backend.Register(fs, func(k string) string {
			if k == "TCS_POLL_INTERVAL" {
				return tc.env
			}
			return ""
		})
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if c.PollInterval != tc.want {
			t.Errorf("TCS_POLL_INTERVAL=%q %v: poll interval %v, want %v", tc.env, tc.args, c.PollInterval, tc.want)
		}
	}
}
