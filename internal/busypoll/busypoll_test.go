package busypoll_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/busypoll"
)

// pair returns the two ends of a connection on network: the server's
// accepted through g.Listen, and the client's dialled (and wrapped in its
// own group, cg).
func pair(t *testing.T, network string, g, cg *busypoll.Group) (server, client net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s.sock")
	}
	raw, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	ln := g.Listen(raw)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial(network, raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client = cg.Wrap(c)
	server = <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestOffIsThePlainConnection(t *testing.T) {
	g := busypoll.New(busypoll.Options{})
	if g != nil {
		t.Fatalf("New with no spin = %v, want nil", g)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if ln := g.Listen(raw); ln != raw {
		t.Errorf("a nil group's Listen wrapped the listener: %T", ln)
	}
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if w := g.Wrap(c); w != c {
		t.Errorf("a nil group's Wrap wrapped the connection: %T", w)
	}
	if s := g.Stats(); s != (busypoll.Stats{}) {
		t.Errorf("a nil group's Stats = %+v", s)
	}
	// A connection without a file descriptor is not wrapped either.
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if w := busypoll.New(busypoll.Options{Spin: time.Millisecond}).Wrap(p1); w != p1 {
		t.Errorf("a pipe was wrapped: %T", w)
	}
}

// TestCarriesTheBytes: whatever the reads catch spinning or wait for, both
// ends see every byte in order, then the end of the stream.
func TestCarriesTheBytes(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			g := busypoll.New(busypoll.Options{Spin: 200 * time.Microsecond})
			server, client := pair(t, network, g, busypoll.New(busypoll.Options{Spin: 200 * time.Microsecond}))
			go func() { // echo, then end the stream as the client ended it
				io.Copy(server, server)
				server.(interface{ CloseWrite() error }).CloseWrite()
			}()
			var sent, got bytes.Buffer
			buf := make([]byte, 256<<10)
			for i := range 200 {
				chunk := make([]byte, 1+rand.IntN(64<<10))
				for j := range chunk {
					chunk[j] = byte(i + j)
				}
				sent.Write(chunk)
				if _, err := client.Write(chunk); err != nil {
					t.Fatal(err)
				}
				for got.Len() < sent.Len() {
					n, err := client.Read(buf)
					if err != nil {
						t.Fatalf("read %d: %v", i, err)
					}
					got.Write(buf[:n])
				}
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // past the window: the reads park too
				}
			}
			if !bytes.Equal(sent.Bytes(), got.Bytes()) {
				t.Fatal("the echo differs from what was sent")
			}
			client.(interface{ CloseWrite() error }).CloseWrite()
			if n, err := client.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("read after the echo ended = %d, %v; want io.EOF", n, err)
			}
			if s := g.Stats(); s.Caught == 0 || s.Parked == 0 {
				t.Errorf("server stats %+v: want reads caught spinning and reads parked", s)
			}
		})
	}
}

// writeAfter writes one byte on c after d.
func writeAfter(c net.Conn, d time.Duration) {
	go func() {
		time.Sleep(d)
		c.Write([]byte{1})
	}()
}

func read1(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

// since returns the group's counts since before.
func since(g *busypoll.Group, before busypoll.Stats) busypoll.Stats {
	s := g.Stats()
	return busypoll.Stats{Caught: s.Caught - before.Caught, Missed: s.Missed - before.Missed, Parked: s.Parked - before.Parked}
}

// exchange has peer write one byte to c after d, reads it on c, and
// returns the group's counts of that read.
func exchange(t *testing.T, g *busypoll.Group, c, peer net.Conn, d time.Duration) busypoll.Stats {
	t.Helper()
	before := g.Stats()
	writeAfter(peer, d)
	read1(t, c)
	return since(g, before)
}

// TestSpinAdapts: a connection spins while its requests come within the
// spin time: one that comes later costs one spin, after which reads park
// until one comes within it again.
func TestSpinAdapts(t *testing.T) {
	const spin = 40 * time.Millisecond
	g := busypoll.New(busypoll.Options{Spin: spin})
	server, client := pair(t, "tcp", g, nil)

	// A connection's first read parks: it has not read last.
	if s := exchange(t, g, server, client, time.Millisecond); s != (busypoll.Stats{Parked: 1}) {
		t.Fatalf("the first read: stats %+v, want parked", s)
	}
	time.Sleep(4 * spin) // alone for four spin times
	before := g.Stats()
	for range 3 {
		writeAfter(client, 10*time.Millisecond)
		read1(t, server)
	}
	if s := since(g, before); s != (busypoll.Stats{Caught: 3}) {
		t.Fatalf("data 10 ms into 40 ms spins: stats %+v, want three caught", s)
	}
	// Data 100 ms away: the first read spins 40 ms for nothing, and the
	// next ones do not spin at all.
	before = g.Stats()
	for range 4 {
		writeAfter(client, 100*time.Millisecond)
		read1(t, server)
	}
	if s := since(g, before); s != (busypoll.Stats{Missed: 1, Parked: 4}) {
		t.Fatalf("four reads of data 100 ms away: stats %+v, want one miss, then reads that park without spinning", s)
	}
	// A read whose data comes within the spin time makes the next one spin.
	// (Retried: a loaded machine can wake a parked read 40 ms late.)
	for attempt := 0; ; attempt++ {
		exchange(t, g, server, client, time.Millisecond)
		if exchange(t, g, server, client, time.Millisecond).Caught > 0 {
			break
		}
		if attempt == 5 {
			t.Fatalf("the spinning did not come back: stats %+v", g.Stats())
		}
	}
}

// TestSpinsForOneCaller: of a group's connections only the one that read
// something last spins, and only once no other has read anything for four
// spin times.
func TestSpinsForOneCaller(t *testing.T) {
	const spin = 20 * time.Millisecond
	g := busypoll.New(busypoll.Options{Spin: spin, MaxSpinners: 2})
	a, ac := pair(t, "tcp", g, nil)
	b, bc := pair(t, "tcp", g, nil)
	exchange(t, g, a, ac, time.Millisecond) // parks (a's first read); a reads last
	time.Sleep(4 * spin)
	if s := exchange(t, g, a, ac, time.Millisecond); s != (busypoll.Stats{Caught: 1}) {
		t.Fatalf("a alone: stats %+v, want caught spinning", s)
	}

	for i, tc := range []struct{ c, peer net.Conn }{
		{b, bc}, // b has not read last: parks, and now b reads last
		{a, ac}, // a has not: parks, and a reads last, just after b
		{a, ac}, // a read last, but b read within four spin times: parks
	} {
		if s := exchange(t, g, tc.c, tc.peer, time.Millisecond); s != (busypoll.Stats{Parked: 1}) {
			t.Fatalf("a and b taking turns, read %d: stats %+v, want parked", i, s)
		}
	}

	b.Close() // b worked on what it read until now
	time.Sleep(4 * spin)
	if s := exchange(t, g, a, ac, time.Millisecond); s != (busypoll.Stats{Caught: 1}) {
		t.Fatalf("a alone again: stats %+v, want caught spinning", s)
	}
}

// TestNoSpinWhileAnotherWorks: while one connection of the group works on
// what it read, another's read parks at once, and a spin under way stops
// (a miss) when one starts working; a closed connection works no more.
func TestNoSpinWhileAnotherWorks(t *testing.T) {
	const spin = 100 * time.Millisecond
	g := busypoll.New(busypoll.Options{Spin: spin, MaxSpinners: 1})
	a, ac := pair(t, "tcp", g, nil)
	b, bc := pair(t, "tcp", g, nil)

	exchange(t, g, a, ac, time.Millisecond) // a works on it
	exchange(t, g, b, bc, time.Millisecond) // b reads last, and works on it
	time.Sleep(4 * spin)
	// b reads again: it read last, alone for long enough, but a works: it
	// parks.
	if s := exchange(t, g, b, bc, 5*time.Millisecond); s != (busypoll.Stats{Parked: 1}) {
		t.Fatalf("b read while a worked: stats %+v, want b parked at once", s)
	}

	// a reads (it did not read last: parks), then b: nobody works now, so
	// b spins, until a's data makes a work, which cuts b's spin short.
	before := g.Stats()
	aDone := make(chan struct{})
	go func() { read1(t, a); close(aDone) }()
	waitParked(t, g, before.Parked+1)
	bDone := make(chan struct{})
	go func() { read1(t, b); close(bDone) }()
	time.Sleep(20 * time.Millisecond)
	if s := since(g, before); s != (busypoll.Stats{Parked: 1}) {
		t.Fatalf("b reading with nobody working: stats %+v, want b spinning (not parked)", s)
	}
	ac.Write([]byte{1})
	<-aDone
	waitParked(t, g, before.Parked+2) // b's spin, cut short
	select {
	case <-bDone:
		t.Fatal("b's read returned with no data")
	default:
	}
	bc.Write([]byte{1})
	<-bDone
	if s := since(g, before); s != (busypoll.Stats{Missed: 1, Parked: 2}) {
		t.Fatalf("b's spin cut short by a's work: stats %+v, want b's spin missed and b parked", s)
	}

	// b read last; a works. Closed, a works no more, and b's reads spin.
	a.Close()
	time.Sleep(4 * spin)
	if s := exchange(t, g, b, bc, time.Millisecond); s != (busypoll.Stats{Caught: 1}) {
		t.Fatalf("b read with a closed: stats %+v, want caught spinning", s)
	}
}

// waitParked waits until the group has counted n parked reads.
func waitParked(t *testing.T, g *busypoll.Group, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for g.Stats().Parked < n {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want %d parked", g.Stats(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadDeadline: a spin ends at the read deadline, and the read says
// the deadline passed, as a plain connection's does.
func TestReadDeadline(t *testing.T) {
	g := busypoll.New(busypoll.Options{Spin: 10 * time.Second})
	server, _ := pair(t, "tcp", g, nil)
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	n, err := server.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline = %d, %v; want os.ErrDeadlineExceeded", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the read returned %v after a 50 ms deadline: the spin ignored it", d)
	}
	if s := g.Stats(); s.Missed != 0 {
		t.Errorf("stats %+v: a deadline is not a miss", s)
	}
}

// TestClosed: reads of a closed connection fail as a plain one's.
func TestClosed(t *testing.T) {
	g := busypoll.New(busypoll.Options{Spin: time.Second})
	server, _ := pair(t, "tcp", g, nil)
	server.Close()
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v, want net.ErrClosed", err)
	}
}
