package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyhold/keyhold/internal/config"
	"github.com/keyhold/keyhold/internal/logs"
	"github.com/keyhold/keyhold/internal/xks/proxy"
)

// xksOptions are `keyhold xks-proxy`'s settings.
type xksOptions struct {
	configFile      string
	keyStores       string
	addr            string
	shutdownTimeout time.Duration
	logLevel        string
	logFormat       string
}

func xksSettings(o *xksOptions) *config.Set {
	s := &config.Set{Command: "xks-proxy", Settings: []*config.Setting{
		{Name: "config", Usage: "settings file (this format); a JSON file here is taken as key-stores (the form init prints)", Target: &o.configFile, FlagOnly: true},
		{Name: "key-stores", Usage: "the proxy's key store file (JSON, mode 0600: listen address, TLS, URI prefixes, credentials, keys), as xks-proxy init writes it", Target: &o.keyStores, Example: "/etc/keyhold/xks/config.json"},
		{Name: "addr", Usage: "listen address, overriding the key store file's \"listen\"", Target: &o.addr, Check: func(v string) error {
			if v == "" {
				return nil
			}
			return checkAddr(v)
		}},
		{Name: "shutdown-timeout", Usage: "on SIGTERM, how long in-flight requests may take to finish", Default: "5s", Kind: config.Duration, Target: &o.shutdownTimeout},
	}}
	s.Settings = append(s.Settings, logSettings(&o.logLevel, &o.logFormat)...)
	return s
}

func xksProxyCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &xksOptions{}
	set := xksSettings(o)
	cmd := &cobra.Command{
		Use:   "xks-proxy",
		Short: "Run an XKS proxy (HTTPS, SigV4 kms-xks-proxy) over PKCS#11 tokens",
		Long: `Run an XKS proxy: the HTTPS endpoint AWS KMS (or keyhold) calls for keys of an
external key store, over PKCS#11 tokens (SoftHSM2 by default).

  keyhold xks-proxy init --dir DIR          # make a ready-to-serve proxy
  keyhold xks-proxy --config DIR/config.json

Settings are flags, KEYHOLD_* environment variables or lines of a settings
file ("keyhold config example --for xks-proxy"); precedence is flag >
environment > file > default. SIGHUP reloads the key store file.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfgFile := configPath(cmd)
			settingsFile := cfgFile
			if isJSONFile(cfgFile) {
				settingsFile = ""
			}
			if err := set.Resolve(cmd.Flags(), settingsFile, nil); err != nil {
				return err
			}
			if settingsFile == "" && cfgFile != "" && set.Sources["key-stores"] == "default" {
				o.keyStores = cfgFile
			}
			if o.keyStores == "" {
				return usageError{errors.New("the key store file is required: --config FILE.json or --key-stores FILE (keyhold xks-proxy init makes one)")}
			}
			return runXKSProxy(cmd.Context(), o, stderr)
		},
	}
	set.Bind(cmd.Flags())
	cmd.AddCommand(xksInitCommand(stdout))
	return cmd
}

// isJSONFile reports whether path holds JSON (its first non-space byte is
// '{'): the key store file given as --config, as before settings files.
func isJSONFile(path string) bool {
	if path == "" {
		return false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}

func runXKSProxy(ctx context.Context, o *xksOptions, stderr io.Writer) error {
	log, _, err := logs.New(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	cfg, err := proxy.LoadConfig(o.keyStores)
	if err != nil {
		return err
	}
	if o.addr != "" {
		cfg.Listen = o.addr
	}
	srv, err := proxy.New(cfg, proxy.WithLogger(log))
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	log.Info("xks proxy listening", "addr", ln.Addr.String(), "key_stores", len(cfg.KeyStores), "region", cfg.Region)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := srv.ReloadFile(o.keyStores); err != nil {
				log.Error("xks proxy reload failed; keeping the previous configuration", "err", err)
			} else {
				log.Info("SIGHUP: key store file reloaded", "file", o.keyStores)
			}
		case err := <-ln.Err():
			return err
		case <-ctx.Done():
			log.Info("shutting down: draining in-flight requests", "deadline", o.shutdownTimeout.String())
			sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			defer cancel()
			return ln.Shutdown(sctx)
		}
	}
}

func xksInitCommand(stdout io.Writer) *cobra.Command {
	var o proxy.InitOptions
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a ready-to-serve XKS proxy: CA, TLS certificate, SoftHSM2 token, keys, credentials",
		Long: `Create a ready-to-serve XKS proxy in DIR: a CA and a server certificate for
127.0.0.1/localhost, a SoftHSM2 token with an example key and the health key,
two credentials and a 0600 config.json. It prints (JSON) what
CreateCustomKeyStore and CreateKey need. DIR holds secrets: keep it out of
version control.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Dir == "" {
				return usageError{errors.New("--dir is required")}
			}
			res, err := proxy.Init(o)
			if err != nil {
				return err
			}
			b, _ := json.Marshal(res)
			_, err = fmt.Fprintln(stdout, string(b))
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Dir, "dir", "", "directory to create the proxy's files in (required)")
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:8443", "listen address written to the configuration")
	fs.StringVar(&o.Prefix, "prefix", "/example", "URI path prefix of the key store, with or without its leading slash (may be empty)")
	fs.StringVar(&o.Region, "region", "us-east-1", "the KMS region that will call the proxy")
	fs.StringVar(&o.Module, "module", proxy.DefaultModule, "SoftHSM2 PKCS#11 library")
	fs.BoolVar(&o.RestrictedKeys, "restricted-keys", false, "also create "+proxy.EncryptOnlyKeyLabel+", "+proxy.DecryptOnlyKeyLabel+" and "+proxy.NoUsageKeyLabel+" (for AWS's XKS proxy test client)")
	return cmd
}
