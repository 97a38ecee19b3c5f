package hsm

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Command runs `keyhold hsm <sub> ...`, the HSM owner's tools, run on the
// machine like cloudhsm_mgmt_util:
//
//	subnets          [--region R]                     the default network
//	activate         --cluster-id ID --co-password P  INITIALIZED -> ACTIVE
//	create-user      --cluster-id ID --type CU --username U --password P --co-password C
//	delete-user      --cluster-id ID --username U --co-password C
//	change-password  --cluster-id ID --type CU|CO --username U --password NEW --co-password C
//	backup           --cluster-id ID
//	pkcs11-bench     --cluster-id ID --password P [--duration 5s] [--concurrency N]
//
// They work whether or not the server runs: token work happens in a
// short-lived HSM daemon of their own, and records change in keyhold's
// store (opened by open, the composition root's) under the cluster's lock;
// the server reads records from the store on every use and caches none.
// subcommandFlags names the flags of each owner subcommand besides the
// common --data-dir, --region and --module.
var subcommandFlags = map[string][]string{
	"subnets":         nil,
	"activate":        {"cluster-id", "co-password"},
	"create-user":     {"cluster-id", "type", "username", "password", "co-password"},
	"delete-user":     {"cluster-id", "username", "co-password"},
	"change-password": {"cluster-id", "type", "username", "password", "co-password"},
	"backup":          {"cluster-id"},
	"pkcs11-bench":    {"cluster-id", "password", "duration", "concurrency"},
}

func Command(ctx context.Context, args []string, stdout, stderr io.Writer, open OpenRecords) error {
	if len(args) == 0 {
		return errors.New("usage: keyhold hsm activate|create-user|delete-user|change-password|backup|subnets|pkcs11-bench [flags]")
	}
	sub, args := args[0], args[1:]
	uses, ok := subcommandFlags[sub]
	if !ok {
		return fmt.Errorf("hsm: unknown subcommand %q", sub)
	}
	all := flag.NewFlagSet("hsm "+sub, flag.ContinueOnError)
	fs := all
	defDir := os.Getenv("KEYHOLD_DATA_DIR")
	if defDir == "" {
		defDir = "./keyhold-data"
	}
	defRegion := os.Getenv("AWS_REGION")
	if defRegion == "" {
		defRegion = "us-east-1"
	}
	dataDir := fs.String("data-dir", defDir, "data directory (env KEYHOLD_DATA_DIR)")
	region := fs.String("region", defRegion, "region (env AWS_REGION)")
	module := fs.String("module", defaultModule, "PKCS#11 library")
	clusterID := fs.String("cluster-id", "", "cluster ID")
	userType := fs.String("type", "CU", "user type: CU (crypto user) or CO (crypto officer)")
	username := fs.String("username", "", "user name")
	password := fs.String("password", "", "the user's (new) password")
	coPassword := fs.String("co-password", "", "the crypto officer's password")
	duration := fs.Duration("duration", 5*time.Second, "benchmark duration")
	concurrency := fs.Int("concurrency", 2, "benchmark goroutines")
	// Each subcommand accepts (and its --help lists) only the flags it uses.
	fs = flag.NewFlagSet("hsm "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, name := range append([]string{"data-dir", "region", "module"}, uses...) {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hsm %s: unexpected arguments %v", sub, fs.Args())
	}
	if sub == "subnets" {
		for _, s := range Subnets(*region) {
			fmt.Fprintf(stdout, "%s %s\n", s.ID, s.AvailabilityZone)
		}
		return nil
	}
	if *clusterID == "" {
		return errors.New("hsm " + sub + ": --cluster-id is required")
	}
	// Token paths are derived from the data directory and handed to
	// daemons: make it absolute so a relative --data-dir names the same
	// files as the server's, whatever the working directory.
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	st, closeStore, err := open(ctx, dir)
	if err != nil {
		return err
	}
	defer closeStore()
	reg, err := NewStoreRegistry(ctx, st, filepath.Join(dir, "hsm"))
	if err != nil {
		return err
	}
	o := &owner{reg: reg, module: *module, id: *clusterID, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	switch sub {
	case "activate":
		err = o.activate(ctx, Password(*coPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Cluster %s is ACTIVE.\n", *clusterID)
		}
	case "create-user":
		if *userType != "CU" {
			return errors.New("hsm create-user: only --type CU is supported (the token's SO is the crypto officer)")
		}
		err = o.createUser(ctx, *username, Password(*password), Password(*coPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Created CU %s in cluster %s.\n", *username, *clusterID)
		}
	case "delete-user":
		err = o.deleteUser(ctx, *username, Password(*coPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Deleted user %s from cluster %s.\n", *username, *clusterID)
		}
	case "change-password":
		err = o.changePassword(ctx, *userType, *username, Password(*password), Password(*coPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Changed the password of %s in cluster %s.\n", *username, *clusterID)
		}
	case "backup":
		var b Backup
		b, err = createBackup(ctx, reg, *region, *clusterID, time.Now)
		if err == nil {
			fmt.Fprintln(stdout, b.ID)
		}
	case "pkcs11-bench":
		var n int64
		var el time.Duration
		n, el, err = o.bench(ctx, Password(*password), *duration, *concurrency)
		if err == nil {
			fmt.Fprintf(stdout, "pkcs11-bench: %d AES-GCM encrypts of 32 bytes in %s with %d goroutines: %.0f ops/s\n",
				n, el.Round(time.Millisecond), *concurrency, float64(n)/el.Seconds())
		}
	default:
		return fmt.Errorf("hsm: unknown subcommand %q", sub)
	}
	return err
}

// OpenRecords opens keyhold's store in an absolute data directory for an
// owner command; the returned func closes it.
type OpenRecords func(ctx context.Context, dataDir string) (Records, func(), error)

// owner does an HSM owner's work on one cluster.
type owner struct {
	reg    Registry
	module string
	id     string
	log    *slog.Logger
	exe    string
	args   []string
}

func (o *owner) spec(rec ClusterRecord) (spawnSpec, error) {
	exe, args := o.exe, o.args
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return spawnSpec{}, err
		}
		args = []string{"hsm-daemon"}
	}
	sp := spawnSpec{exe: exe, exeArgs: args, module: o.module, label: rec.TokenLabel, logger: o.log, cluster: rec.ID}
	if rec.ModulePath != "" {
		sp.module = rec.ModulePath
	}
	if rec.TokenDir != "" {
		sp.conf = filepath.Join(o.reg.ClusterDir(rec.ID), "softhsm2.conf")
	}
	return sp, nil
}

// tokenOp runs fn's token work in a temporary daemon while holding the
// cluster record's lock, and stores the record fn leaves.
func (o *owner) tokenOp(ctx context.Context, fn func(r *ClusterRecord, call func(*request) error) error) error {
	_, err := o.reg.UpdateCluster(ctx, o.id, func(r *ClusterRecord) error {
		if r.State == ClusterDeleted || r.State == ClusterDeleteInProgress {
			return clusterNotFound(o.id)
		}
		sp, err := o.spec(*r)
		if err != nil {
			return err
		}
		return withTempDaemon(ctx, sp, func(cl *client) error {
			return fn(r, func(req *request) error {
				_, err := cl.call(ctx, req)
				if errors.Is(err, ErrInvalidCredentials) {
					return errf(ErrInvalidCredentials, "The crypto officer password is incorrect.")
				}
				return err
			})
		})
	})
	return err
}

func (o *owner) activate(ctx context.Context, co Password) error {
	if err := checkCOPassword(co); err != nil {
		return err
	}
	err := o.tokenOp(ctx, func(r *ClusterRecord, call func(*request) error) error {
		if r.State != ClusterInitialized {
			return invalid("Cluster %s is in state %s; only an INITIALIZED cluster can be activated.", o.id, r.State)
		}
		if err := call(&request{Op: opSOSetPIN, PIN: r.PreCoPassword, NewPIN: co}); err != nil {
			return err
		}
		r.PreCoPassword = ""
		r.State, r.StateMessage = ClusterActive, ""
		return nil
	})
	if err != nil {
		return err
	}
	_, err = createBackup(ctx, o.reg, "", o.id, time.Now)
	return err
}

func activeForUsers(r *ClusterRecord) error {
	if r.State != ClusterActive && r.State != ClusterDegraded {
		return invalid("Cluster %s is in state %s; activate it first.", r.ID, r.State)
	}
	return nil
}

func (o *owner) createUser(ctx context.Context, name string, pw, co Password) error {
	if err := checkUsername(name); err != nil {
		return err
	}
	if err := checkCUPassword(pw); err != nil {
		return err
	}
	return o.tokenOp(ctx, func(r *ClusterRecord, call func(*request) error) error {
		if err := activeForUsers(r); err != nil {
			return err
		}
		if r.User.Exists {
			return errf(ErrUserExists, "Cluster %s already has the crypto user %s; a SoftHSM2 token holds one.", o.id, r.User.Name)
		}
		if err := call(&request{Op: opSOInitPIN, PIN: co, NewPIN: pw}); err != nil {
			return err
		}
		r.User = UserRecord{Name: name, Exists: true}
		return nil
	})
}

func (o *owner) deleteUser(ctx context.Context, name string, co Password) error {
	return o.tokenOp(ctx, func(r *ClusterRecord, call func(*request) error) error {
		if err := activeForUsers(r); err != nil {
			return err
		}
		if !r.User.Exists || r.User.Name != name {
			return errf(ErrUserNotFound, "User %s does not exist in cluster %s.", name, o.id)
		}
		if r.User.LoggedInBy != "" {
			return invalid("User %s is logged in; disconnect the custom key store first.", name)
		}
		// A SoftHSM2 token always has a user PIN once set: replace it with
		// one nobody knows.
		if err := call(&request{Op: opSOInitPIN, PIN: co, NewPIN: randomPassword(32)}); err != nil {
			return err
		}
		r.User = UserRecord{}
		return nil
	})
}

func (o *owner) changePassword(ctx context.Context, typ, name string, pw, co Password) error {
	switch typ {
	case "CO":
		if err := checkCOPassword(pw); err != nil {
			return err
		}
		return o.tokenOp(ctx, func(r *ClusterRecord, call func(*request) error) error {
			if err := activeForUsers(r); err != nil {
				return err
			}
			return call(&request{Op: opSOSetPIN, PIN: co, NewPIN: pw})
		})
	case "CU":
		if err := checkCUPassword(pw); err != nil {
			return err
		}
		return o.tokenOp(ctx, func(r *ClusterRecord, call func(*request) error) error {
			if err := activeForUsers(r); err != nil {
				return err
			}
			if !r.User.Exists || r.User.Name != name {
				return errf(ErrUserNotFound, "User %s does not exist in cluster %s.", name, o.id)
			}
			if err := call(&request{Op: opSOInitPIN, PIN: co, NewPIN: pw}); err != nil {
				return err
			}
			r.User.FailedLogins, r.User.LockedOut = 0, false
			return nil
		})
	}
	return fmt.Errorf("hsm change-password: --type must be CU or CO")
}

func (o *owner) bench(ctx context.Context, pw Password, d time.Duration, conc int) (int64, time.Duration, error) {
	rec, err := o.reg.GetCluster(ctx, o.id)
	if err != nil {
		return 0, 0, err
	}
	sp, err := o.spec(rec)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	var el time.Duration
	err = withTempDaemon(ctx, sp, func(cl *client) error {
		resp, err := cl.call(ctx, &request{Op: opBench, PIN: pw, N: conc, Duration: d})
		if err != nil {
			return err
		}
		ns, _ := strconv.ParseInt(string(resp.Data), 10, 64)
		n, el = resp.N, time.Duration(ns)
		return nil
	})
	return n, el, err
}
