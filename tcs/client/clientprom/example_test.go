package clientprom_test

import (
	"context"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clientprom"
)

// A compute node registers the client's metrics with its own registry and
// serves them with the rest.
func Example() {
	reg := prometheus.NewRegistry()
	m := clientprom.New()
	reg.MustRegister(m)

	tcs, err := client.New(context.Background(),
		client.WithRegions("tcs.eu-west-1.internal:9001", "tcs.us-east-1.internal:9001"),
		client.WithMetrics(m.Hooks()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer tcs.Close()

	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
