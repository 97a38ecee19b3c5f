package audit

// Pending is the number of events accepted by Write and not yet durable
// (written and fsynced): the audit trail's queue, for metrics.
func (w *Writer) Pending() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.durable > w.accepted {
		return 0
	}
	return w.accepted - w.durable
}
