package notify

import "time"

// Frequency is how often a reminder repeats.
type Frequency string

// Reminder frequencies, as in AppNotification's spec.reminder.
const (
	Hourly  Frequency = "Hourly"
	Daily   Frequency = "Daily"
	Weekly  Frequency = "Weekly"
	Monthly Frequency = "Monthly"
)

// ReminderDue is when reminder n (1, 2, ...) of an episode that began at
// start falls due. Daily and weekly count in whole days of 24 hours (UTC has
// no daylight saving). Monthly steps calendar months from start, on the same
// day of the month, or on the month's last day when it is shorter: an
// episode that began on 31 January is reminded on 28 (or 29) February, 31
// March, 30 April.
func ReminderDue(start time.Time, f Frequency, n int) time.Time {
	switch f {
	case Hourly:
		return start.Add(time.Duration(n) * time.Hour)
	case Daily:
		return start.Add(time.Duration(n) * 24 * time.Hour)
	case Weekly:
		return start.Add(time.Duration(n) * 7 * 24 * time.Hour)
	case Monthly:
		start = start.UTC()
		y, m, d := start.Date()
		first := time.Date(y, m+time.Month(n), 1, start.Hour(), start.Minute(), start.Second(), start.Nanosecond(), time.UTC)
		last := first.AddDate(0, 1, -1).Day()
		return first.AddDate(0, 0, min(d, last)-1)
	}
	return time.Time{}
}

// RemindersDue is how many reminders of an episode that began at start have
// fallen due by now.
func RemindersDue(start time.Time, f Frequency, now time.Time) int {
	if now.Before(start) {
		return 0
	}
	switch f {
	case Hourly:
		return int(now.Sub(start) / time.Hour)
	case Daily:
		return int(now.Sub(start) / (24 * time.Hour))
	case Weekly:
		return int(now.Sub(start) / (7 * 24 * time.Hour))
	case Monthly:
		n := 0
		for !ReminderDue(start, f, n+1).After(now) {
			n++
		}
		return n
	}
	return 0
}
