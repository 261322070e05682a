//go:build !race

package client_test

const herd = 10_000
