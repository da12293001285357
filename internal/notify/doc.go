// Package notify turns app lifecycle events into messages and delivers them:
// by email over SMTP and as a JSON webhook signed with HMAC-SHA256. It also
// holds the recipients directory and the reminder schedule. It knows nothing
// of Kubernetes; the AppNotification controller decides what to send and
// records what was sent.
package notify
