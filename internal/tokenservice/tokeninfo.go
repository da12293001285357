package tokenservice

import (
	"encoding/json"
	"net/http"
	"time"
)

type tokenInfoRequest struct {
	TokenKey string `json:"tokenKey"`
}

// TokenInfo is the answer of the access-token-info endpoint, in HubSpot's
// shape: userId, hubId and appId are numbers (internal/hubid), absent until
// the controller has given them; the names are the project's own fields.
type TokenInfo struct {
	UserID    int64    `json:"userId,omitempty"`
	HubID     int64    `json:"hubId,omitempty"`
	AppID     int64    `json:"appId,omitempty"`
	Scopes    []string `json:"scopes"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	// UID is the PrivateApp's UID; InstalledBy the user in its status.
	UID         string `json:"uid"`
	InstalledBy string `json:"installedBy,omitempty"`
	TokenType   string `json:"tokenType"`
	ExpiresAt   string `json:"expiresAt,omitempty"`
	// Previous is true for a token kept valid by a grace period.
	Previous bool `json:"previous,omitempty"`
}

// accessTokenInfo answers POST PathAccessTokenInfo: what the token in the
// body is, limited per source like every introspection. The body is at
// most maxBody: the listener refuses a larger one.
func (s *Service) accessTokenInfo(w http.ResponseWriter, r *http.Request) {
	if !s.introspectionAllowed(w, r) {
		return
	}
	var req tokenInfoRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, categoryValidation, `the body must be JSON of the form {"tokenKey": "<token>"}`)
		return
	}
	if req.TokenKey == "" {
		writeError(w, http.StatusBadRequest, categoryValidation, `tokenKey is required: send {"tokenKey": "<token>"}`)
		return
	}
	v := s.validate(req.TokenKey, s.Clock.Now())
	if v.status != statusOK {
		refusals.WithLabelValues(v.reason).Inc()
		category := categoryAuthentication
		if v.status == statusForbidden {
			category = categoryDisconnected
		}
		writeError(w, v.status, category, v.message)
		return
	}
	app := v.match.App
	info := TokenInfo{
		UserID: app.UserID, HubID: app.HubID, AppID: app.AppID, Scopes: app.Scopes,
		Namespace: app.Namespace, Name: app.Name, UID: app.UID, InstalledBy: app.InstalledBy, TokenType: "private-app", Previous: v.match.Previous,
	}
	if exp := v.match.ExpiresAt(); exp != nil {
		info.ExpiresAt = exp.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, info)
}
