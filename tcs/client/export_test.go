package client

import "time"

// SilenceTimeout is how long the client's current Watch stream may stay
// silent: DefaultHeartbeatTimeout until a heartbeat has told it the
// server's interval.
func SilenceTimeout(c *Client) time.Duration { return time.Duration(c.silence.Load()) }

// CoarseClock reports whether c's hits read the coarse clock its ticker
// keeps.
func CoarseClock(c *Client) bool { return c.cache.ticking }

// AckAcceptedHeader is the header the client expects on an accepted
// AckStream, for the test that ties it to the server's.
const AckAcceptedHeader = ackAcceptedHeader
