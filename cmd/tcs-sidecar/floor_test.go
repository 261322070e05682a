package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/internal/busypoll"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// floorsEnv, set to a directory, makes this test binary a helper process
// of BenchmarkSidecar instead of running tests: it serves the floors (see
// serveFloors) until it is killed.
const floorsEnv = "TCS_BENCH_FLOORS_DIR"

// The files startFloors writes into the floors directory.
const (
	floorTenantFile   = "tenant.pb"    // the tenant, protobuf
	floorRequestFile  = "request.raw"  // one request of the ping-pong floors
	floorResponseFile = "response.raw" // their answer: the sidecar's, byte for byte
	floorUnixSocket   = "floor.sock"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(floorsEnv); dir != "" {
		if err := serveFloors(dir, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "floors:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// floors are the addresses of the floor servers of one helper process.
type floors struct {
	TCP, Unix, HTTP, GRPC, Fast, TCPSpin, UnixSpin string
	pid                                            int
}

// startFloors runs this test binary again as a helper process (TestMain)
// serving the floors of a lookup answering the tenant t: each is a process
// of its own on loopback, as the sidecar and redis-server are, with the
// sidecar's GOMAXPROCS (TCS_BENCH_SIDECAR_GOMAXPROCS). req and res are one
// raw request and the sidecar's raw answer to it, for the ping-pong floors.
func startFloors(b *testing.B, t *tcsv1.Tenant, req, res []byte) floors {
	b.Helper()
	dir := b.TempDir()
	pb, err := proto.Marshal(t)
	if err != nil {
		b.Fatal(err)
	}
	for name, data := range map[string][]byte{floorTenantFile: pb, floorRequestFile: req, floorResponseFile: res} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(cmd.Environ(), floorsEnv+"="+dir)
	line, stderr, err := startBenchProcess(b, cmd)
	f := floors{pid: cmd.Process.Pid}
	if _, serr := fmt.Sscanf(line, "floors: tcp %s unix %s http %s grpc %s fast %s tcp-spin %s unix-spin %s", &f.TCP, &f.Unix, &f.HTTP, &f.GRPC, &f.Fast, &f.TCPSpin, &f.UnixSpin); err != nil || serr != nil {
		b.Fatalf("the floors' first line %q: %v %v\n%s", line, err, serr, stderr)
	}
	return f
}

// serveFloors serves, until the process is killed, on loopback:
//
//   - tcp and unix: a ping-pong on TCP and on a Unix socket: each
//     connection's goroutine reads one request's bytes and writes the
//     sidecar's answer back, nothing parsed: a cross-process round trip of
//     those sizes, the machine's floor for any server;
//   - http: a bare net/http server answering every request with the
//     tenant's JSON: the floor of any net/http server;
//   - grpc: a bare grpc-go server answering Lookup with a fixed response
//     holding the tenant: the floor of any grpc-go lookup.
//
// It prints the addresses on one line to w.
func serveFloors(dir string, w io.Writer) error {
	var files [3][]byte
	for i, name := range []string{floorTenantFile, floorRequestFile, floorResponseFile} {
		var err error
		if files[i], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	var t tcsv1.Tenant
	if err := proto.Unmarshal(files[0], &t); err != nil {
		return err
	}
	req, res := files[1], files[2]
	body, err := tcsv1.TenantJSON(&t)
	if err != nil {
		return err
	}
	var lns [7]net.Listener
	for i, network := range []string{"tcp", "unix", "tcp", "tcp", "tcp", "tcp", "unix"} {
		addr := "127.0.0.1:0"
		if network == "unix" {
			addr = filepath.Join(dir, strconv.Itoa(i)+floorUnixSocket)
		}
		if lns[i], err = net.Listen(network, addr); err != nil {
			return err
		}
	}
	errc := make(chan error, len(lns))
	spin := busypoll.New(busypoll.Options{Spin: benchSpin})
	lns[5], lns[6] = spin.Listen(lns[5]), spin.Listen(lns[6])
	for _, ln := range []net.Listener{lns[0], lns[1], lns[5], lns[6]} {
		go func() { errc <- pingPong(ln, len(req), res) }()
	}
	ct := []string{"application/json"}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = ct
		w.Write(body)
	})}
	go func() { errc <- hs.Serve(lns[2]) }()
	gs := grpc.NewServer()
	tcsv1.RegisterTenantContextServiceServer(gs, &floorServer{res: &tcsv1.LookupResponse{Tenant: &t, Region: "us-east-1"}})
	go func() { errc <- gs.Serve(lns[3]) }()
	fs := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	go func() { errc <- fs.Serve(lns[4]) }()
	fmt.Fprintf(w, "floors: tcp %s unix %s http %s grpc %s fast %s tcp-spin %s unix-spin %s\n", lns[0].Addr(), lns[1].Addr(), lns[2].Addr(), lns[3].Addr(), lns[4].Addr(), lns[5].Addr(), lns[6].Addr())
	return <-errc
}

// pingPong answers every reqLen bytes read on a connection of ln with res.
func pingPong(ln net.Listener, reqLen int, res []byte) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			buf := make([]byte, reqLen)
			for {
				if _, err := io.ReadFull(conn, buf); err != nil {
					return
				}
				if _, err := conn.Write(res); err != nil {
					return
				}
			}
		}()
	}
}

// floorServer answers every Lookup with one fixed response.
type floorServer struct {
	tcsv1.UnimplementedTenantContextServiceServer
	res *tcsv1.LookupResponse
}

func (f *floorServer) Lookup(context.Context, *tcsv1.LookupRequest) (*tcsv1.LookupResponse, error) {
	return f.res, nil
}

// rawPingPong is the client of a ping-pong floor on one connection: it
// writes req and reads len(res) bytes.
type rawPingPong struct {
	conn     net.Conn
	req, res []byte
}

func dialPingPong(b *testing.B, network, addr string, spin *busypoll.Group, req []byte, resLen int) *rawPingPong {
	conn := benchDial(b, network, addr, spin)
	return &rawPingPong{conn: conn, req: req, res: make([]byte, resLen)}
}

func (p *rawPingPong) roundTrip() error {
	if _, err := p.conn.Write(p.req); err != nil {
		return err
	}
	_, err := io.ReadFull(p.conn, p.res)
	return err
}

// benchDial dials addr for one caller of BenchmarkSidecar, closed when b
// ends; its reads spin as spin's (nil: they do not).
func benchDial(b *testing.B, network, addr string, spin *busypoll.Group) net.Conn {
	conn, err := net.Dial(network, addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return spin.Wrap(conn)
}

// rawRedisGet is a minimal RESP client on one connection: it writes a
// fixed GET and reads the bulk string answer, so that the redis-raw figure
// is redis-server's, not go-redis'.
type rawRedisGet struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
	val  []byte
}

func dialRedisGet(b *testing.B, network, addr string, spin *busypoll.Group, key string) *rawRedisGet {
	conn := benchDial(b, network, addr, spin)
	req := fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
	return &rawRedisGet{conn: conn, r: bufio.NewReaderSize(conn, 16<<10), req: []byte(req), val: make([]byte, 16<<10)}
}

func (g *rawRedisGet) get() error {
	if _, err := g.conn.Write(g.req); err != nil {
		return err
	}
	line, err := g.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 4 || line[0] != '$' {
		return fmt.Errorf("redis GET answered %q", line)
	}
	n, err := strconv.Atoi(string(line[1 : len(line)-2]))
	if err != nil || n < 0 || n+2 > len(g.val) {
		return errors.New("redis GET: no value or a bad length " + strconv.Quote(string(line)))
	}
	_, err = io.ReadFull(g.r, g.val[:n+2])
	return err
}
