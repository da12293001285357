package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Taker is what the token service asks: one more call, or not.
type Taker interface {
	Take(app, account string, lim Limits, now time.Time) Decision
	Forget(app string)
	// Count counts a call in the account's day that no limit may refuse
	// (an authentication by the kube-apiserver, which has fairness of its
	// own), so the day's count holds every validated call.
	Count(account string, now time.Time)
	// Used is how many calls the account made on the UTC day of now, as
	// the limits count them; cached is true when the shared count did not
	// answer and the number is this replica's last knowledge of it.
	Used(account string, now time.Time) (calls int64, cached bool)
}

// takeScript checks both limits and counts the call in one atomic step, so
// replicas racing for the last call of a window cannot both get it. It
// returns {refusal, app count, account count}; a refused call counts
// nowhere, as with Limiter.
var takeScript = redis.NewScript(`
local a = tonumber(redis.call('GET', KEYS[1]) or '0')
local d = tonumber(redis.call('GET', KEYS[2]) or '0')
if d >= tonumber(ARGV[2]) then return {2, a, d} end
if a >= tonumber(ARGV[1]) then return {1, a, d} end
a = redis.call('INCR', KEYS[1])
if a == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
d = redis.call('INCR', KEYS[2])
if d == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {0, a, d}
`)

// Shared counts calls in Redis, so every token-service replica draws from
// the same window per app and the same day per account. Windows and days
// are named by their start, computed from each replica's clock: replicas
// whose clocks differ by more than a little share less exactly.
//
// When Redis does not answer within Timeout, the call is decided by Local,
// this replica's own counters, and OnError is told: the token service keeps
// answering, and the limits hold per replica until Redis is back. Local
// keeps each account's day at the count Redis last answered, so a replica
// that falls back allows what was left of the day then (each replica: N
// replicas together allow up to N times that), not a fresh day.
type Shared struct {
	Client  redis.UniversalClient
	Prefix  string
	Timeout time.Duration
	Local   *Limiter
	OnError func(error)
	// OnSuccess, when set, is told each time Redis answered.
	OnSuccess func()
}

// Take counts one call by app in account at now, if the limits allow it.
func (s *Shared) Take(app, account string, lim Limits, now time.Time) Decision {
	winStart, dayStart := periods(now)
	keys := []string{
		fmt.Sprintf("%s:app:%s:%d", s.Prefix, app, winStart.Unix()),
		s.accountKey(account, now),
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	// Keys outlive their window or day a little, for clocks slightly behind.
	res, err := takeScript.Run(ctx, s.Client, keys, lim.PerWindow, lim.PerDay,
		(2 * Window).Milliseconds(), (25 * time.Hour).Milliseconds()).Int64Slice()
	if err != nil || len(res) != 3 {
		if err == nil {
			err = fmt.Errorf("unexpected answer %v", res)
		}
		if s.OnError != nil {
			s.OnError(err)
		}
		return s.Local.Take(app, account, lim, now)
	}
	s.Local.Seed(account, res[2], now)
	if s.OnSuccess != nil {
		s.OnSuccess()
	}
	return decision(Refusal(res[0]), res[1], res[2], lim, winStart, dayStart, now)
}

// countScript counts one call in the account's day, refusing nothing.
var countScript = redis.NewScript(`
local d = redis.call('INCR', KEYS[1])
if d == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return d
`)

// Count counts a call that no limit refuses in the account's shared day;
// when Redis does not answer, in this replica's.
func (s *Shared) Count(account string, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	n, err := countScript.Run(ctx, s.Client, []string{s.accountKey(account, now)}, (25 * time.Hour).Milliseconds()).Int64()
	if err != nil {
		if s.OnError != nil {
			s.OnError(err)
		}
		s.Local.Count(account, now)
		return
	}
	s.Local.Seed(account, n, now)
}

// Used reads the account's count for the day from Redis; when Redis does
// not answer, this replica's count, which holds Redis's last answer.
func (s *Shared) Used(account string, now time.Time) (int64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	n, err := s.Client.Get(ctx, s.accountKey(account, now)).Int64()
	switch {
	case errors.Is(err, redis.Nil):
		n = 0
	case err != nil:
		if s.OnError != nil {
			s.OnError(err)
		}
		calls, _ := s.Local.Used(account, now)
		return calls, true
	}
	s.Local.Seed(account, n, now)
	return n, false
}

func (s *Shared) accountKey(account string, now time.Time) string {
	_, dayStart := periods(now)
	return fmt.Sprintf("%s:account:%s:%s", s.Prefix, account, dayStart.Format("20060102"))
}

// Forget drops the app's local window; its Redis keys expire by themselves.
func (s *Shared) Forget(app string) { s.Local.Forget(app) }
