package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// outputFlag is -o/--output of a command that prints data: its formats,
// the first the default.
type outputFlag struct {
	format  string
	formats []string
}

// addOutput registers -o on fs with formats (the first is the default).
func addOutput(fs *pflag.FlagSet, formats ...string) *outputFlag {
	o := &outputFlag{formats: formats}
	fs.StringVarP(&o.format, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	return o
}

// complete offers the formats to shell completion.
func (o *outputFlag) complete(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(o.formats, cobra.ShellCompDirectiveNoFileComp))
}

// check refuses a format the command does not have, naming the flag.
func (o *outputFlag) check() error {
	if !slices.Contains(o.formats, o.format) {
		return usagef("-o %q: want %s", o.format, orList(o.formats))
	}
	return nil
}

func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// print writes v as JSON or YAML, or through table for "table"/"text".
func (o *outputFlag) print(w io.Writer, v any, table func(io.Writer) error) error {
	switch o.format {
	case "json":
		return printJSON(w, v)
	case "yaml":
		return printYAML(w, v)
	}
	return table(w)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printYAML writes v as YAML, through its JSON encoding (the field names
// are the JSON ones).
func printYAML(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(b.Bytes())
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// table writes rows under a header, columns aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			r[i] = dash(r[i])
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// completeOutput offers formats for the -o of a command that registered it
// itself.
func completeOutput(cmd *cobra.Command, formats ...string) {
	(&outputFlag{formats: formats}).complete(cmd)
}

// afterPage says where a paged read failed, for its error: nothing on the
// first page, else the page token it resumes after (which --resume or a
// rerun can use).
func afterPage(token string) string {
	if token == "" {
		return ""
	}
	return fmt.Sprintf(" after page token %q", token)
}
