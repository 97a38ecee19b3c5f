// Package logs builds keyhold's one kind of logger: log/slog, text or JSON,
// at a chosen level, the same for every subcommand. The level can change
// while running (SIGHUP reloads it from the configuration).
//
// It never decides what is logged: callers must not pass secrets, key
// material or plaintext as attributes.
package logs

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Formats and levels accepted by New and by --log-format / --log-level.
var (
	Formats = []string{"text", "json"}
	Levels  = []string{"debug", "info", "warn", "error"}
)

// ParseLevel reads debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// CheckFormat accepts text or json.
func CheckFormat(s string) error {
	if s == "text" || s == "json" {
		return nil
	}
	return fmt.Errorf("unknown log format %q (want text or json)", s)
}

// New returns a logger writing format ("text" or "json") to w at level;
// level may be changed later through the returned LevelVar.
func New(w io.Writer, format, level string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	l, err := ParseLevel(level)
	if err != nil {
		return nil, nil, err
	}
	lv.Set(l)
	if err := CheckFormat(format); err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = newTextHandler(w, opts)
	}
	return slog.New(h), lv, nil
}
