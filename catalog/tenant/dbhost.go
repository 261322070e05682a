package tenant

// NormalizeDatabaseHost returns the canonical form the catalog stores in
// database.host: an IP address in its netip form, or a hostname as
// NormalizeHostname returns it (a port is refused). It rejects anything else
// with an *Error (code Invalid, field "database.host") whose reason names
// the problem. Tools that name a host the catalog does not hold yet (a new
// database server) use it to compare with the hosts it does.
func NormalizeDatabaseHost(raw string) (string, error) {
	h, reason := normalizeDatabaseHost(raw)
	if reason != "" {
		return "", &Error{Code: Invalid, Message: "invalid database host", Fields: []FieldError{{Field: "database.host", Reason: reason}}}
	}
	return h, nil
}
