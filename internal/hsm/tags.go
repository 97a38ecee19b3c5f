package hsm

import (
	"context"
	"regexp"
	"slices"
	"strings"
)

const maxTags = 50

var tagRe = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

func checkTags(tags []Tag) error {
	seen := map[string]bool{}
	for _, t := range tags {
		if len(t.Key) == 0 || len([]rune(t.Key)) > 128 || len([]rune(t.Value)) > 256 || !tagRe.MatchString(t.Key) || !tagRe.MatchString(t.Value) {
			return errf(ErrTag, "Tag %q is not valid.", t.Key)
		}
		if strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return errf(ErrTag, "Tag keys starting with aws: are reserved.")
		}
		if seen[t.Key] {
			return errf(ErrTag, "Tag key %q appears more than once.", t.Key)
		}
		seen[t.Key] = true
	}
	if len(tags) > maxTags {
		return errf(ErrResourceLimit, "A resource can have at most %d tags.", maxTags)
	}
	return nil
}

func mergeTags(have, add []Tag) []Tag {
	out := slices.Clone(have)
	for _, t := range add {
		if i := slices.IndexFunc(out, func(o Tag) bool { return o.Key == t.Key }); i >= 0 {
			out[i].Value = t.Value
		} else {
			out = append(out, t)
		}
	}
	return out
}

// updateTags changes the tags of a cluster or backup.
func (m *Manager) updateTags(ctx context.Context, resourceID string, fn func([]Tag) ([]Tag, error)) error {
	switch {
	case strings.HasPrefix(resourceID, "cluster-"):
		_, err := m.reg.UpdateCluster(ctx, resourceID, func(r *ClusterRecord) error {
			if r.State == ClusterDeleted {
				return clusterNotFound(resourceID)
			}
			t, err := fn(r.Tags)
			r.Tags = t
			return err
		})
		return err
	case strings.HasPrefix(resourceID, "backup-"):
		_, err := m.reg.UpdateBackup(ctx, resourceID, func(r *BackupRecord) error {
			if r.State == BackupDeleted {
				return backupNotFound(resourceID)
			}
			t, err := fn(r.Tags)
			r.Tags = t
			return err
		})
		return err
	}
	return errf(ErrInvalidRequest, "ResourceId %s is neither a cluster nor a backup.", resourceID)
}

// TagResource adds or replaces tags of a cluster or backup.
func (m *Manager) TagResource(ctx context.Context, resourceID string, tags []Tag) error {
	if err := checkTags(tags); err != nil {
		return err
	}
	return m.updateTags(ctx, resourceID, func(have []Tag) ([]Tag, error) {
		out := mergeTags(have, tags)
		if len(out) > maxTags {
			return have, errf(ErrResourceLimit, "A resource can have at most %d tags.", maxTags)
		}
		return out, nil
	})
}

// UntagResource removes tags by key; unknown keys are ignored.
func (m *Manager) UntagResource(ctx context.Context, resourceID string, keys []string) error {
	return m.updateTags(ctx, resourceID, func(have []Tag) ([]Tag, error) {
		return slices.DeleteFunc(slices.Clone(have), func(t Tag) bool { return slices.Contains(keys, t.Key) }), nil
	})
}

// ListTags lists a resource's tags, a page at a time.
func (m *Manager) ListTags(ctx context.Context, resourceID, nextToken string, max int) ([]Tag, string, error) {
	var tags []Tag
	switch {
	case strings.HasPrefix(resourceID, "cluster-"):
		r, err := m.reg.GetCluster(ctx, resourceID)
		if err != nil {
			return nil, "", err
		}
		if r.State == ClusterDeleted {
			return nil, "", clusterNotFound(resourceID)
		}
		tags = r.Tags
	case strings.HasPrefix(resourceID, "backup-"):
		r, err := m.reg.GetBackup(ctx, resourceID)
		if err != nil {
			return nil, "", err
		}
		tags = r.Tags
	default:
		return nil, "", invalid("ResourceId %s is neither a cluster nor a backup.", resourceID)
	}
	return page(tags, func(t Tag) string { return t.Key }, nextToken, max, 100)
}
