package notify

import (
	"bytes"
	"fmt"
	"net/mail"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// DirectoryKey is the key of a directory ConfigMap that holds the YAML.
const DirectoryKey = "directory.yaml"

// Directory maps the user and team names used by AppNotifications to email
// addresses.
//
//	superAdmins: [alice]
//	users:
//	  alice: alice@example.com
//	  bob: bob@example.com
//	teams:
//	  platform: [alice, bob]
type Directory struct {
	// SuperAdmins are the users that recipients kind SuperAdmins means.
	SuperAdmins []string `json:"superAdmins,omitempty"`
	// Users maps a user name to an email address. Everyone means all of them.
	Users map[string]string `json:"users,omitempty"`
	// Teams maps a team name to user names.
	Teams map[string][]string `json:"teams,omitempty"`
}

// Recipient is a user with an email address.
type Recipient struct {
	User  string `json:"user"`
	Email string `json:"email"`
}

// ParseDirectory reads and checks a directory. Every superAdmin and team
// member must be a user, and every address must parse, so a typo is found
// when the directory is read rather than when a mail bounces.
func ParseDirectory(data []byte) (*Directory, error) {
	d := &Directory{}
	if err := yaml.UnmarshalStrict(data, d); err != nil {
		return nil, fmt.Errorf("%s: %w (expected keys: superAdmins, users, teams)", DirectoryKey, err)
	}
	var problems []string
	for _, name := range sortedKeys(d.Users) {
		addr, err := mail.ParseAddress(d.Users[name])
		if err != nil || addr.Name != "" || addr.Address != d.Users[name] {
			problems = append(problems, fmt.Sprintf("users.%s: %q is not a plain email address like alice@example.com", name, d.Users[name]))
		}
	}
	for _, u := range d.SuperAdmins {
		if _, ok := d.Users[u]; !ok {
			problems = append(problems, fmt.Sprintf("superAdmins: %q is not in users", u))
		}
	}
	for _, team := range sortedKeys(d.Teams) {
		for _, u := range d.Teams[team] {
			if _, ok := d.Users[u]; !ok {
				problems = append(problems, fmt.Sprintf("teams.%s: %q is not in users", team, u))
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", DirectoryKey, strings.Join(problems, "; "))
	}
	return d, nil
}

// Resolution is who a recipients spec reaches.
type Resolution struct {
	// Recipients sorted by user name, each once.
	Recipients []Recipient
	// UnknownUsers and UnknownTeams are the names the directory lacks.
	UnknownUsers, UnknownTeams []string
}

// Resolve expands recipients of the given kind ("SuperAdmins", "Everyone"
// or "Specific" with users and teams) into users with addresses.
func (d *Directory) Resolve(kind string, users, teams []string) Resolution {
	var res Resolution
	names := map[string]bool{}
	switch kind {
	case "SuperAdmins":
		for _, u := range d.SuperAdmins {
			names[u] = true
		}
	case "Everyone":
		for u := range d.Users {
			names[u] = true
		}
	case "Specific":
		for _, u := range users {
			if _, ok := d.Users[u]; ok {
				names[u] = true
			} else {
				res.UnknownUsers = append(res.UnknownUsers, u)
			}
		}
		for _, t := range teams {
			members, ok := d.Teams[t]
			if !ok {
				res.UnknownTeams = append(res.UnknownTeams, t)
				continue
			}
			for _, u := range members {
				names[u] = true
			}
		}
	}
	for u := range names {
		res.Recipients = append(res.Recipients, Recipient{User: u, Email: d.Users[u]})
	}
	sort.Slice(res.Recipients, func(i, j int) bool { return res.Recipients[i].User < res.Recipients[j].User })
	slices.Sort(res.UnknownUsers)
	slices.Sort(res.UnknownTeams)
	return res
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// String lists what the directory holds, without addresses.
func (r Resolution) String() string {
	var b bytes.Buffer
	for i, rc := range r.Recipients {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(rc.User)
	}
	return b.String()
}
