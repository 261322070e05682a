package testnet

import (
	"net"
	"sync"
	"testing"
)

// Freezer is a TCP proxy on loopback to an upstream address that can be
// frozen: while frozen it still accepts connections but forwards no byte in
// either direction (nor dials upstream for new ones), as a SIGSTOPped or
// black-holed endpoint does; thawed, everything held goes through.
type Freezer struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	thawed chan struct{} // closed while not frozen
	conns  []net.Conn
	wg     sync.WaitGroup
}

// NewFreezer starts a thawed Freezer to upstream (host:port). It and its
// connections are closed when tb's test ends.
func NewFreezer(tb testing.TB, upstream string) *Freezer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &Freezer{ln: ln, upstream: upstream, thawed: make(chan struct{})}
	close(f.thawed)
	f.wg.Go(f.serve)
	tb.Cleanup(func() {
		ln.Close()
		f.Thaw()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

// Addr is the proxy's address (127.0.0.1:port).
func (f *Freezer) Addr() string { return f.ln.Addr().String() }

// URL is "http://" + Addr.
func (f *Freezer) URL() string { return "http://" + f.Addr() }

// Freeze stops forwarding.
func (f *Freezer) Freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.thawed:
		f.thawed = make(chan struct{})
	default:
	}
}

// Thaw forwards again, what was held first.
func (f *Freezer) Thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.thawed:
	default:
		close(f.thawed)
	}
}

// pass blocks while the proxy is frozen.
func (f *Freezer) pass() {
	f.mu.Lock()
	ch := f.thawed
	f.mu.Unlock()
	<-ch
}

func (f *Freezer) track(c net.Conn) {
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
}

func (f *Freezer) serve() {
	for {
		client, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.track(client)
		f.wg.Go(func() {
			f.pass()
			server, err := net.Dial("tcp", f.upstream)
			if err != nil {
				client.Close()
				return
			}
			f.track(server)
			f.wg.Go(func() { f.pipe(server, client) })
			f.pipe(client, server)
		})
	}
}

// pipe copies from src to dst, holding each chunk while frozen.
func (f *Freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.pass()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
