package lookup

import tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"

// CheckFeed checks the feed's liveness now, as Run does every tenth of the
// feed timeout, so that tests that move the clock need not wait for it.
func (s *Server) CheckFeed() { s.checkFeed() }

// Broadcast queues an invalidation for every Watch stream, as the feed
// does.
func (s *Server) Broadcast(msg *tcsv1.WatchResponse) { s.broadcast(msg) }

// HoldLock takes the lock the feed goroutine and the health loop take, as
// a deadlock would, until release is called.
func (s *Server) HoldLock() (release func()) {
	s.mu.Lock()
	return s.mu.Unlock
}
