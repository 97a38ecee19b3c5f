package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// JSONErrorLine turns a JSON decoding error's byte offset in b into ":LINE"
// (empty when the error carries no offset), for messages naming file:line.
func JSONErrorLine(b []byte, err error) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return ""
	}
	return fmt.Sprintf(":%d", bytes.Count(b[:off], []byte("\n"))+1)
}
