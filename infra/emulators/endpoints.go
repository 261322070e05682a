package emulators

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// EndpointsEnv names the environment variable through which one set of
// emulators, started once (by `make test`, with cmd/emulators), is shared by
// every test binary: a comma-separated list of kind=endpoint, for example
//
//	TCS_EMULATORS=dynamodb=http://127.0.0.1:20001,kinesis=http://127.0.0.1:20002,snssqs=http://127.0.0.1:20003
//
// The kinds are dynamodb (DynamoDB Local), kinesis (kinesalite) and snssqs
// (fauxqs, SNS and SQS on one endpoint). SharedDynamoDB, SharedKinesis and
// SharedSNSSQS return the endpoint it names instead of starting their own; a
// kind it leaves out is started per test binary as without it. Private
// emulators (StartDynamoDB, StartKinesis, StartSNSSQS, Start) are always
// started afresh: their tests stop or freeze them.
const EndpointsEnv = "TCS_EMULATORS"

// The kinds' names in EndpointsEnv.
const (
	dynamoDBKey = "dynamodb"
	kinesisKey  = "kinesis"
	snsSQSKey   = "snssqs"
)

// String formats a as EndpointsEnv's value, leaving out empty endpoints.
func (a AWS) String() string {
	var parts []string
	for _, kv := range [][2]string{{dynamoDBKey, a.DynamoDB}, {kinesisKey, a.Kinesis}, {snsSQSKey, a.SNSSQS}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, ",")
}

// ParseEndpoints parses EndpointsEnv's value (see there). The kinds it does
// not name are left empty. An unknown kind, a kind given twice, or an
// endpoint that is not an http(s) URL of a host and port is an error naming
// it.
func ParseEndpoints(s string) (AWS, error) {
	var a AWS
	if strings.TrimSpace(s) == "" {
		return a, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		key, endpoint, ok := strings.Cut(item, "=")
		if !ok {
			return AWS{}, fmt.Errorf("%s: %q is not kind=endpoint (kinds: %s, %s, %s)", EndpointsEnv, item, dynamoDBKey, kinesisKey, snsSQSKey)
		}
		var field *string
		switch key {
		case dynamoDBKey:
			field = &a.DynamoDB
		case kinesisKey:
			field = &a.Kinesis
		case snsSQSKey:
			field = &a.SNSSQS
		default:
			return AWS{}, fmt.Errorf("%s: unknown emulator %q in %q (kinds: %s, %s, %s)", EndpointsEnv, key, item, dynamoDBKey, kinesisKey, snsSQSKey)
		}
		if *field != "" {
			return AWS{}, fmt.Errorf("%s: %s given twice", EndpointsEnv, key)
		}
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return AWS{}, fmt.Errorf("%s: %s endpoint %q is not an http://host:port URL", EndpointsEnv, key, endpoint)
		}
		*field = strings.TrimSuffix(endpoint, "/")
	}
	return a, nil
}

// fromEnv returns the endpoint EndpointsEnv gives for kind ("" when it
// gives none), after checking that something accepts connections there.
func fromEnv(kind Kind) (string, error) {
	a, err := ParseEndpoints(os.Getenv(EndpointsEnv))
	if err != nil {
		return "", err
	}
	var endpoint string
	switch kind {
	case DynamoDB:
		endpoint = a.DynamoDB
	case Kinesis:
		endpoint = a.Kinesis
	case SNSSQS:
		endpoint = a.SNSSQS
	}
	if endpoint == "" {
		return "", nil
	}
	u, _ := url.Parse(endpoint) // ParseEndpoints checked it
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("%s names %s at %s, but nothing accepts connections there (%v): were the emulators stopped? Unset %s to have each test binary start its own", EndpointsEnv, kind, endpoint, err, EndpointsEnv)
	}
	conn.Close()
	return endpoint, nil
}

// runToken tells this process's names apart from other test binaries'.
var runToken = newRunToken()

var names atomic.Int64

func newRunToken() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 6)
	rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Name returns prefix, a token of this process and a number: a name (of a
// table, stream, topic, queue, or a resource name prefix) that no other
// call in this process returns and that no other test binary sharing the
// emulators uses, now or in an earlier run against the same emulators. It
// holds prefix's characters, lower-case letters, digits and '-', so it suits
// every AWS name TCS uses.
func Name(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, runToken, names.Add(1))
}

// StartAll starts DynamoDB Local, kinesalite and fauxqs together, on free
// loopback ports, and returns their endpoints and a func that stops them
// (the caller must call it; the emulators also die with the process, see the
// package comment). If one fails to start, the others are stopped.
func StartAll() (AWS, func(), error) {
	kinds := []Kind{DynamoDB, Kinesis, SNSSQS}
	procs := make([]*Process, len(kinds))
	errs := make([]error, len(kinds))
	done := make(chan int)
	for i, kind := range kinds {
		go func() {
			procs[i], errs[i] = Start(kind, 0)
			done <- i
		}()
	}
	for range kinds {
		<-done
	}
	stop := func() {
		for _, p := range procs {
			p.Stop()
		}
	}
	if err := errors.Join(errs...); err != nil {
		stop()
		return AWS{}, nil, err
	}
	return AWS{DynamoDB: procs[0].Endpoint, Kinesis: procs[1].Endpoint, SNSSQS: procs[2].Endpoint}, stop, nil
}
