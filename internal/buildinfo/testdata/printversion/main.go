// Command printversion prints buildinfo.Get, for TestStampedVersion.
package main

import (
	"fmt"

	"github.com/tcs-dev/tcs/internal/buildinfo"
)

func main() { fmt.Println(buildinfo.Get().String("printversion")) }
