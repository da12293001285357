package tokenservice

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/valyala/fasthttp"
)

// Error categories of the JSON error body.
const (
	categoryAuthentication = "INVALID_AUTHENTICATION"
	categoryScopes         = "MISSING_SCOPES"
	categoryDisconnected   = "APP_DISCONNECTED"
	categoryRateLimits     = "RATE_LIMITS"
	categoryValidation     = "VALIDATION_ERROR"
	categoryNotFound       = "OBJECT_NOT_FOUND"
	categoryNoRoute        = "NO_ROUTE"
)

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Status        string `json:"status"`
	Message       string `json:"message"`
	Category      string `json:"category"`
	CorrelationID string `json:"correlationId"`
}

// errorJSON is the bytes of an error answer, as writeError writes them.
func errorJSON(category, message, id string) []byte {
	return marshalLine(ErrorBody{Status: "error", Message: message, Category: category, CorrelationID: id})
}

// writeErrorCtx answers an error on fasthttp; id is the call-log entry's
// correlation id when there is one, so the id a client reports finds the
// call.
func writeErrorCtx(ctx *fasthttp.RequestCtx, code int, category, message, id string) {
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBody(errorJSON(category, message, id))
}

// writeError answers an error from a net/http handler (the paths served
// through the adaptor).
func writeError(w http.ResponseWriter, code int, category, message string) {
	writeJSON(w, code, ErrorBody{Status: "error", Message: message, Category: category, CorrelationID: correlationID()})
}

// unauthorized answers a request whose token does not authenticate.
func unauthorized(w http.ResponseWriter, reason, message string) {
	refusals.WithLabelValues(reason).Inc()
	w.Header().Set("WWW-Authenticate", challengeFor(reason))
	writeError(w, http.StatusUnauthorized, categoryAuthentication, message)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// marshalLine is v as json.Encoder writes it: JSON and a newline.
func marshalLine(v any) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

func correlationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
