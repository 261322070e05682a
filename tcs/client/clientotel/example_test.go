package clientotel_test

import (
	"context"
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clientotel"
)

// A compute node records the client's metrics with its MeterProvider
// (here the SDK's, with the reader or exporter the node uses).
func Example() {
	provider := sdkmetric.NewMeterProvider( /* sdkmetric.WithReader(...) */ )
	defer provider.Shutdown(context.Background())

	hooks, err := clientotel.Hooks(provider.Meter(clientotel.ScopeName))
	if err != nil {
		log.Fatal(err)
	}
	tcs, err := client.New(context.Background(),
		client.WithRegions("tcs.eu-west-1.internal:9001", "tcs.us-east-1.internal:9001"),
		client.WithMetrics(hooks),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer tcs.Close()
}
