package controller

import (
	"cmp"
	"slices"
	"time"
)

// capEntry is what the app cap needs to know about one app.
type capEntry struct {
	name     string
	created  time.Time
	hasToken bool
	// excluded apps neither hold nor wait for a slot: apps being deleted, and
	// apps that cannot take a token because their Secret name is taken.
	excluded bool
}

// capDecision says whether an app may hold a token under the namespace cap.
type capDecision struct {
	granted bool
	// holders is how many apps in the namespace hold tokens.
	holders int
	// position is the app's place in the queue of waiting apps, from 1.
	position int
}

// decideSlot applies the namespace cap. Apps that hold tokens keep them
// (lowering the limit never revokes a token); the free slots go to waiting
// apps in order of creation time, then name.
func decideSlot(apps []capEntry, name string, limit int) capDecision {
	var d capDecision
	var waiting []capEntry
	for _, a := range apps {
		switch {
		case a.excluded:
		case a.hasToken:
			d.holders++
		default:
			waiting = append(waiting, a)
		}
	}
	slices.SortFunc(waiting, func(a, b capEntry) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	for i, a := range waiting {
		if a.name == name {
			d.position = i + 1
			d.granted = d.holders+i < limit
			return d
		}
	}
	return d
}
