// Package postgres keeps the call log in PostgreSQL, for several
// replicas of the insights component: the schema is migrated on start
// (under an advisory lock, so replicas take turns), calls are partitioned
// by UTC day, and retention drops whole partitions.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// migrationLock is the advisory lock key under which the schema changes.
const migrationLock = 0x70617070 // "papp"

// migrations bring the schema to each version in turn. Text keys are
// compared in the "C" collation: byte order, as the paging cursor and
// every other backend order them.
var migrations = []string{
	`CREATE TABLE calls (
		namespace  text COLLATE "C" NOT NULL,
		app        text COLLATE "C" NOT NULL,
		day        integer NOT NULL,
		id         text COLLATE "C" NOT NULL,
		time_ms    bigint  NOT NULL,
		method     text    NOT NULL,
		host       text    NOT NULL,
		path       text    NOT NULL,
		query      text    NOT NULL,
		route      text    NOT NULL,
		code       smallint NOT NULL,
		decided_by text    NOT NULL,
		reason     text    NOT NULL,
		latency_us bigint  NOT NULL,
		source     text    NOT NULL,
		final      boolean NOT NULL,
		PRIMARY KEY (namespace, app, day, id)
	) PARTITION BY RANGE (day);
	CREATE INDEX calls_by_app ON calls (namespace, app, time_ms DESC, id DESC);
	CREATE INDEX calls_by_namespace ON calls (namespace, time_ms DESC, id DESC);
	CREATE INDEX calls_by_time ON calls (time_ms DESC, id DESC);`,
	// An owner's usual question, "which calls of this app failed",
	// matches about one call in a hundred: read those from an index
	// keyed by code instead of fetching every call of the app's month
	// from the heap to test its code (p99 217 ms over 10 million
	// entries before, see docs/benchmarks.md).
	`CREATE INDEX calls_by_app_code ON calls (namespace, app, code, time_ms DESC, id DESC);`,
	// Record insights: what a successful call does to a record. Only such
	// calls are in the index, so counting a month reads no other row.
	`ALTER TABLE calls ADD COLUMN record_type text COLLATE "C" NOT NULL DEFAULT '';
	ALTER TABLE calls ADD COLUMN record_action text COLLATE "C" NOT NULL DEFAULT '';
	CREATE INDEX calls_records ON calls (namespace, app, day, record_type, record_action, code) WHERE record_type <> '';`,
	// Gateway reports: the allowed checks whose gateway's report is
	// awaited are the only rows in the index, so the sweep that marks the
	// overdue ones reads nothing else.
	`ALTER TABLE calls ADD COLUMN gateway text NOT NULL DEFAULT '';
	CREATE INDEX calls_awaiting_report ON calls (time_ms) WHERE NOT final AND gateway <> '' AND reason = 'allowed';`,
}

const upsert = `INSERT INTO calls AS c (namespace, app, day, id, time_ms, method, host, path, query, route, code, decided_by, reason, latency_us, source, final, record_type, record_action, gateway)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
ON CONFLICT (namespace, app, day, id) DO UPDATE SET
	code       = CASE WHEN NOT c.final AND excluded.final THEN excluded.code ELSE c.code END,
	decided_by = CASE WHEN NOT c.final AND excluded.final THEN excluded.decided_by ELSE c.decided_by END,
	reason     = CASE WHEN NOT c.final AND excluded.final THEN excluded.reason ELSE c.reason END,
	source     = CASE WHEN NOT c.final AND excluded.final THEN excluded.source ELSE c.source END,
	latency_us = CASE WHEN NOT c.final AND excluded.final AND excluded.latency_us > 0 THEN excluded.latency_us
	                  WHEN c.latency_us = 0 THEN excluded.latency_us ELSE c.latency_us END,
	final      = c.final OR excluded.final,
	time_ms    = LEAST(c.time_ms, excluded.time_ms),
	method     = CASE WHEN c.method = '' THEN excluded.method ELSE c.method END,
	host       = CASE WHEN c.host = '' THEN excluded.host ELSE c.host END,
	path       = CASE WHEN c.path = '' THEN excluded.path ELSE c.path END,
	query      = CASE WHEN c.query = '' THEN excluded.query ELSE c.query END,
	route      = CASE WHEN c.route = '' THEN excluded.route ELSE c.route END,
	gateway    = CASE WHEN c.gateway = '' THEN excluded.gateway ELSE c.gateway END,
	record_action = CASE WHEN c.record_type = '' THEN excluded.record_action ELSE c.record_action END,
	record_type   = CASE WHEN c.record_type = '' THEN excluded.record_type ELSE c.record_type END`

const columns = `namespace, app, id, time_ms, method, host, path, query, route, code, decided_by, reason, latency_us, source, final, record_type, record_action, gateway`

// Store is a call log in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool

	mu   sync.Mutex
	days map[int64]bool // partitions known to exist
}

var _ calllog.Store = (*Store)(nil)

// Open connects (dsn is a libpq connection string or URL) and migrates the
// schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's error quotes the string, password and all.
		return nil, errors.New("call log: the PostgreSQL connection string does not parse; see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("call log: %w", err)
	}
	s := &Store{pool: pool, days: map[int64]bool{}}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("call log: migrating PostgreSQL: %w", err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS privateapps_schema (version integer NOT NULL)"); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM privateapps_schema").Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("the database has schema version %d, newer than this operator's %d: run the newer operator", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("to version %d: %w", v+1, err)
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM privateapps_schema"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO privateapps_schema VALUES ($1)", v)
		return err
	})
}

func partition(day int64) string { return "calls_" + calllog.StartOfDay(day).Format("20060102") }

// ensurePartitions creates the partitions of the days entries fall on.
func (s *Store) ensurePartitions(ctx context.Context, entries []calllog.Entry) error {
	s.mu.Lock()
	var missing []int64
	for i := range entries {
		if d := entries[i].Day(); !s.days[d] && !contains(missing, d) {
			missing = append(missing, d)
		}
	}
	s.mu.Unlock()
	for _, d := range missing {
		stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF calls FOR VALUES FROM (%d) TO (%d)", partition(d), d, d+1)
		_, err := s.pool.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		// Two replicas creating the same partition: the loser sees a
		// unique violation on the catalog, and the partition exists.
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "23505") {
			return fmt.Errorf("call log: creating the partition of %s: %w", calllog.StartOfDay(d).Format(time.DateOnly), err)
		}
		s.mu.Lock()
		s.days[d] = true
		s.mu.Unlock()
	}
	return nil
}

func contains(days []int64, d int64) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}

// Write stores a batch in one transaction. A row that PostgreSQL refuses
// (a data exception: a value out of range, bytes that are not UTF-8) does
// not hold back the others: the batch is then written row by row, and each
// refused row is dropped and counted (reason refused_by_store), since
// retrying it would fail forever and stop the log.
func (s *Store) Write(ctx context.Context, entries []calllog.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := s.ensurePartitions(ctx, entries); err != nil {
		return err
	}
	err := s.write(ctx, entries)
	if !s.refusedRow(ctx, err) {
		return err
	}
	for i := range entries {
		// Upserts merge: rows written again are the same calls.
		err := s.write(ctx, entries[i:i+1])
		switch {
		case s.refusedRow(ctx, err):
			calllog.Dropped.WithLabelValues(calllog.DropRefusedByStore).Inc()
		case err != nil:
			return err
		}
	}
	return nil
}

// refusedRow reports whether err is a refusal of a row's values, not the
// database being unavailable or busy: a data exception (SQLSTATE class
// 22) or an integrity violation (23, but for a partition dropped under
// the write), or an error pgx gave before the server saw the row (a value
// it cannot encode) while the database answers.
func (s *Store) refusedRow(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23") && pgErr.Code != "23514"
	}
	var netErr net.Error
	return !errors.As(err, &netErr) && !pgconn.Timeout(err) && s.pool.Ping(ctx) == nil
}

func (s *Store) write(ctx context.Context, entries []calllog.Entry) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Entries near a UTC midnight may merge into a report of their call
		// kept under the neighbouring day: they are written one by one
		// after the others (rare: two minutes a day), in their order.
		var nearMidnight []*calllog.Entry
		b := &pgx.Batch{}
		for i := range entries {
			e := &entries[i]
			if _, near := e.NeighbourDay(); near {
				nearMidnight = append(nearMidnight, e)
				continue
			}
			b.Queue(upsert, upsertArgs(e, e.Day())...)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		for _, e := range nearMidnight {
			day := e.Day()
			other, _ := e.NeighbourDay()
			var one int
			err := tx.QueryRow(ctx, "SELECT 1 FROM calls WHERE namespace = $1 AND app = $2 AND day = $3 AND id = $4", e.Namespace, e.App, other, e.ID).Scan(&one)
			switch {
			case err == nil:
				day = other
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			if _, err := tx.Exec(ctx, upsert, upsertArgs(e, day)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23514" {
			// A partition was dropped under us (retention on another
			// replica): forget what we knew and let the queue retry.
			s.mu.Lock()
			s.days = map[int64]bool{}
			s.mu.Unlock()
		}
		return fmt.Errorf("call log: writing %d entries: %w", len(entries), err)
	}
	return nil
}

// upsertArgs are the arguments of upsert for e, kept under day.
func upsertArgs(e *calllog.Entry, day int64) []any {
	return []any{e.Namespace, e.App, day, e.ID, e.Time.UnixMilli(), e.Method, e.Host, e.Path, e.Query,
		e.Route, e.Code, e.DecidedBy, e.Reason, e.Latency.Microseconds(), e.Source, e.Final, e.RecordType, e.RecordAction, e.Gateway}
}

// List answers a query, newest first.
func (s *Store) List(ctx context.Context, q calllog.Query) (calllog.Page, error) {
	if err := q.Check(); err != nil {
		return calllog.Page{}, err
	}
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		for _, v := range a {
			args = append(args, v)
			cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1)
		}
		where = append(where, cond)
	}
	if q.Namespace != "" {
		add("namespace = ?", q.Namespace)
	}
	if q.App != "" {
		add("app = ?", q.App)
	}
	if q.Method != "" {
		add("method = ?", q.Method)
	}
	if q.Code != 0 {
		add("code = ?", q.Code)
	}
	if q.CodeClass != 0 {
		add("code BETWEEN ? AND ?", q.CodeClass*100, q.CodeClass*100+99)
	}
	if !q.From.IsZero() {
		// The day bound lets PostgreSQL skip whole partitions.
		add("day >= ? AND time_ms >= ?", calllog.DayOf(q.From), q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		add("day <= ? AND time_ms < ?", calllog.DayOf(q.To), q.To.UnixMilli())
	}
	if q.URLContains != "" {
		args = append(args, q.URLContains)
		where = append(where, "strpos(path || '?' || query, $"+strconv.Itoa(len(args))+") > 0")
	}
	if q.Reason != "" {
		add("reason = ?", q.Reason)
	}
	if q.Continue != "" {
		c, _ := calllog.DecodeCursor(q.Continue)
		add("(time_ms, id, namespace, app) < (?, ?, ?, ?)", c.TimeMillis, c.ID, c.Namespace, c.App)
	}
	stmt := "SELECT " + columns + " FROM calls"
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, q.Limit+1)
	stmt += " ORDER BY time_ms DESC, id DESC, namespace DESC, app DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, stmt, args...)
	if err != nil {
		return calllog.Page{}, fmt.Errorf("call log: %w", err)
	}
	defer rows.Close()
	var page calllog.Page
	for rows.Next() {
		var e calllog.Entry
		var ms, latency int64
		var code int16
		if err := rows.Scan(&e.Namespace, &e.App, &e.ID, &ms, &e.Method, &e.Host, &e.Path, &e.Query, &e.Route, &code,
			&e.DecidedBy, &e.Reason, &latency, &e.Source, &e.Final, &e.RecordType, &e.RecordAction, &e.Gateway); err != nil {
			return calllog.Page{}, fmt.Errorf("call log: %w", err)
		}
		e.Code, e.Time, e.Latency = int(code), time.UnixMilli(ms).UTC(), time.Duration(latency)*time.Microsecond
		page.Entries = append(page.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return calllog.Page{}, fmt.Errorf("call log: %w", err)
	}
	if len(page.Entries) > q.Limit {
		page.Entries = page.Entries[:q.Limit]
		page.Continue = calllog.EncodeCursor(page.Entries[q.Limit-1])
	}
	return page, nil
}

// CountRecords counts successful record calls by app, day, type and action.
func (s *Store) CountRecords(ctx context.Context, q calllog.RecordQuery) ([]calllog.RecordCount, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	// The day bounds let PostgreSQL skip whole partitions.
	where := []string{"record_type <> ''", "record_action <> ''", "code BETWEEN 200 AND 299", "day BETWEEN $1 AND $2"}
	args := []any{q.FromDay, q.ToDay}
	for _, f := range []struct{ col, v string }{{"namespace", q.Namespace}, {"app", q.App}, {"record_type", q.RecordType}, {"record_action", q.Action}} {
		if f.v != "" {
			args = append(args, f.v)
			where = append(where, f.col+" = $"+strconv.Itoa(len(args)))
		}
	}
	rows, err := s.pool.Query(ctx, "SELECT namespace, app, day, record_type, record_action, count(*) FROM calls WHERE "+strings.Join(where, " AND ")+
		" GROUP BY namespace, app, day, record_type, record_action ORDER BY namespace, app, day, record_type, record_action", args...)
	if err != nil {
		return nil, fmt.Errorf("call log: counting records: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (calllog.RecordCount, error) {
		var c calllog.RecordCount
		var day int32
		err := row.Scan(&c.Namespace, &c.App, &day, &c.RecordType, &c.Action, &c.Count)
		c.Day = int64(day)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("call log: counting records: %w", err)
	}
	return out, nil
}

// DropBefore drops the partitions of the days before day.
func (s *Store) DropBefore(ctx context.Context, day int64) error {
	rows, err := s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'calls'`)
	if err != nil {
		return fmt.Errorf("call log: listing partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("call log: listing partitions: %w", err)
	}
	for _, name := range names {
		t, err := time.Parse("20060102", strings.TrimPrefix(name, "calls_"))
		if err != nil || calllog.DayOf(t) >= day {
			continue
		}
		if _, err := s.pool.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("call log: dropping %s: %w", name, err)
		}
		s.mu.Lock()
		delete(s.days, calllog.DayOf(t))
		s.mu.Unlock()
	}
	return nil
}

// MarkUnreported marks the allowed checks whose gateway's report is
// overdue. Two replicas marking at once do not count an entry twice: the
// second waits for the first's row lock and then finds the reason changed.
func (s *Store) MarkUnreported(ctx context.Context, before time.Time) (map[string]int, error) {
	// The conditions repeat calls_awaiting_report's, as constants, so that
	// PostgreSQL uses the index; the day bound skips later partitions.
	rows, err := s.pool.Query(ctx, `UPDATE calls SET reason = 'no_gateway_report'
		WHERE NOT final AND gateway <> '' AND reason = 'allowed' AND day <= $1 AND time_ms < $2 RETURNING gateway`,
		calllog.DayOf(before), before.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("call log: marking calls without a gateway report: %w", err)
	}
	defer rows.Close()
	return calllog.CountGateways(rows)
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
