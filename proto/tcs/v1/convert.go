package tcsv1

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// The wire cannot tell a nil collection from an empty one, nor a zero time
// from an unset one. The conversions therefore agree on one form:
//
//   - an empty slice or map comes back from the wire as nil;
//   - the zero time.Time travels as an unset Timestamp, and an unset
//     Timestamp comes back as the zero time.Time;
//   - times come back in UTC (the same instant, not the same location);
//   - a nil *tenant.Database or *tenant.Tenant travels as an unset message,
//     and a set but empty one stays set.
//
// The ToProto functions share nothing with their argument: callers may change
// either value afterwards.

// TenantToProto converts a domain tenant to its wire form; nil gives nil.
//
// It cannot fail: a status or product state that is not one of the domain's
// constants becomes UNSPECIFIED, and a port outside the int32 range is
// truncated. Both are rejected by tenant validation before a tenant is
// stored, so only an unvalidated tenant can lose information here.
func TenantToProto(t *tenant.Tenant) *Tenant {
	if t == nil {
		return nil
	}
	p := &Tenant{
		Id:        t.ID,
		Hostnames: cloneStrings(t.Hostnames),
		Status:    statusToProto(t.Status),
		Region:    t.Region,
		Version:   t.Version,
		UpdatedAt: timeToProto(t.UpdatedAt),
		UpdatedBy: t.UpdatedBy,
	}
	if len(t.Products) > 0 {
		p.Products = make(map[string]*Product, len(t.Products))
		for k, v := range t.Products {
			p.Products[k] = &Product{
				State:   productStateToProto(v.State),
				Users:   v.Users,
				Edition: v.Edition,
			}
		}
	}
	if d := t.Database; d != nil {
		p.Database = databaseToProto(*d)
	}
	if m := t.Migration; m != nil {
		p.Migration = &Migration{
			Step:     moveStepToProto(m.Step),
			ReadOnly: m.ReadOnly,
			From:     databaseToProto(m.From),
			To:       databaseToProto(m.To),
			Started:  timeToProto(m.Started),
			By:       m.By,
		}
	}
	if len(t.Labels) > 0 {
		p.Labels = make(map[string]string, len(t.Labels))
		for k, v := range t.Labels {
			p.Labels[k] = v
		}
	}
	return p
}

// TenantFromProto converts a wire tenant to a domain tenant; nil gives nil.
// It fails with a tenant.Invalid error naming each field at fault when the
// message holds an enum value this build does not know or a timestamp out of
// range. It does not otherwise validate the tenant: that is tenant.Prepare's
// job.
func TenantFromProto(p *Tenant) (*tenant.Tenant, error) {
	var fields []tenant.FieldError
	t := tenantFromProto(p, "", &fields)
	if err := tenant.FieldErrors(fields); err != nil {
		return nil, err
	}
	return t, nil
}

// EventToProto converts a domain change event to its wire form; nil gives
// nil. See TenantToProto for what it does with values a valid tenant never
// holds.
func EventToProto(e *tenant.ChangeEvent) *ChangeEvent {
	if e == nil {
		return nil
	}
	return &ChangeEvent{
		TenantId:    e.TenantID,
		Version:     e.Version,
		Tenant:      TenantToProto(e.Tenant),
		Claims:      claimsToProto(e.Claims),
		Released:    claimsToProto(e.Released),
		CommittedAt: timeToProto(e.CommittedAt),
		Resync:      e.Resync,
		Regions:     cloneStrings(e.Regions),
		Traceparent: e.Trace.Parent,
		Tracestate:  e.Trace.State,
	}
}

// EventFromProto converts a wire change event to a domain event; nil gives
// nil. It fails as TenantFromProto does, naming fields of the tenant as
// "tenant.status" and so on.
func EventFromProto(p *ChangeEvent) (*tenant.ChangeEvent, error) {
	if p == nil {
		return nil, nil
	}
	var fields []tenant.FieldError
	e := &tenant.ChangeEvent{
		TenantID:    p.GetTenantId(),
		Version:     p.GetVersion(),
		Tenant:      tenantFromProto(p.GetTenant(), "tenant.", &fields),
		Claims:      claimsFromProto(p.GetClaims()),
		Released:    claimsFromProto(p.GetReleased()),
		CommittedAt: timeFromProto(p.GetCommittedAt(), "committed_at", &fields),
		Resync:      p.GetResync(),
		Regions:     cloneStrings(p.GetRegions()),
		Trace:       tenant.TraceContext{Parent: p.GetTraceparent(), State: p.GetTracestate()},
	}
	if err := tenant.FieldErrors(fields); err != nil {
		return nil, err
	}
	return e, nil
}

// tenantFromProto converts p, appending to fields, with each field name
// prefixed by prefix, whatever it cannot convert.
func tenantFromProto(p *Tenant, prefix string, fields *[]tenant.FieldError) *tenant.Tenant {
	if p == nil {
		return nil
	}
	t := &tenant.Tenant{
		ID:        p.GetId(),
		Hostnames: cloneStrings(p.GetHostnames()),
		Region:    p.GetRegion(),
		Version:   p.GetVersion(),
		UpdatedAt: timeFromProto(p.GetUpdatedAt(), prefix+"updated_at", fields),
		UpdatedBy: p.GetUpdatedBy(),
	}
	var ok bool
	if t.Status, ok = statusFromProto(p.GetStatus()); !ok {
		*fields = append(*fields, tenant.FieldError{
			Field:  prefix + "status",
			Reason: fmt.Sprintf("unknown tenant status %d", p.GetStatus()),
		})
	}
	if len(p.GetProducts()) > 0 {
		t.Products = make(map[string]tenant.Product, len(p.GetProducts()))
		for k, v := range p.GetProducts() {
			state, ok := productStateFromProto(v.GetState())
			if !ok {
				*fields = append(*fields, tenant.FieldError{
					Field:  fmt.Sprintf("%sproducts[%q].state", prefix, k),
					Reason: fmt.Sprintf("unknown product state %d", v.GetState()),
				})
			}
			t.Products[k] = tenant.Product{
				State:   state,
				Users:   v.GetUsers(),
				Edition: v.GetEdition(),
			}
		}
	}
	if d := p.GetDatabase(); d != nil {
		db := databaseFromProto(d)
		t.Database = &db
	}
	if m := p.GetMigration(); m != nil {
		t.Migration = &tenant.Migration{
			ReadOnly: m.GetReadOnly(),
			From:     databaseFromProto(m.GetFrom()),
			To:       databaseFromProto(m.GetTo()),
			Started:  timeFromProto(m.GetStarted(), prefix+"migration.started", fields),
			By:       m.GetBy(),
		}
		if t.Migration.Step, ok = moveStepFromProto(m.GetStep()); !ok {
			*fields = append(*fields, tenant.FieldError{
				Field:  prefix + "migration.step",
				Reason: fmt.Sprintf("unknown move step %d", m.GetStep()),
			})
		}
	}
	if len(p.GetLabels()) > 0 {
		t.Labels = make(map[string]string, len(p.GetLabels()))
		for k, v := range p.GetLabels() {
			t.Labels[k] = v
		}
	}
	return t
}

func databaseToProto(d tenant.Database) *Database {
	return &Database{
		Engine:    d.Engine,
		Host:      d.Host,
		Port:      int32(d.Port),
		Name:      d.Name,
		Region:    d.Region,
		SecretRef: d.SecretRef,
	}
}

// databaseFromProto converts d; an unset one is the zero Database.
func databaseFromProto(d *Database) tenant.Database {
	return tenant.Database{
		Engine:    d.GetEngine(),
		Host:      d.GetHost(),
		Port:      int(d.GetPort()),
		Name:      d.GetName(),
		Region:    d.GetRegion(),
		SecretRef: d.GetSecretRef(),
	}
}

// moveSteps pairs each domain move step with its wire value.
var moveSteps = [...]struct {
	domain tenant.MoveStep
	wire   MoveStep
}{
	{tenant.MovePrepared, MoveStep_MOVE_STEP_PREPARED},
	{tenant.MoveCopied, MoveStep_MOVE_STEP_COPIED},
	{tenant.MoveSwitched, MoveStep_MOVE_STEP_SWITCHED},
	{tenant.MoveComplete, MoveStep_MOVE_STEP_COMPLETE},
	{tenant.MoveCancelled, MoveStep_MOVE_STEP_CANCELLED},
	{tenant.MoveReversed, MoveStep_MOVE_STEP_REVERSED},
}

// moveStepToProto maps a domain move step to the wire; the empty step and
// any step the domain does not define become UNSPECIFIED.
func moveStepToProto(s tenant.MoveStep) MoveStep {
	for _, m := range moveSteps {
		if m.domain == s {
			return m.wire
		}
	}
	return MoveStep_MOVE_STEP_UNSPECIFIED
}

// moveStepFromProto maps a wire move step to the domain: UNSPECIFIED is the
// empty step; ok is false for a value this build does not know.
func moveStepFromProto(s MoveStep) (_ tenant.MoveStep, ok bool) {
	if s == MoveStep_MOVE_STEP_UNSPECIFIED {
		return "", true
	}
	for _, m := range moveSteps {
		if m.wire == s {
			return m.domain, true
		}
	}
	return "", false
}

// statusToProto maps a domain status to the wire; the empty status and any
// status the domain does not define become UNSPECIFIED.
func statusToProto(s tenant.Status) TenantStatus {
	switch s {
	case tenant.StatusActive:
		return TenantStatus_TENANT_STATUS_ACTIVE
	case tenant.StatusSuspended:
		return TenantStatus_TENANT_STATUS_SUSPENDED
	case tenant.StatusDeleted:
		return TenantStatus_TENANT_STATUS_DELETED
	}
	return TenantStatus_TENANT_STATUS_UNSPECIFIED
}

// statusFromProto maps a wire status to the domain: UNSPECIFIED is the empty
// status; ok is false for a value this build does not know.
func statusFromProto(s TenantStatus) (_ tenant.Status, ok bool) {
	switch s {
	case TenantStatus_TENANT_STATUS_UNSPECIFIED:
		return "", true
	case TenantStatus_TENANT_STATUS_ACTIVE:
		return tenant.StatusActive, true
	case TenantStatus_TENANT_STATUS_SUSPENDED:
		return tenant.StatusSuspended, true
	case TenantStatus_TENANT_STATUS_DELETED:
		return tenant.StatusDeleted, true
	}
	return "", false
}

// productStateToProto maps a domain product state to the wire; the empty
// state and any state the domain does not define become UNSPECIFIED.
func productStateToProto(s tenant.ProductState) ProductState {
	switch s {
	case tenant.ProductActive:
		return ProductState_PRODUCT_STATE_ACTIVE
	case tenant.ProductDeactivated:
		return ProductState_PRODUCT_STATE_DEACTIVATED
	}
	return ProductState_PRODUCT_STATE_UNSPECIFIED
}

// productStateFromProto maps a wire product state to the domain: UNSPECIFIED
// is the empty state; ok is false for a value this build does not know.
func productStateFromProto(s ProductState) (_ tenant.ProductState, ok bool) {
	switch s {
	case ProductState_PRODUCT_STATE_UNSPECIFIED:
		return "", true
	case ProductState_PRODUCT_STATE_ACTIVE:
		return tenant.ProductActive, true
	case ProductState_PRODUCT_STATE_DEACTIVATED:
		return tenant.ProductDeactivated, true
	}
	return "", false
}

func claimsToProto(cs []tenant.Claim) []*Claim {
	if len(cs) == 0 {
		return nil
	}
	p := make([]*Claim, len(cs))
	for i, c := range cs {
		p[i] = &Claim{Hostname: c.Hostname, Version: c.Version}
	}
	return p
}

// claimsFromProto converts wire claims; a nil element (possible only in a
// message built in Go, never in one decoded from the wire) becomes the zero
// Claim.
func claimsFromProto(ps []*Claim) []tenant.Claim {
	if len(ps) == 0 {
		return nil
	}
	cs := make([]tenant.Claim, len(ps))
	for i, p := range ps {
		cs[i] = tenant.Claim{Hostname: p.GetHostname(), Version: p.GetVersion()}
	}
	return cs
}

// timeToProto converts t; the zero time becomes an unset Timestamp.
func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// timeFromProto converts ts to a UTC time; an unset Timestamp becomes the
// zero time. An invalid one (out of range, or bad nanos) is reported in
// fields under the name field.
func timeFromProto(ts *timestamppb.Timestamp, field string, fields *[]tenant.FieldError) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		*fields = append(*fields, tenant.FieldError{Field: field, Reason: err.Error()})
		return time.Time{}
	}
	return ts.AsTime()
}

func cloneStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}
