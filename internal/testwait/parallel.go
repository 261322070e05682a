package testwait

import (
	"flag"
	"strconv"
)

// WaitBoundParallel lets up to n of the package's parallel tests run at once,
// unless -test.parallel was given. Call it from TestMain before m.Run, in
// packages whose parallel tests mostly wait (on timeouts, on frozen
// endpoints) rather than compute: the default limit, GOMAXPROCS, runs them
// two at a time on a two-core machine, so that a package of thirty
// 300-millisecond timeouts takes five seconds instead of one.
func WaitBoundParallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		// The flag exists in every test binary (testing registers it
		// before TestMain runs); Set cannot fail for a positive number.
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}
