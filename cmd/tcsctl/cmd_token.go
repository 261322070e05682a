package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tcs-dev/tcs/internal/auth"
)

// newTokenCmd issues credentials: `token new` makes a random token and
// prints it once with its credentials file line; `token digest` prints the
// line of a token read from stdin. Servers keep only the line (a SHA-256
// digest).
func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token (new | digest) --role ROLE --name NAME",
		Short: "issue a credential (token new) or print a token's credentials file line (token digest)",
		Args:  cobra.ArbitraryArgs,
		RunE:  subcommandsOnly,
	}
	roles := cobra.FixedCompletions([]string{"admin", "reader", "lookup", "replica-scan"}, cobra.ShellCompDirectiveNoFileComp)
	for _, sub := range []string{"new", "digest"} {
		c := &cobra.Command{Use: sub + " --role ROLE --name NAME", Args: noArgs}
		switch sub {
		case "new":
			c.Use += " [--append FILE]"
			c.Short = "make a random token; print it once, with its line for the servers' --tokens-file"
		case "digest":
			c.Use += " < token"
			c.Short = "print the --tokens-file line of a token read from stdin"
		}
		fs := c.Flags()
		role := fs.String("role", "", "the credential's role: admin, reader, lookup or replica-scan")
		name := fs.String("name", "", "the person or service it is for, unique among the credentials (audit records and per-caller limits show it)")
		_ = c.RegisterFlagCompletionFunc("role", roles)
		var appendTo *string
		if sub == "new" {
			appendTo = fs.String("append", "", "also append the line to this credentials file (created mode 0600; a name already in it is an error)")
		}
		c.RunE = e.action(func(ctx context.Context, _ []string) error {
			return runToken(e, sub, *role, *name, appendTo)
		})
		cmd.AddCommand(c)
	}
	return cmd
}

func runToken(e *env, sub, roleName, name string, appendTo *string) error {
	r := auth.Role(roleName)
	if !r.Valid() {
		return usagef("--role %q: want admin, reader, lookup or replica-scan", roleName)
	}
	if name == "" || strings.ContainsAny(name, " \t\n#") {
		return usagef("--name: want a non-empty name without spaces or #")
	}
	var token string
	if sub == "digest" {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		token = strings.TrimRight(line, "\r\n")
		if token == "" {
			return fmt.Errorf("token digest: read no token from stdin: %v", err)
		}
		if len(token) < auth.MinTokenBytes {
			return fmt.Errorf("token digest: the token is %d bytes; servers accept tokens of at least %d bytes (tcsctl token new makes one)", len(token), auth.MinTokenBytes)
		}
		fmt.Fprintln(e.stdout, auth.Line(r, token, name))
		return nil
	}
	token, err := auth.NewToken()
	if err != nil {
		return err
	}
	line := auth.Line(r, token, name)
	if *appendTo != "" {
		if err := appendCredential(*appendTo, line); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "# token of %s (role %s), shown only now: give it to %s (e.g. as %s)\n%s\n", name, r, name, auth.EnvTokenVars[r], token)
	fmt.Fprintf(e.stdout, "# its line for the servers' --tokens-file (then send them SIGHUP)%s\n%s\n", map[bool]string{true: ", appended to " + *appendTo, false: ""}[*appendTo != ""], line)
	return nil
}

// appendCredential adds line to the credentials file at path, checking
// that the result is a valid credentials file (unique names, no token
// twice), and writes it mode 0600 through a temporary file renamed over it.
func appendCredential(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--append: %w", err)
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	next := append(old, line+"\n"...)
	if _, err := auth.Parse(bytes.NewReader(next), path); err != nil {
		return fmt.Errorf("--append: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return fmt.Errorf("--append: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("--append: %w", err)
	}
	if _, err := tmp.Write(next); err != nil {
		tmp.Close()
		return fmt.Errorf("--append: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--append: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--append: %w", err)
	}
	return nil
}
