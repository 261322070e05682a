package sns

// LeaveOnStop makes f's Subscribe calls end without removing their queue and
// subscription, as if the node had crashed. Call it before Subscribe.
func LeaveOnStop(f *Feed) { f.leaveOnStop = true }

// ShouldSweep is shouldSweep.
var ShouldSweep = shouldSweep
