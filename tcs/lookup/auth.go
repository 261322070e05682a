package lookup

import (
	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/tcs-dev/tcs/internal/auth"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Policy is the role each method of a lookup server needs: every
// TenantContextService method (Lookup, BatchLookup, Watch) and every
// WorkService method (Join, Validate: the compute nodes' work pools) lookup, every
// ReplicaAdmin method replica-scan (never a catalog role: a tcs node holds
// no catalog credential). Health checks are open, and reflection when
// served. A method of any other service is refused.
func Policy(reflection bool) auth.Policy {
	p := auth.Policy{
		Methods: map[string]auth.Role{
			"/" + tcsv1.TenantContextService_ServiceDesc.ServiceName + "/": auth.Lookup,
			"/" + tcsv1.WorkService_ServiceDesc.ServiceName + "/":          auth.Lookup,
			"/" + adminv1.ReplicaAdmin_ServiceDesc.ServiceName + "/":       auth.ReplicaScan,
		},
		Open: []string{grpc_health_v1.Health_ServiceDesc.ServiceName},
	}
	if reflection {
		p.Open = append(p.Open, reflectionv1.ServerReflection_ServiceDesc.ServiceName, reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName)
	}
	return p
}
