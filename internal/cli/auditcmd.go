package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyhold/keyhold/internal/api/cloudtrailapi"
	"github.com/keyhold/keyhold/internal/audit"
)

// cloudTrailPrefix is LookupEvents' X-Amz-Target prefix.
const cloudTrailPrefix = cloudtrailapi.TargetPrefix

// parseTime reads RFC 3339 or a date (YYYY-MM-DD), or a duration ago ("15m").
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration ago (15m)", s)
}

func auditCommand(stdout, stderr io.Writer) *cobra.Command {
	var dataDir, file, lookup, start, end string
	var limit int
	var asJSON bool
	def := os.Getenv("KEYHOLD_DATA_DIR")
	if def == "" {
		def = DefaultDataDir
	}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print and filter the audit trail (CloudTrail events), oldest first",
		Long: `Print and filter the audit trail: the CloudTrail events keyhold appends to
DATA_DIR/audit/cloudtrail.jsonl (and rotated copies beside it). It reads the
file, so it works on a running or a stopped keyhold. Over the API the same
trail answers "aws cloudtrail lookup-events --endpoint-url ...".

  keyhold audit --lookup EventName=Decrypt --start 1h
  keyhold audit --lookup Username=keyhold-admin --json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := audit.Query{}
			now := time.Now()
			if lookup != "" {
				k, v, ok := strings.Cut(lookup, "=")
				if !ok || !slices.Contains(audit.LookupKeys, k) || v == "" {
					return usageError{fmt.Errorf("--lookup %q: want KEY=VALUE with KEY one of %s", lookup, strings.Join(audit.LookupKeys, ", "))}
				}
				q.Key, q.Value = k, v
			}
			var err error
			if start != "" {
				if q.Start, err = parseTime(start, now); err != nil {
					return usageError{fmt.Errorf("--start %w", err)}
				}
			}
			if end != "" {
				if q.End, err = parseTime(end, now); err != nil {
					return usageError{fmt.Errorf("--end %w", err)}
				}
			}
			path := file
			if path == "" {
				path = auditPath(dataDir)
			}
			files, err := audit.TrailFiles(path)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				return fmt.Errorf("no audit trail at %s", path)
			}
			page, err := audit.Lookup(files, q, nil, limit)
			if err != nil {
				return err
			}
			found := page.Found
			slices.Reverse(found)
			if asJSON {
				for _, f := range found {
					fmt.Fprintln(stdout, f.Raw)
				}
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tEVENT\tSOURCE\tUSER\tERROR\tRESOURCE\tREQUEST ID")
			for _, f := range found {
				ev := f.Event
				res := "-"
				if len(ev.Resources) > 0 {
					res = ev.Resources[0].ARN
				}
				errCode := ev.ErrorCode
				if errCode == "" {
					errCode = "-"
				}
				user := ev.Username()
				if user == "" {
					user = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.EventTime, ev.EventName, strings.TrimSuffix(ev.EventSource, ".amazonaws.com"), user, errCode, res, ev.RequestID)
			}
			return tw.Flush()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", def, "data directory whose trail to read (env KEYHOLD_DATA_DIR)")
	fs.StringVar(&file, "file", "", "read this audit file instead")
	fs.StringVar(&lookup, "lookup", "", "KEY=VALUE, KEY one of "+strings.Join(audit.LookupKeys, ", "))
	fs.StringVar(&start, "start", "", "only events at or after: RFC 3339, a date, or a duration ago (1h)")
	fs.StringVar(&end, "end", "", "only events at or before (same forms as --start)")
	fs.IntVar(&limit, "limit", 0, "only the most recent N events (0: all)")
	fs.BoolVar(&asJSON, "json", false, "print the CloudTrail events as stored, one JSON object a line")
	return cmd
}
