package lookup

// CheckFeed checks the feed's liveness now, as Run does every tenth of the
// feed timeout, so that tests that move the clock need not wait for it.
func (s *Server) CheckFeed() { s.checkFeed() }
