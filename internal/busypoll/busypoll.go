// Package busypoll makes a connection's reads wait for their data by
// spinning for a while before they park: what a latency-bound server on
// loopback does to stop paying the machine's wake-ups on every request.
//
// A read on a Go connection with nothing to read parks its goroutine on
// the poller; its thread then sleeps, and on a virtual machine the vCPU
// halts. The next request has to wake them: on the 2-core VMs this was
// built on, a loopback round trip between two processes took 20-50 µs, of
// which the kernel's own work was some 6 on a Unix socket and 11 on TCP (a
// ping-pong whose two ends both spin). A read of a Group's connection
// first tries for its data without parking (non-blocking reads in a loop,
// yielding to any goroutine with work) and only then waits as any other.
// Both ends have to spin to save both wake-ups: a server's spin alone
// saves its own, and its caller still sleeps for the answer.
//
// Spinning costs a CPU while it lasts, so it is kept to when it pays:
//
//   - adaptive, as the guest halt-polling of Linux's cpuidle haltpoll
//     governor is: a connection spins only while its requests keep coming
//     within Options.Spin of the last. One that comes later (the spin ran
//     out, the read parked) stops the spinning until one comes within it
//     again: a caller slower than the spin time costs one spin, not one a
//     request;
//   - only for one caller sending request after request: a connection
//     spins only if it was the last of its group to read something and
//     no other has read anything for four spin times, so a server with
//     several callers at once (kept awake by their requests anyway, and
//     whose CPUs its callers may need) does not spin;
//   - only while the process has nothing else to do: no connection spins
//     while another is working (it read, and has not come back to read
//     again), and a spin stops the moment one is: a miss, so that a
//     connection whose spins keep being cut (callers taking turns) stops
//     spinning;
//   - at most Options.MaxSpinners connections at once;
//   - never on an idle connection for longer than Options.Spin.
package busypoll

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// Options say how a group's connections spin.
type Options struct {
	// Spin is the longest a read spins for its data before it parks; 0: it
	// does not spin (Listen and Wrap return what they are given).
	Spin time.Duration
	// MaxSpinners bounds the connections spinning at once (a read finding
	// them all taken parks at once); 0: GOMAXPROCS - 1, at least 1.
	MaxSpinners int
}

// MaxSpin is the longest spin worth having: a request that comes later
// than that after the last finds a sleeping process anyway at a cost in
// wake-ups too small to buy back with a CPU. Programs bound their
// settings by it; New does not.
const MaxSpin = 10 * time.Millisecond

// A Group is connections that spin together: only the one that read last,
// once no other has read for a while (one caller sending request after
// request: a busier process has other connections' requests to keep it
// awake), none while another is working (between two reads, handling what
// it read: the process then has something else to do), at most
// MaxSpinners at once.
type Group struct {
	spin    time.Duration
	max     int32
	n       atomic.Int32  // connections spinning now
	working atomic.Int32  // connections between reads
	last    atomic.Uint64 // the connection that read something last
	ids     atomic.Uint64
	// switched is when a connection other than the last read something
	// (time since epoch): no spin for four spin times after it.
	epoch    time.Time
	switched atomic.Int64

	caught, missed, parked atomic.Uint64
}

// New returns a group spinning as o says; nil when o.Spin is 0 (its
// Listen and Wrap then return what they are given).
func New(o Options) *Group {
	if o.Spin <= 0 {
		return nil
	}
	m := o.MaxSpinners
	if m <= 0 {
		m = max(1, runtime.GOMAXPROCS(0)-1)
	}
	return &Group{spin: o.Spin, max: int32(m), epoch: time.Now()}
}

// Stats count the reads of a group's connections.
type Stats struct {
	// Caught counts the reads that spun and got their data, Missed those
	// whose spin ran out or was cut short by another connection's work,
	// and Parked those that waited in the poller: after a miss, or without
	// spinning (the last request came too late, another connection read
	// last or is working, no spinner free).
	Caught, Missed, Parked uint64
}

// Stats returns the group's read counts so far (zero for a nil group).
func (g *Group) Stats() Stats {
	if g == nil {
		return Stats{}
	}
	return Stats{Caught: g.caught.Load(), Missed: g.missed.Load(), Parked: g.parked.Load()}
}

// acquire takes a spinner's place, if one is free.
func (g *Group) acquire() bool {
	if g.n.Add(1) > g.max {
		g.n.Add(-1)
		return false
	}
	return true
}

func (g *Group) release() { g.n.Add(-1) }

// alone is whether c may spin as far as the others go: it read last, no
// other has read for four spin times, and none is working.
func (g *Group) alone(c *conn) bool {
	return g.last.Load() == c.id && g.working.Load() == 0 &&
		time.Since(g.epoch)-time.Duration(g.switched.Load()) >= 4*g.spin
}

// Listen returns ln whose accepted connections are g's (ln itself for a
// nil group). Connections without a file descriptor are returned as
// accepted.
func (g *Group) Listen(ln net.Listener) net.Listener {
	if g == nil {
		return ln
	}
	return &listener{Listener: ln, g: g}
}

type listener struct {
	net.Listener
	g *Group
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.Wrap(c), nil
}

// Wrap returns c as one of g's connections: a client's connection (c
// itself for a nil group, or when c has no file descriptor).
func (g *Group) Wrap(c net.Conn) net.Conn {
	if g == nil {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	cn := &conn{Conn: c, rc: rc, g: g, id: g.ids.Add(1)}
	cn.spins.Store(true)
	return cn
}

// conn is a connection whose reads spin before they park.
type conn struct {
	net.Conn
	rc    syscall.RawConn
	g     *Group
	spins atomic.Bool // the next read spins: the last came within Spin
	busy  atomic.Bool // counted in g.working
	id    uint64
	// readDeadline is the read deadline set last (UnixNano; 0: none): a
	// spin ends by it, as a parked read does.
	readDeadline atomic.Int64
}

// NetConn returns the connection wrapped.
func (c *conn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts down the writing side of the connection wrapped (TCP
// and Unix connections have one).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *conn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) setReadDeadline(t time.Time) {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.readDeadline.Store(ns)
}

// Close closes the connection, which is no longer working.
func (c *conn) Close() error {
	c.idle()
	return c.Conn.Close()
}

// idle takes the connection out of g.working, if it is counted there.
func (c *conn) idle() {
	if c.busy.CompareAndSwap(true, false) {
		c.g.working.Add(-1)
	}
}

// Read spins for p's data (for Spin, if the connection spins and a
// spinner is free), then reads as the connection does.
func (c *conn) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.idle()
	defer func() {
		if n > 0 {
			if c.g.last.Swap(c.id) != c.id {
				c.g.switched.Store(int64(time.Since(c.g.epoch)))
			}
			if c.busy.CompareAndSwap(false, true) {
				c.g.working.Add(1)
			}
		}
	}()
	start := time.Now()
	if c.spins.Load() && c.g.alone(c) && c.g.acquire() {
		var end spinEnd
		n, end, err = c.spinRead(p, start)
		c.g.release()
		switch end {
		case spinRead:
			c.g.caught.Add(1)
			return n, err
		case spinRanOut, spinCut:
			// A cut counts as a miss: another connection's request came
			// first. The wait goes on in the poller, and its whole length
			// says whether the next read spins.
			c.g.missed.Add(1)
		}
	}
	c.g.parked.Add(1)
	n, err = c.Conn.Read(p)
	if err == nil {
		c.spins.Store(time.Since(start) <= c.g.spin) // a spin would have caught it
	}
	return n, err
}

// How a spin ended.
type spinEnd int

const (
	spinRead    spinEnd = iota // something came: data, the end, an error
	spinRanOut                 // Spin is over
	spinCut                    // another connection is working
	spinStopped                // the read deadline passed, or the raw read failed
)

// spinRead reads p without parking until something arrives or Spin after
// start is up. Unless it ends spinRead, Conn.Read is then to read (and to
// say what a passed deadline or a closed connection is).
func (c *conn) spinRead(p []byte, start time.Time) (n int, end spinEnd, err error) {
	deadline, deadlineEnds := start.Add(c.g.spin), spinRanOut
	if d := c.readDeadline.Load(); d != 0 && d < deadline.UnixNano() {
		deadline, deadlineEnds = time.Unix(0, d), spinStopped
	}
	rerr := c.rc.Read(func(fd uintptr) bool {
		for i := 0; ; i++ {
			m, e := syscall.Read(int(fd), p)
			switch {
			case e == nil && m > 0:
				n, end = m, spinRead
				return true
			case e == nil:
				err, end = io.EOF, spinRead
				return true
			case e == syscall.EINTR:
				continue
			case e != syscall.EAGAIN:
				err, end = &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", e)}, spinRead
				return true
			}
			// Others' work first: a spinning read must not hold up the
			// goroutines that have something to do.
			runtime.Gosched()
			if c.g.working.Load() > 0 {
				end = spinCut
				return true
			}
			if i&15 == 15 && time.Now().After(deadline) {
				end = deadlineEnds
				return true
			}
		}
	})
	if rerr != nil {
		return 0, spinStopped, nil
	}
	return n, end, err
}
