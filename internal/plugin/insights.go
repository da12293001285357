package plugin

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
)

var callHeaders = []string{"TIME (UTC)", "METHOD", "CODE", "URL", "DECIDED BY", "LATENCY"}

func callRows(calls []insightsv1alpha1.Call) [][]string {
	var rows [][]string
	for _, c := range calls {
		url := c.RequestURL()
		if len(url) > 80 {
			url = url[:79] + "…"
		}
		latency := "-"
		if c.Latency != nil {
			latency = c.Latency.Duration.String()
		}
		rows = append(rows, []string{c.Time.UTC().Format("2006-01-02 15:04:05.000"), c.Method, fmt.Sprint(c.Code), url, c.Decision(), latency})
	}
	return rows
}

func (e *env) logsCommand() *cobra.Command {
	var method, status, reason, since, until, url string
	var limit int64
	cmd := &cobra.Command{
		Use: "logs APP", Short: "The app's API calls from the call log, newest first",
		Args: oneApp, ValidArgsFunction: e.appNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			fields := client.MatchingFields{"app": args[0], "since": since}
			for k, v := range map[string]string{"method": method, "code": status, "reason": reason, "until": until, "url": url} {
				if v != "" {
					fields[k] = v
				}
			}
			var l insightsv1alpha1.CallList
			if err := e.c.List(cmd.Context(), &l, client.InNamespace(e.namespace), fields, client.Limit(limit)); err != nil {
				return fmt.Errorf("reading the call log: %w", explain(err))
			}
			if done, err := e.emit(l.Items); done {
				return err
			}
			if len(l.Items) == 0 {
				fmt.Fprintf(e.out, "No calls of %s match (since %s).\n", args[0], since)
				return nil
			}
			table(e.out, callHeaders, callRows(l.Items))
			if l.Continue != "" {
				fmt.Fprintf(e.out, "(the newest %d; more with --limit, or narrow with --since/--status)\n", limit)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&method, "method", "", "Only this HTTP method (GET, POST, ...).")
	f.StringVar(&status, "status", "", "Only this response code (404) or class (4xx).")
	f.StringVar(&since, "since", "24h", "From when: a duration before now (15m, 7d) or a time (2026-11-24T08:00:00Z); the log keeps 30 days.")
	f.StringVar(&reason, "reason", "", "Only calls with this reason (missing_scope, rate_limit_app, no_gateway_report, ...).")
	f.StringVar(&until, "until", "", "Until when, as --since.")
	f.StringVar(&url, "url", "", "Only calls whose path and query contain this.")
	f.Int64Var(&limit, "limit", 100, "The most calls to show.")
	return cmd
}

// recordRows are record insights as table rows; without all, the days
// where nothing happened are left out.
func recordRows(items []insightsv1alpha1.RecordInsight, all bool) [][]string {
	var rows [][]string
	for _, r := range items {
		n := func(p *int64) string {
			if p == nil {
				return "-"
			}
			return fmt.Sprint(*p)
		}
		sum := int64(0)
		for _, p := range []*int64{r.Created, r.Updated, r.Deleted, r.Merged} {
			if p != nil {
				sum += *p
			}
		}
		if sum == 0 && !all {
			continue
		}
		rows = append(rows, []string{r.Day, r.RecordType, n(r.Created), n(r.Updated), n(r.Deleted), n(r.Merged)})
	}
	return rows
}

func (e *env) insightsCommand() *cobra.Command {
	var since, recordType, action string
	var all bool
	cmd := &cobra.Command{
		Use: "insights [APP]", Short: "What apps did to records (created, updated, deleted, merged) per UTC day; the namespace's, or one app's",
		Args: cobra.MaximumNArgs(1), ValidArgsFunction: e.appNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			fields := client.MatchingFields{"since": since}
			if len(args) == 1 {
				fields["app"] = args[0]
			}
			if recordType != "" {
				fields["recordType"] = recordType
			}
			if action != "" {
				fields["action"] = action
			}
			var l insightsv1alpha1.RecordInsightList
			if err := e.c.List(cmd.Context(), &l, client.InNamespace(e.listNamespace()), fields); err != nil {
				return fmt.Errorf("reading record insights: %w", explain(err))
			}
			if done, err := e.emit(l.Items); done {
				return err
			}
			rows := recordRows(l.Items, all)
			if len(rows) == 0 {
				fmt.Fprintf(e.out, "No records created, updated, deleted or merged since %s (--all shows the days of zeros).\n", since)
				return nil
			}
			table(e.out, []string{"DAY", "RECORD TYPE", "CREATED", "UPDATED", "DELETED", "MERGED"}, rows)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "7d", "The first UTC day: a day (2026-11-20) or days before today (7d; 0d is today).")
	f.StringVar(&recordType, "type", "", "Only this record type (contacts, deployments.apps, ...).")
	f.StringVar(&action, "action", "", "Only this action: created, updated, deleted or merged.")
	f.BoolVar(&all, "all", false, "Show the days without changes too.")
	return cmd
}

func (e *env) usageCommand() *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use: "usage [APP]", Short: "Calls per UTC day against the account's daily limit, with a chart; the namespace's, or one app's",
		Args: cobra.MaximumNArgs(1), ValidArgsFunction: e.appNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			fields := client.MatchingFields{"since": since}
			if len(args) == 1 {
				fields["app"] = args[0]
			}
			var l insightsv1alpha1.APIUsageList
			if err := e.c.List(cmd.Context(), &l, client.InNamespace(e.namespace), fields); err != nil {
				return fmt.Errorf("reading API usage: %w", explain(err))
			}
			if done, err := e.emit(l.Items); done {
				return err
			}
			var values []int64
			var labels []string
			var limit int64
			var rows [][]string
			for _, u := range l.Items {
				calls, refused := deref(u.Calls), deref(u.Refused)
				values = append(values, calls)
				labels = append(labels, strings.TrimPrefix(u.Day, u.Day[:5]))
				share := "-"
				if u.DailyLimit != nil && *u.DailyLimit > 0 {
					limit = *u.DailyLimit
					share = fmt.Sprintf("%.1f%%", 100*float64(calls)/float64(limit))
				}
				rows = append(rows, []string{u.Day, fmt.Sprint(calls), fmt.Sprint(refused), share})
			}
			who := "the namespace " + e.namespace
			if len(args) == 1 {
				who = args[0]
			}
			fmt.Fprintf(e.out, "Calls per day of %s (UTC):\n", who)
			chart(e.out, values, labels, 6, limit)
			fmt.Fprintln(e.out)
			table(e.out, []string{"DAY", "CALLS", "REFUSED", "OF DAILY LIMIT"}, rows)
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "29d", "The first UTC day, as for insights; status keeps 30 days.")
	return cmd
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
