package kmsapi

import "bytes"

// relaxModel lets XksProxyUriEndpoint carry a port: AWS requires the default
// HTTPS port, a self-hosted proxy often has another. Everything else in the
// model is enforced as AWS enforces it.
func relaxModel(m []byte) []byte {
	return bytes.Replace(m, []byte(`"pattern":"^https://[a-zA-Z0-9.-]+$"`), []byte(`"pattern":"^https://[a-zA-Z0-9.-]+(:[0-9]{1,5})?$"`), 1)
}
