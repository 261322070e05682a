package client

import "time"

// SilenceTimeout is how long the client's current Watch stream may stay
// silent: DefaultHeartbeatTimeout until a heartbeat has told it the
// server's interval.
func SilenceTimeout(c *Client) time.Duration { return time.Duration(c.silence.Load()) }
