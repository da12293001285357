package calllog

import (
	"cmp"
	"errors"
	"slices"
)

// Record actions, as APICatalog routes name them.
const (
	RecordCreated = "Created"
	RecordUpdated = "Updated"
	RecordDeleted = "Deleted"
	RecordMerged  = "Merged"
)

// RecordActions are the actions record insights count, in the order they
// are shown.
var RecordActions = []string{RecordCreated, RecordUpdated, RecordDeleted, RecordMerged}

// CountsAsRecord reports whether e counts in record insights: a call that
// names a record type and action and whose client got a success (2xx).
// An allowed check that no gateway reported on counts with the token
// service's 200: where no access log is configured, the allow decision is
// all there is.
func (e *Entry) CountsAsRecord() bool {
	return e.RecordType != "" && e.RecordAction != "" && e.Code >= 200 && e.Code <= 299
}

// RecordQuery selects record counts.
type RecordQuery struct {
	// Namespace is the namespace of the apps; empty is every namespace.
	Namespace  string
	App        string
	RecordType string
	Action     string
	// FromDay and ToDay are UTC days (DayOf), both included.
	FromDay, ToDay int64
}

// Check validates a query.
func (q *RecordQuery) Check() error {
	if q.ToDay < q.FromDay {
		return errors.New("the day range is empty: since must not be after until")
	}
	if q.Action != "" && !slices.Contains(RecordActions, q.Action) {
		return errors.New("the action must be one of Created, Updated, Deleted, Merged")
	}
	return nil
}

// Matches reports whether e is counted by q.
func (q *RecordQuery) Matches(e *Entry) bool {
	d := e.Day()
	switch {
	case !e.CountsAsRecord(),
		d < q.FromDay || d > q.ToDay,
		q.Namespace != "" && e.Namespace != q.Namespace,
		q.App != "" && e.App != q.App,
		q.RecordType != "" && e.RecordType != q.RecordType,
		q.Action != "" && e.RecordAction != q.Action:
		return false
	}
	return true
}

// RecordCount is how many successful calls of one app did one action to
// one record type on one UTC day.
type RecordCount struct {
	Namespace, App     string
	Day                int64
	RecordType, Action string
	Count              int64
}

// CompareRecordCounts orders counts by namespace, app, day, record type
// and action: the order a store answers in.
func CompareRecordCounts(a, b RecordCount) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.App, b.App), cmp.Compare(a.Day, b.Day),
		cmp.Compare(a.RecordType, b.RecordType), cmp.Compare(a.Action, b.Action))
}

// CountRecords counts entries (each call once, already merged) by q: the
// reference the conformance suite checks backends against.
func CountRecords(entries []Entry, q RecordQuery) []RecordCount {
	type key struct {
		ns, app  string
		day      int64
		typ, act string
	}
	counts := map[key]int64{}
	for i := range entries {
		if e := &entries[i]; q.Matches(e) {
			counts[key{e.Namespace, e.App, e.Day(), e.RecordType, e.RecordAction}]++
		}
	}
	out := make([]RecordCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, RecordCount{Namespace: k.ns, App: k.app, Day: k.day, RecordType: k.typ, Action: k.act, Count: n})
	}
	slices.SortFunc(out, CompareRecordCounts)
	return out
}
