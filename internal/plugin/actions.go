package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// waitFor polls until done reports true, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting until %s; is the operator running? (kubectl get pods -A -l app.kubernetes.io/name=privateapp-operator)", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (e *env) rotateCommand() *cobra.Command {
	var now, later bool
	var grace time.Duration
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate APP (--now | --later [--grace 168h])",
		Short: "Rotate the app's token: --now revokes every token at once (a leak), --later keeps the old one for a grace period",
		Args:  oneApp, ValidArgsFunction: e.appNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if now == later {
				return usageErr("say --now (the old token stops working at once: for a leaked token) or --later (it keeps working for --grace)")
			}
			if now && cmd.Flags().Changed("grace") {
				return usageErr("--grace goes with --later: --now revokes the old token at once")
			}
			ctx := cmd.Context()
			app, err := e.getApp(ctx, args[0])
			if err != nil {
				return err
			}
			before := ""
			if app.Status.Token != nil {
				before = app.Status.Token.Digest
			}
			r := &v1alpha1.TokenRotation{
				ObjectMeta: metav1.ObjectMeta{Namespace: app.Namespace, GenerateName: app.Name + "-"},
				Spec:       v1alpha1.TokenRotationSpec{AppName: app.Name, Strategy: v1alpha1.RotationImmediate},
			}
			if later {
				r.Spec.Strategy = v1alpha1.RotationDelayed
				if cmd.Flags().Changed("grace") {
					r.Spec.GracePeriod = &metav1.Duration{Duration: grace}
				}
			}
			if err := e.c.Create(ctx, r); err != nil {
				return fmt.Errorf("creating a TokenRotation for %s: %w", app.Name, explain(err))
			}
			fmt.Fprintf(e.out, "tokenrotation/%s created (%s)\n", r.Name, r.Spec.Strategy)
			want := v1alpha1.RotationCompleted
			if later {
				want = v1alpha1.RotationGracePeriod
			}
			if err := e.waitRotation(ctx, r, timeout, want); err != nil {
				return err
			}
			app, err = e.getApp(ctx, app.Name)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%s has a new token %s… (was %s…); its Secret %s holds it.\n", app.Name, digestPrefix(app.Status.Token.Digest), digestPrefix(before), app.TokenSecretName())
			if later && r.Status.OldTokenExpiresAt != nil {
				fmt.Fprintf(e.out, "The old token keeps working until %s (key previous-token). End it sooner: kubectl privateapp rotation expire-now %s\n",
					when(r.Status.OldTokenExpiresAt.Time, e.now()), app.Name)
			} else {
				fmt.Fprintln(e.out, "Every earlier token of the app is revoked.")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&now, "now", false, "Revoke every token of the app at once and issue a new one.")
	cmd.Flags().BoolVar(&later, "later", false, "Issue a new token and keep the old one working for --grace.")
	cmd.Flags().DurationVar(&grace, "grace", 168*time.Hour, "With --later: how long the old token keeps working.")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "How long to wait for the operator.")
	return cmd
}

// waitRotation waits until the rotation reaches want, and says so when it
// fails instead.
func (e *env) waitRotation(ctx context.Context, r *v1alpha1.TokenRotation, timeout time.Duration, want v1alpha1.RotationPhase) error {
	return waitFor(ctx, timeout, fmt.Sprintf("tokenrotation/%s is %s", r.Name, want), func() (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
			return false, explain(err)
		}
		switch r.Status.Phase {
		case want:
			return true, nil
		case v1alpha1.RotationFailed, v1alpha1.RotationSuperseded:
			msg := ""
			for _, c := range r.Status.Conditions {
				if c.Type == v1alpha1.ConditionReady {
					msg = c.Reason + ": " + c.Message
				}
			}
			return false, fmt.Errorf("tokenrotation/%s is %s: %s", r.Name, r.Status.Phase, msg)
		}
		return false, nil
	})
}

// inGracePeriod finds the TokenRotation whose grace period keeps the app's
// old token valid.
func (e *env) inGracePeriod(ctx context.Context, name string) (*v1alpha1.TokenRotation, error) {
	app, err := e.getApp(ctx, name)
	if err != nil {
		return nil, err
	}
	if app.Status.Token == nil || app.Status.Token.Previous == nil || app.Status.Token.Previous.Rotation == "" {
		return nil, fmt.Errorf("%s has no rotation in its grace period; `kubectl privateapp describe %s` shows its tokens", name, name)
	}
	r := &v1alpha1.TokenRotation{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.Token.Previous.Rotation}, r); err != nil {
		return nil, explain(err)
	}
	return r, nil
}

func (e *env) rotationCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{Use: "rotation", Short: "Act on a rotation in its grace period"}
	patch := func(use, short, field string, want v1alpha1.RotationPhase, done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " APP", Short: short, Args: oneApp, ValidArgsFunction: e.appNames,
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx := cmd.Context()
				r, err := e.inGracePeriod(ctx, args[0])
				if err != nil {
					return err
				}
				p := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"`+field+`":true}}`))
				if err := e.c.Patch(ctx, r, p); err != nil {
					return fmt.Errorf("patching tokenrotation/%s: %w", r.Name, explain(err))
				}
				if err := e.waitRotation(ctx, r, timeout, want); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "tokenrotation/%s is %s: %s\n", r.Name, r.Status.Phase, done)
				return nil
			},
		}
	}
	cmd.AddCommand(
		patch("expire-now", "End the grace period now: the old token stops working", "expireOldTokenNow", v1alpha1.RotationCompleted,
			"the old token no longer works"),
		patch("cancel", "Cancel the rotation: the old token is the current one again and the new one is revoked", "cancel", v1alpha1.RotationCancelled,
			"the old token is the current one again; the new one is revoked"),
	)
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", time.Minute, "How long to wait for the operator.")
	return cmd
}

func (e *env) suspendCommand(suspend bool) *cobra.Command {
	use, short, want := "reconnect", "Reconnect the app: its tokens work again", v1alpha1.ConnectionConnected
	if suspend {
		use, short, want = "suspend", "Disconnect the app: its tokens are refused until it is reconnected", v1alpha1.ConnectionDisconnected
	}
	var timeout time.Duration
	cmd := &cobra.Command{
		Use: use + " APP", Short: short, Args: oneApp, ValidArgsFunction: e.appNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			app, err := e.getApp(ctx, args[0])
			if err != nil {
				return err
			}
			if app.Spec.Suspend == suspend && app.Status.Connection == want {
				fmt.Fprintf(e.out, "%s is already %s; nothing changed.\n", app.Name, want)
				return nil
			}
			p := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"suspend":%t}}`, suspend)))
			if err := e.c.Patch(ctx, app, p); err != nil {
				return fmt.Errorf("patching privateapp/%s: %w", app.Name, explain(err))
			}
			if err := waitFor(ctx, timeout, fmt.Sprintf("%s is %s", app.Name, want), func() (bool, error) {
				if err := e.c.Get(ctx, client.ObjectKeyFromObject(app), app); err != nil {
					return false, explain(err)
				}
				return app.Status.Connection == want, nil
			}); err != nil {
				return err
			}
			if suspend {
				fmt.Fprintf(e.out, "%s is Disconnected: its tokens are refused. Reconnect: kubectl privateapp reconnect %s\n", app.Name, app.Name)
			} else {
				fmt.Fprintf(e.out, "%s is Connected: its tokens work again (the same tokens).\n", app.Name)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "How long to wait for the operator.")
	return cmd
}
