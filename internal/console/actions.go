package console

import (
	"net/http"
	"net/url"

	"github.com/keyhold/keyhold/internal/awsjson"
)

// The buttons of a detail page (a key, a key store, a cluster) post to
// .../{id}/{action}. Each page lists its actions in one table; runAction
// runs the one named and sends the user back to the page with what
// happened.

// action does one button's work for the resource id.
type action func(h *Handler, w http.ResponseWriter, r *http.Request, s *session, id string) outcome

// outcome is what an action tells the user.
type outcome struct {
	msg string         // shown after a success
	ae  *awsjson.Error // the failure, shown on the page instead
	to  string         // where a success goes instead of the page (a deleted resource has none)
	// answered: the action wrote the response itself.
	answered bool
}

// apiCall is the outcome of one API call: msg on success.
func apiCall(ae *awsjson.Error, msg string) outcome { return outcome{msg: msg, ae: ae} }

// runAction runs the {action} of the detail page base+{id}, from actions;
// an action not listed is 404.
func (h *Handler) runAction(w http.ResponseWriter, r *http.Request, s *session, base string, actions map[string]action) {
	act, ok := actions[r.PathValue("action")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	id := r.PathValue("id")
	o := act(h, w, r, s, id)
	back := base + url.PathEscape(id)
	switch {
	case o.answered:
	case o.ae != nil:
		h.redirect(w, r, s, back, "", o.ae)
	case o.to != "":
		h.redirect(w, r, s, o.to, o.msg, nil)
	default:
		h.redirect(w, r, s, back, o.msg, nil)
	}
}

// confirmed reports whether the form's confirmation field says "delete",
// as the AWS console asks before a deletion.
func confirmed(r *http.Request) bool { return r.PostFormValue("confirm") == "delete" }

// autoRefresh makes a list page reload itself every few seconds while one
// of its rows is in a transitional state.
type autoRefresh struct{ busy bool }

func (a autoRefresh) refresh() int {
	if a.busy {
		return 3
	}
	return 0
}
