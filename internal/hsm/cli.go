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
	"time"
)

// OwnerSubcommand is one of the HSM owner's tools, run on the machine like
// cloudhsm_mgmt_util. They work whether or not the server runs: token work
// happens in a short-lived HSM daemon of their own, and records change in
// keyhold's store (opened by open, the composition root's) under the
// cluster's lock; the server reads records from the store on every use and
// caches none.
type OwnerSubcommand struct {
	Name, Short string
	// Flags are the subcommand's flags besides the common --data-dir,
	// --region and --module.
	Flags []string
}

// OwnerSubcommands lists `keyhold hsm`'s subcommands.
var OwnerSubcommands = []OwnerSubcommand{
	{"subnets", "List keyhold's default network: one subnet per Availability Zone", nil},
	{"activate", "Activate an INITIALIZED cluster: set the crypto officer's password", []string{"cluster-id", "co-password"}},
	{"create-user", "Create the crypto user (kmsuser) a CloudHSM key store logs in as", []string{"cluster-id", "type", "username", "password", "co-password"}},
	{"delete-user", "Delete the crypto user", []string{"cluster-id", "username", "co-password"}},
	{"change-password", "Change a crypto user's or the crypto officer's password", []string{"cluster-id", "type", "username", "password", "co-password"}},
	{"backup", "Back the cluster up now (prints the backup id)", []string{"cluster-id"}},
	{"pkcs11-bench", "Measure AES-GCM encryption through PKCS#11 on the cluster's token", []string{"cluster-id", "password", "duration", "concurrency"}},
}

// OwnerFlagSet is what flag.FlagSet and pflag.FlagSet share.
type OwnerFlagSet interface {
	StringVar(p *string, name, value, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
	IntVar(p *int, name string, value int, usage string)
}

// OwnerFlags are the values of an owner subcommand's flags.
type OwnerFlags struct {
	DataDir, Region, Module                         string
	ClusterID, Type, Username, Password, COPassword string
	Duration                                        time.Duration
	Concurrency                                     int
}

// Add registers on fs the flags subcommand sub takes (and only those).
func (f *OwnerFlags) Add(fs OwnerFlagSet, sub string) error {
	var uses []string
	found := false
	for _, o := range OwnerSubcommands {
		if o.Name == sub {
			uses, found = o.Flags, true
		}
	}
	if !found {
		return fmt.Errorf("hsm: unknown subcommand %q", sub)
	}
	defDir := os.Getenv("KEYHOLD_DATA_DIR")
	if defDir == "" {
		defDir = "keyhold-data"
	}
	defRegion := os.Getenv("AWS_REGION")
	if defRegion == "" {
		defRegion = "us-east-1"
	}
	fs.StringVar(&f.DataDir, "data-dir", defDir, "data directory (env KEYHOLD_DATA_DIR)")
	fs.StringVar(&f.Region, "region", defRegion, "region (env AWS_REGION)")
	fs.StringVar(&f.Module, "module", defaultModule, "PKCS#11 library")
	for _, name := range uses {
		switch name {
		case "cluster-id":
			fs.StringVar(&f.ClusterID, name, "", "cluster ID (required)")
		case "type":
			fs.StringVar(&f.Type, name, "CU", "user type: CU (crypto user) or CO (crypto officer)")
		case "username":
			fs.StringVar(&f.Username, name, "", "user name")
		case "password":
			fs.StringVar(&f.Password, name, "", "the user's (new) password")
		case "co-password":
			fs.StringVar(&f.COPassword, name, "", "the crypto officer's password")
		case "duration":
			fs.DurationVar(&f.Duration, name, 5*time.Second, "benchmark duration")
		case "concurrency":
			fs.IntVar(&f.Concurrency, name, 2, "benchmark goroutines")
		default:
			return fmt.Errorf("hsm %s: no flag %s", sub, name)
		}
	}
	return nil
}

// Command runs `keyhold hsm <sub> [flags]` from its arguments (keyhold's
// CLI builds one cobra command per OwnerSubcommands entry and calls
// RunOwner; tests call this).
func Command(ctx context.Context, args []string, stdout, stderr io.Writer, open OpenRecords) error {
	if len(args) == 0 {
		return errors.New("usage: keyhold hsm activate|create-user|delete-user|change-password|backup|subnets|pkcs11-bench [flags]")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("hsm "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f OwnerFlags
	if err := f.Add(fs, sub); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hsm %s: unexpected arguments %v", sub, fs.Args())
	}
	return RunOwner(ctx, sub, f, stdout, stderr, open)
}

// RunOwner runs owner subcommand sub with its flags' values.
func RunOwner(ctx context.Context, sub string, f OwnerFlags, stdout, stderr io.Writer, open OpenRecords) error {
	if sub == "subnets" {
		for _, s := range Subnets(f.Region) {
			fmt.Fprintf(stdout, "%s %s\n", s.ID, s.AvailabilityZone)
		}
		return nil
	}
	if f.ClusterID == "" {
		return errors.New("hsm " + sub + ": --cluster-id is required")
	}
	// Token paths are derived from the data directory and handed to
	// daemons: make it absolute so a relative --data-dir names the same
	// files as the server's, whatever the working directory.
	dir, err := filepath.Abs(f.DataDir)
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
	o := &owner{reg: reg, module: f.Module, id: f.ClusterID, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	switch sub {
	case "activate":
		err = o.activate(ctx, Password(f.COPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Cluster %s is ACTIVE.\n", f.ClusterID)
		}
	case "create-user":
		if f.Type != "CU" {
			return errors.New("hsm create-user: only --type CU is supported (the token's SO is the crypto officer)")
		}
		err = o.createUser(ctx, f.Username, Password(f.Password), Password(f.COPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Created CU %s in cluster %s.\n", f.Username, f.ClusterID)
		}
	case "delete-user":
		err = o.deleteUser(ctx, f.Username, Password(f.COPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Deleted user %s from cluster %s.\n", f.Username, f.ClusterID)
		}
	case "change-password":
		err = o.changePassword(ctx, f.Type, f.Username, Password(f.Password), Password(f.COPassword))
		if err == nil {
			fmt.Fprintf(stdout, "Changed the password of %s in cluster %s.\n", f.Username, f.ClusterID)
		}
	case "backup":
		var b Backup
		b, err = createBackup(ctx, reg, f.Region, f.ClusterID, time.Now)
		if err == nil {
			fmt.Fprintln(stdout, b.ID)
		}
	case "pkcs11-bench":
		var r benchResult
		r, err = o.bench(ctx, Password(f.Password), f.Duration, f.Concurrency)
		if err == nil {
			fmt.Fprintf(stdout, "pkcs11-bench: %d AES-GCM encrypts of 32 bytes in %s with %d goroutines: %.0f ops/s, %.1f CPU µs/op (the HSM process)\n",
				r.ops, r.elapsed.Round(time.Millisecond), f.Concurrency, float64(r.ops)/r.elapsed.Seconds(), r.cpuPerOp())
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

// benchResult is what pkcs11-bench measured inside the HSM process.
type benchResult struct {
	ops     int64
	elapsed time.Duration
	cpu     time.Duration // the HSM process's user+system CPU over the run
}

func (r benchResult) cpuPerOp() float64 {
	if r.ops == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.ops)
}

func (o *owner) bench(ctx context.Context, pw Password, d time.Duration, conc int) (benchResult, error) {
	rec, err := o.reg.GetCluster(ctx, o.id)
	if err != nil {
		return benchResult{}, err
	}
	sp, err := o.spec(rec)
	if err != nil {
		return benchResult{}, err
	}
	var r benchResult
	err = withTempDaemon(ctx, sp, func(cl *client) error {
		resp, err := cl.call(ctx, &request{Op: opBench, PIN: pw, N: conc, Duration: d})
		if err != nil {
			return err
		}
		var el, cpu int64
		fmt.Sscan(string(resp.Data), &el, &cpu)
		r = benchResult{ops: resp.N, elapsed: time.Duration(el), cpu: time.Duration(cpu)}
		return nil
	})
	return r, err
}
