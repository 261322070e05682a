package emulators_test

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/infra/emulators"
)

func TestParseEndpoints(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		in      string
		want    emulators.AWS
		wantErr string
	}{
		"all": {in: "dynamodb=http://127.0.0.1:1,kinesis=http://127.0.0.1:2,snssqs=http://127.0.0.1:3",
			want: emulators.AWS{DynamoDB: "http://127.0.0.1:1", Kinesis: "http://127.0.0.1:2", SNSSQS: "http://127.0.0.1:3"}},
		"some, spaced, trailing slash": {in: " kinesis=http://localhost:4567/ ", want: emulators.AWS{Kinesis: "http://localhost:4567"}},
		"empty":                        {in: "", want: emulators.AWS{}},
		"unknown kind":                 {in: "dynamo=http://127.0.0.1:1", wantErr: `unknown emulator "dynamo"`},
		"no equals":                    {in: "http://127.0.0.1:1", wantErr: "is not kind=endpoint"},
		"twice":                        {in: "kinesis=http://127.0.0.1:1,kinesis=http://127.0.0.1:2", wantErr: "kinesis given twice"},
		"no port":                      {in: "snssqs=http://127.0.0.1", wantErr: `snssqs endpoint "http://127.0.0.1" is not`},
		"no scheme":                    {in: "dynamodb=127.0.0.1:8000", wantErr: `dynamodb endpoint "127.0.0.1:8000" is not`},
		"path":                         {in: "dynamodb=http://127.0.0.1:8000/x", wantErr: "is not an http://host:port URL"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := emulators.ParseEndpoints(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), emulators.EndpointsEnv) {
					t.Fatalf("ParseEndpoints(%q) = %v, %v; want an error naming %s and saying %q", tc.in, got, err, emulators.EndpointsEnv, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEndpoints(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("ParseEndpoints(%q) (-want +got):\n%s", tc.in, diff)
			}
			again, err := emulators.ParseEndpoints(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseEndpoints(%q) = %v, %v; want the same endpoints back", got.String(), again, err)
			}
		})
	}
}

func TestName(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	format := regexp.MustCompile(`^tbl-[0-9a-z]{6}-[0-9]+$`)
	var token string
	for range 100 {
		n := emulators.Name("tbl")
		if !format.MatchString(n) {
			t.Fatalf("Name(%q) = %q, want tbl-<6 letters or digits>-<number>", "tbl", n)
		}
		if seen[n] {
			t.Fatalf("Name returned %q twice", n)
		}
		seen[n] = true
		if tok := strings.Split(n, "-")[1]; token == "" {
			token = tok
		} else if tok != token {
			t.Fatalf("Name's process token changed from %q to %q", token, tok)
		}
	}
}

// recordTB records a test helper's Fatal or Skip and ends its goroutine, as
// testing.T does.
type recordTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordTB) Helper()                      {}
func (r *recordTB) Fatal(args ...any)            { r.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (r *recordTB) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...); runtime.Goexit() }
func (r *recordTB) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...); runtime.Goexit() }

// call runs f with a recordTB on its own goroutine and returns what f
// returned (if it did) and the recordTB.
func call(t *testing.T, f func(testing.TB) string) (string, *recordTB) {
	r := &recordTB{TB: t}
	var got string
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = f(r)
	}()
	<-done
	return got, r
}

// listen returns the endpoint of a loopback listener, closed when t ends.
func listen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String()
}

// TestSharedFromEnv: a shared emulator is the one TCS_EMULATORS names when
// it names one (nothing is started), started once when it names none, and
// a clear failure when the variable is malformed or names a dead endpoint.
// Not parallel: it sets the environment and -short.
func TestSharedFromEnv(t *testing.T) {
	emulators.SetShort(t, false)
	starts := 0
	start := func() (*emulators.Process, error) {
		starts++
		return nil, errors.New("started")
	}

	up := listen(t)
	t.Setenv(emulators.EndpointsEnv, "dynamodb=http://127.0.0.1:1,kinesis="+up)
	if got, r := call(t, emulators.NewShared(emulators.Kinesis, start)); got != up || r.fatal != "" || starts != 0 {
		t.Errorf("shared kinesalite with %s naming %s: %q (fatal %q), %d starts; want its endpoint and no start", emulators.EndpointsEnv, up, got, r.fatal, starts)
	}

	// Named, but nothing listens there.
	if _, r := call(t, emulators.NewShared(emulators.DynamoDB, start)); !strings.Contains(r.fatal, "nothing accepts connections") || !strings.Contains(r.fatal, "http://127.0.0.1:1") || starts != 0 {
		t.Errorf("shared DynamoDB Local at a closed port: fatal %q, %d starts; want a failure naming the endpoint and no start", r.fatal, starts)
	}

	// Not named: started, once for many callers.
	get := emulators.NewShared(emulators.SNSSQS, start)
	for range 2 {
		if _, r := call(t, get); r.fatal != "started" {
			t.Errorf("shared fauxqs not named in %s: fatal %q, want the start's error", emulators.EndpointsEnv, r.fatal)
		}
	}
	if starts != 1 {
		t.Errorf("shared fauxqs started %d times, want once", starts)
	}

	t.Setenv(emulators.EndpointsEnv, "kinesis=localhost")
	if _, r := call(t, emulators.NewShared(emulators.Kinesis, start)); !strings.Contains(r.fatal, emulators.EndpointsEnv) || !strings.Contains(r.fatal, `"localhost"`) {
		t.Errorf("malformed %s: fatal %q, want a failure naming the variable and the bad endpoint", emulators.EndpointsEnv, r.fatal)
	}
}

// TestShortSkips: under -short every way to an emulator skips the test
// before starting anything, so that `go test -short ./...` needs no
// emulators.
func TestShortSkips(t *testing.T) {
	emulators.SetShort(t, true)
	t.Setenv(emulators.DirEnv, t.TempDir()) // nothing installed: a start would fail
	started := false
	for name, f := range map[string]func(testing.TB) string{
		"StartDynamoDB":  emulators.StartDynamoDB,
		"StartKinesis":   emulators.StartKinesis,
		"StartSNSSQS":    emulators.StartSNSSQS,
		"SharedDynamoDB": emulators.SharedDynamoDB,
		"SharedKinesis":  emulators.SharedKinesis,
		"SharedSNSSQS":   emulators.SharedSNSSQS,
		"SharedAWS":      func(tb testing.TB) string { return emulators.SharedAWS(tb).String() },
		"shared": emulators.NewShared(emulators.Kinesis, func() (*emulators.Process, error) {
			started = true
			return nil, errors.New("started")
		}),
	} {
		if _, r := call(t, f); !strings.Contains(r.skip, "-short") || r.fatal != "" {
			t.Errorf("%s under -short: skip %q, fatal %q; want a skip saying -short", name, r.skip, r.fatal)
		}
	}
	if started {
		t.Error("a shared emulator was started under -short")
	}
}

// TestShortRunsBenchmarks: under -short a benchmark still gets its emulator
// (make bench-smoke runs every benchmark once under -short); only tests
// skip.
func TestShortRunsBenchmarks(t *testing.T) {
	emulators.SetShort(t, true)
	t.Setenv(emulators.EndpointsEnv, "")
	started := false
	get := emulators.NewShared(emulators.Kinesis, func() (*emulators.Process, error) {
		started = true
		return nil, errors.New("started")
	})
	testing.Benchmark(func(b *testing.B) { get(b) })
	if !started {
		t.Error("a benchmark under -short did not ask for its emulator")
	}
}
