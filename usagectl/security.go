package usagectl

import (
	"context"
	"fmt"

	"github.com/alecthomas/kingpin/v2"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/auth"
)

func init() { registrars = append(registrars, registerSecurity) }

func registerSecurity(app *kingpin.Application) {
	keys := app.Command("keys", "API keys and tokens.")
	name := keys.Command("new", "Make a new API key or bearer token: prints the key (give it to the client once) and the hash for the config file.").
		Flag("name", "Name of the key, for the config snippet.").Default("my-service").String()
	keys.GetCommand("new").Action(func(*kingpin.ParseContext) error {
		key, hash := auth.NewAPIKey()
		fmt.Printf("key:  %s\nhash: %s\n\n# in the config file:\nauth:\n  api_keys:\n    - name: %s\n      hash: %s\n      tenants: [TENANT]\n", key, hash, *name, hash)
		return nil
	})

	ps := app.Command("pseudonym", "Print the user label of per-user series (metrics.per_user_labels) for users of a tenant, and their label before per-tenant keying, to correlate series across that upgrade.")
	keyFile := ps.Flag("key-file", "metrics.user_label_key_file").Required().String()
	tenant := ps.Flag("tenant", "The users' tenant.").Required().String()
	users := ps.Arg("user", "User ids.").Required().Strings()
	ps.Action(func(*kingpin.ParseContext) error {
		key, err := auth.LoadKey(*keyFile)
		if err != nil {
			return err
		}
		fmt.Println("tenant\tuser\tlabel\tlabel_before_per_tenant_keying")
		for _, u := range *users {
			fmt.Printf("%s\t%s\t%s\t%s\n", *tenant, u, auth.Pseudonymize(key, *tenant, u), auth.PseudonymizeV1(key, u))
		}
		return nil
	})

	au := app.Command("audit", "The audit trail.")
	verify := au.Command("verify", "Verify the hash chain of the audit trail offline (stop the exporter first): detects any change, deletion or reordering.")
	path := verify.Flag("storage.path", "The exporter's store directory.").Default("./data").String()
	cfgFile := verify.Flag("config.file", "The exporter's config file (for auth.audit_key_file and the meters).").String()
	verify.Action(func(*kingpin.ParseContext) error { return verifyAudit(*path, *cfgFile) })
}

// verifyAudit checks the audit trail's hash chain in the store at path.
func verifyAudit(path, cfgFile string) error {
	ctx := context.Background()
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return err
	}
	ac, err := auth.ParseConfig(&cfg.Auth)
	if err != nil {
		return err
	}
	var key []byte
	if ac.AuditKeyFile != "" {
		if key, err = auth.LoadKey(ac.AuditKeyFile); err != nil {
			return err
		}
	}
	s, err := openExisting(ctx, path, cfg, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := audit.Verify(ctx, s.DB(), key)
	if err != nil {
		return fmt.Errorf("audit trail NOT intact: %w", err)
	}
	fmt.Printf("audit trail intact: %d entries, head %s\n", res.Entries, res.Head)
	return nil
}
