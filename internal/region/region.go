// Package region says what an AWS Region name looks like. keyhold answers
// every Region behind one endpoint (the Region is a request's SigV4
// credential scope), so the listener and the domain both need to tell a
// Region name from anything else. It must stay free of any I/O.
package region

// MaxLen is the longest Region name the KMS model accepts (RegionType).
const MaxLen = 32

// Valid reports whether s has the shape of an AWS Region name, the KMS
// model's RegionType: ^([a-z]+-){2,3}\d+$, 1-32 bytes (us-east-1,
// us-gov-west-1, ap-southeast-2).
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	parts, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '-' {
			continue
		}
		part := s[start:i]
		start = i + 1
		parts++
		if part == "" {
			return false
		}
		last := i == len(s)
		for j := 0; j < len(part); j++ {
			c := part[j]
			if last && (c < '0' || c > '9') || !last && (c < 'a' || c > 'z') {
				return false
			}
		}
	}
	return parts == 3 || parts == 4
}
