// Package sqlite keeps the call log in an embedded SQLite database, through
// a pure-Go driver, so the binary stays static and CGO-free. One process
// holds the file: the chart runs the insights component with one replica
// and a PersistentVolumeClaim.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// schemaVersion is kept in PRAGMA user_version; a file written by a newer
// version is refused rather than misread.
const schemaVersion = 3

var migrations = []string{
	`CREATE TABLE calls (
		namespace  TEXT    NOT NULL,
		app        TEXT    NOT NULL,
		day        INTEGER NOT NULL,
		id         TEXT    NOT NULL,
		time_ms    INTEGER NOT NULL,
		method     TEXT    NOT NULL,
		host       TEXT    NOT NULL,
		path       TEXT    NOT NULL,
		query      TEXT    NOT NULL,
		route      TEXT    NOT NULL,
		code       INTEGER NOT NULL,
		decided_by TEXT    NOT NULL,
		reason     TEXT    NOT NULL,
		latency_us INTEGER NOT NULL,
		source     TEXT    NOT NULL,
		final      INTEGER NOT NULL,
		PRIMARY KEY (namespace, app, day, id)
	);
	CREATE INDEX calls_by_app  ON calls (namespace, app, time_ms DESC, id DESC);
	CREATE INDEX calls_by_namespace ON calls (namespace, time_ms DESC, id DESC);
	CREATE INDEX calls_by_time ON calls (time_ms DESC, id DESC);
	CREATE INDEX calls_by_day  ON calls (day);`,
	// Record insights: what a successful call does to a record. Only such
	// calls are in the index, so counting a month reads no other row.
	`ALTER TABLE calls ADD COLUMN record_type TEXT NOT NULL DEFAULT '';
	ALTER TABLE calls ADD COLUMN record_action TEXT NOT NULL DEFAULT '';
	CREATE INDEX calls_records ON calls (namespace, app, day, record_type, record_action, code) WHERE record_type <> '';`,
	// Gateway reports: the allowed checks whose gateway's report is
	// awaited are the only rows in the index, so the sweep that marks the
	// overdue ones reads nothing else.
	`ALTER TABLE calls ADD COLUMN gateway TEXT NOT NULL DEFAULT '';
	CREATE INDEX calls_awaiting_report ON calls (time_ms) WHERE final = 0 AND gateway <> '' AND reason = 'allowed';`,
}

// upsert merges a report into the entry of the same call by the rules of
// calllog.Merge.
const upsert = `INSERT INTO calls (namespace, app, day, id, time_ms, method, host, path, query, route, code, decided_by, reason, latency_us, source, final, record_type, record_action, gateway)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (namespace, app, day, id) DO UPDATE SET
	code       = CASE WHEN NOT calls.final AND excluded.final THEN excluded.code ELSE calls.code END,
	decided_by = CASE WHEN NOT calls.final AND excluded.final THEN excluded.decided_by ELSE calls.decided_by END,
	reason     = CASE WHEN NOT calls.final AND excluded.final THEN excluded.reason ELSE calls.reason END,
	source     = CASE WHEN NOT calls.final AND excluded.final THEN excluded.source ELSE calls.source END,
	latency_us = CASE WHEN NOT calls.final AND excluded.final AND excluded.latency_us > 0 THEN excluded.latency_us
	                  WHEN calls.latency_us = 0 THEN excluded.latency_us ELSE calls.latency_us END,
	final      = calls.final OR excluded.final,
	time_ms    = MIN(calls.time_ms, excluded.time_ms),
	method     = CASE WHEN calls.method = '' THEN excluded.method ELSE calls.method END,
	host       = CASE WHEN calls.host = '' THEN excluded.host ELSE calls.host END,
	path       = CASE WHEN calls.path = '' THEN excluded.path ELSE calls.path END,
	query      = CASE WHEN calls.query = '' THEN excluded.query ELSE calls.query END,
	route      = CASE WHEN calls.route = '' THEN excluded.route ELSE calls.route END,
	gateway    = CASE WHEN calls.gateway = '' THEN excluded.gateway ELSE calls.gateway END,
	record_action = CASE WHEN calls.record_type = '' THEN excluded.record_action ELSE calls.record_action END,
	record_type   = CASE WHEN calls.record_type = '' THEN excluded.record_type ELSE calls.record_type END`

const columns = `namespace, app, id, time_ms, method, host, path, query, route, code, decided_by, reason, latency_us, source, final, record_type, record_action, gateway`

// Store is a call log in one SQLite file.
type Store struct {
	db     *sql.DB
	closed atomic.Bool
}

var _ calllog.Store = (*Store)(nil)

// Open opens (creating when missing) the database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("call log: %w", err)
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + url.Values{"_pragma": {
		"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(NORMAL)", "foreign_keys(ON)",
		// 64 MiB of page cache per connection: the indexes of a busy log do
		// not fit the default 2 MiB, and every insert touches five B-trees.
		"cache_size(-65536)",
	}, "_txlock": {"immediate"}}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("call log: opening %s: %w", path, err)
	}
	// One writer at a time is SQLite's own rule; readers share the WAL.
	db.SetMaxOpenConns(4)
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("call log: %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	var v int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("the database has schema version %d, newer than this operator's %d: run the newer operator, or move the file away", v, schemaVersion)
	}
	for ; v < schemaVersion; v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrating to schema version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Write stores a batch in one transaction.
func (s *Store) Write(ctx context.Context, entries []calllog.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("call log: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	st, err := tx.PrepareContext(ctx, upsert)
	if err != nil {
		return fmt.Errorf("call log: %w", err)
	}
	defer st.Close()
	for i := range entries {
		e := &entries[i]
		day, err := keptDay(ctx, tx, e)
		if err != nil {
			return fmt.Errorf("call log: %w", err)
		}
		if _, err := st.ExecContext(ctx, e.Namespace, e.App, day, e.ID, e.Time.UnixMilli(), e.Method, e.Host, e.Path, e.Query,
			e.Route, e.Code, e.DecidedBy, e.Reason, e.Latency.Microseconds(), e.Source, e.Final, e.RecordType, e.RecordAction, e.Gateway); err != nil {
			return fmt.Errorf("call log: writing an entry: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("call log: %w", err)
	}
	return nil
}

// keptDay is the day e's call is kept under: its own, or, near midnight,
// the neighbouring day's when a report of the call is kept there.
func keptDay(ctx context.Context, tx *sql.Tx, e *calllog.Entry) (int64, error) {
	other, near := e.NeighbourDay()
	if !near {
		return e.Day(), nil
	}
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM calls WHERE namespace = ? AND app = ? AND day = ? AND id = ?", e.Namespace, e.App, other, e.ID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return e.Day(), nil
	case err != nil:
		return 0, err
	}
	return other, nil
}

// List answers a query, newest first.
func (s *Store) List(ctx context.Context, q calllog.Query) (calllog.Page, error) {
	if err := q.Check(); err != nil {
		return calllog.Page{}, err
	}
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
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
		add("time_ms >= ?", q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		add("time_ms < ?", q.To.UnixMilli())
	}
	if q.URLContains != "" {
		add("instr(path || '?' || query, ?) > 0", q.URLContains)
	}
	if q.Reason != "" {
		add("reason = ?", q.Reason)
	}
	if q.Continue != "" {
		c, _ := calllog.DecodeCursor(q.Continue)
		add("(time_ms, id, namespace, app) < (?, ?, ?, ?)", c.TimeMillis, c.ID, c.Namespace, c.App)
	}
	// Only fixed fragments with ? placeholders are joined; values are
	// arguments.
	stmt := "SELECT " + columns + " FROM calls"
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ") //nolint:gosec // G202: see above
	}
	stmt += " ORDER BY time_ms DESC, id DESC, namespace DESC, app DESC LIMIT ?"
	args = append(args, q.Limit+1)
	rows, err := s.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return calllog.Page{}, fmt.Errorf("call log: %w", err)
	}
	defer rows.Close()
	var page calllog.Page
	for rows.Next() {
		var e calllog.Entry
		var ms, latency int64
		if err := rows.Scan(&e.Namespace, &e.App, &e.ID, &ms, &e.Method, &e.Host, &e.Path, &e.Query, &e.Route, &e.Code,
			&e.DecidedBy, &e.Reason, &latency, &e.Source, &e.Final, &e.RecordType, &e.RecordAction, &e.Gateway); err != nil {
			return calllog.Page{}, fmt.Errorf("call log: %w", err)
		}
		e.Time, e.Latency = time.UnixMilli(ms).UTC(), time.Duration(latency)*time.Microsecond
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
	where := []string{"record_type <> ''", "record_action <> ''", "code BETWEEN 200 AND 299", "day BETWEEN ? AND ?"}
	args := []any{q.FromDay, q.ToDay}
	for _, f := range []struct{ col, v string }{{"namespace", q.Namespace}, {"app", q.App}, {"record_type", q.RecordType}, {"record_action", q.Action}} {
		if f.v != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.v)
		}
	}
	// Only fixed fragments with ? placeholders are joined; values are
	// arguments.
	stmt := "SELECT namespace, app, day, record_type, record_action, count(*) FROM calls WHERE " + strings.Join(where, " AND ") + //nolint:gosec // G202: see above
		" GROUP BY namespace, app, day, record_type, record_action ORDER BY namespace, app, day, record_type, record_action"
	rows, err := s.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("call log: counting records: %w", err)
	}
	defer rows.Close()
	var out []calllog.RecordCount
	for rows.Next() {
		var c calllog.RecordCount
		if err := rows.Scan(&c.Namespace, &c.App, &c.Day, &c.RecordType, &c.Action, &c.Count); err != nil {
			return nil, fmt.Errorf("call log: counting records: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("call log: counting records: %w", err)
	}
	return out, nil
}

// DropBefore deletes the entries of the days before day.
func (s *Store) DropBefore(ctx context.Context, day int64) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM calls WHERE day < ?", day); err != nil {
		return fmt.Errorf("call log: dropping days before %s: %w", calllog.StartOfDay(day).Format(time.DateOnly), err)
	}
	return nil
}

// MarkUnreported marks the allowed checks whose gateway's report is
// overdue.
func (s *Store) MarkUnreported(ctx context.Context, before time.Time) (map[string]int, error) {
	// The conditions repeat calls_awaiting_report's, as constants, so that
	// SQLite uses the index.
	rows, err := s.db.QueryContext(ctx, `UPDATE calls SET reason = 'no_gateway_report'
		WHERE final = 0 AND gateway <> '' AND reason = 'allowed' AND time_ms < ? RETURNING gateway`, before.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("call log: marking calls without a gateway report: %w", err)
	}
	defer rows.Close()
	return calllog.CountGateways(rows)
}

// Close closes the database.
// Writes and reads after Close fail with database/sql's "database is
// closed"; they never reach a nil handle.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return errors.New("call log: closed twice")
	}
	return s.db.Close()
}
