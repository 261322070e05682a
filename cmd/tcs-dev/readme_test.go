package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readmeCatalogAddr is where the README's commands reach the catalog: the
// address `make run` serves it on (tcs-dev's --catalog-addr default).
const readmeCatalogAddr = "127.0.0.1:8080"

// TestReadmeQuickStart runs the curl commands of README.md's quick start,
// taken from the README itself, against a freshly started and seeded system
// (what `make run` starts, with the tokens the Makefile sets), in order, and
// checks each result the README shows in a `# → <status> <text>[, ETag:
// "<v>"]` comment after the command. A command that shows no result must
// succeed (2xx). So the quick start fails this test when it stops working
// verbatim: a seeded tenant id, a wrong status or ETag, a changed route or
// token.
func TestReadmeQuickStart(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, name := range []string{"TCS_ADMIN_TOKEN", "TCS_READER_TOKEN"} {
		m := regexp.MustCompile(`(?m)^export ` + name + `\s*\?=\s*(\S+)\s*$`).FindSubmatch(makefile)
		if m == nil {
			t.Fatalf("Makefile sets no default %s for make run", name)
		}
		env[name] = string(m[1])
	}
	cmds, err := quickStartCommands(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	s := startWith(t, env) // a new data directory: seeded, as on a fresh `make run`
	for _, problem := range runQuickStart(s.ep.Catalog, cmds) {
		t.Error("README quick start " + problem)
	}
}

// TestReadmeQuickStartCatchesFailures: the check above fails on the quick
// start issue 16 found broken (it created the seeded tenant acme).
func TestReadmeQuickStartCatchesFailures(t *testing.T) {
	t.Parallel()
	readme := "# TCS\n\n## Quick start\n\n```sh\nmake run\n```\n\n```sh\n" +
		"# Create a tenant.\n" +
		"curl -si -X POST http://127.0.0.1:8080/v1/tenants \\\n" +
		"  -H 'Authorization: Bearer dev-admin-token' -H 'Content-Type: application/json' \\\n" +
		"  -d '{\"id\":\"acme\",\n       \"hostnames\":[\"acme.example.com\"]}'\n" +
		"# → 201 Created, ETag: \"1\"\n" +
		"curl -si -X PATCH http://127.0.0.1:8080/v1/tenants/acme -H 'Authorization: Bearer dev-admin-token' \\\n" +
		"  -H 'Content-Type: application/merge-patch+json' \\\n" +
		"  -H \"If-Match: \\\"1\\\"\" -d '{\"labels\":{\"tier\":\"gold\"}}'\n" +
		"# → 200 OK, ETag: \"2\"\n" +
		"curl -s http://127.0.0.1:8080/v1/hostnames/nobody.example.com -H 'Authorization: Bearer dev-reader-token'\n" +
		"```\n\n## Next\n"
	cmds, err := quickStartCommands(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 3 || cmds[0].want == nil || cmds[0].want.status != 201 || cmds[2].want != nil {
		t.Fatalf("parsed %+v", cmds)
	}
	if got := cmds[1].args[len(cmds[1].args)-3]; got != `If-Match: "1"` {
		t.Errorf("double-quoted header parsed as %q", got)
	}
	s := start(t)
	problems := runQuickStart(s.ep.Catalog, cmds)
	want := []string{"command 1 ", "409 Conflict, README shows 201", "command 2 ", `ETag "1", README shows "2"`, "command 3 ", "404 Not Found, want success"}
	joined := strings.Join(problems, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("problems lack %q:\n%s", w, joined)
		}
	}
}

// TestReadmeParserRefuses: commands the test cannot run faithfully are
// errors, not silently changed requests.
func TestReadmeParserRefuses(t *testing.T) {
	t.Parallel()
	for name, block := range map[string]string{
		"variable":     "curl -s http://127.0.0.1:8080/v1/tenants/$ID\n",
		"pipe":         "curl -s http://127.0.0.1:8080/v1/tenants | jq .\n",
		"other option": "curl -s -u a:b http://127.0.0.1:8080/v1/tenants\n",
		"other host":   "curl -s http://127.0.0.1:9999/v1/tenants\n",
		"not curl":     "curl -s http://127.0.0.1:8080/v1/tenants\nwget http://127.0.0.1:8080/\n",
		"bad result":   "curl -s http://127.0.0.1:8080/v1/tenants\n# → 200 Fine\n",
		"unclosed":     "curl -s -d '{ http://127.0.0.1:8080/v1/tenants\n",
	} {
		cmds, err := quickStartCommands("## Quick start\n```sh\n" + block + "```\n")
		if err == nil {
			_, err = cmds[0].request("127.0.0.1:1")
		}
		if err == nil {
			t.Errorf("%s: %q accepted", name, block)
		}
	}
}

// runQuickStart sends the commands to the catalog in order and returns
// what differed from the results they show.
func runQuickStart(catalog string, cmds []curlCommand) []string {
	var problems []string
	for i, c := range cmds {
		name := fmt.Sprintf("command %d (%s)", i+1, c.line)
		req, err := c.request(catalog)
		if err != nil {
			return append(problems, fmt.Sprintf("%s: %v", name, err))
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return append(problems, fmt.Sprintf("%s: %v", name, err))
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got := fmt.Sprintf("%d %s", res.StatusCode, http.StatusText(res.StatusCode))
		if c.want == nil {
			if res.StatusCode/100 != 2 {
				problems = append(problems, fmt.Sprintf("%s: %s, want success:\n%s", name, got, body))
			}
			continue
		}
		if res.StatusCode != c.want.status {
			problems = append(problems, fmt.Sprintf("%s: %s, README shows %d:\n%s", name, got, c.want.status, body))
		}
		if c.want.etag != "" && res.Header.Get("ETag") != c.want.etag {
			problems = append(problems, fmt.Sprintf("%s: ETag %s, README shows %s", name, res.Header.Get("ETag"), c.want.etag))
		}
	}
	return problems
}

// curlCommand is one curl command of the README and the result it shows.
type curlCommand struct {
	line string // the command's first line, to name it
	args []string
	want *shownResult
}

type shownResult struct {
	status int
	etag   string // "" when the README shows none
}

// request turns the curl command into the request curl would send, sent to
// catalog instead of the README's address. It knows the options the README
// uses and refuses any other, so that it never runs something else than the
// README says.
func (c curlCommand) request(catalog string) (*http.Request, error) {
	var method, rawURL, data string
	hasData := false
	header := http.Header{}
	for i := 1; i < len(c.args); i++ {
		a := c.args[i]
		value := func() (string, error) {
			if i+1 >= len(c.args) {
				return "", fmt.Errorf("curl option %s needs a value", a)
			}
			i++
			return c.args[i], nil
		}
		switch {
		case a == "-X" || a == "--request":
			v, err := value()
			if err != nil {
				return nil, err
			}
			method = v
		case a == "-H" || a == "--header":
			v, err := value()
			if err != nil {
				return nil, err
			}
			k, hv, ok := strings.Cut(v, ":")
			if !ok {
				return nil, fmt.Errorf("curl header %q has no colon", v)
			}
			header.Add(strings.TrimSpace(k), strings.TrimSpace(hv))
		case a == "-d" || a == "--data" || a == "--data-raw":
			v, err := value()
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(v, "@") && a != "--data-raw" {
				return nil, fmt.Errorf("curl %s @file is not supported here", a)
			}
			data, hasData = data+v, true
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Trim(a[1:], "si") == "":
			// -s (silent) and -i (show the response headers) change only
			// what curl prints.
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("curl option %s is not supported by this test", a)
		default:
			if rawURL != "" {
				return nil, fmt.Errorf("two URLs: %s and %s", rawURL, a)
			}
			rawURL = a
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("URL: %w", err)
	}
	if u.Scheme != "http" || u.Host != readmeCatalogAddr {
		return nil, fmt.Errorf("URL %s is not the catalog at http://%s", rawURL, readmeCatalogAddr)
	}
	u.Host = catalog
	if method == "" {
		method = http.MethodGet
		if hasData {
			method = http.MethodPost
		}
	}
	var body io.Reader
	if hasData {
		body = strings.NewReader(data)
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl does
		}
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header = header
	return req, nil
}

var shownResultRE = regexp.MustCompile(`^→ (\d{3}) ([^,]+?)(?:, ETag: ("[^"]*"))?$`)

// quickStartCommands returns the curl commands of the quick start section's
// shell blocks that run curl, each with the result shown after it.
func quickStartCommands(readme string) ([]curlCommand, error) {
	_, section, ok := strings.Cut(readme, "\n## Quick start\n")
	if !ok {
		return nil, fmt.Errorf("README.md has no \"## Quick start\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var cmds []curlCommand
	for rest := section; ; {
		_, after, ok := strings.Cut(rest, "```sh\n")
		if !ok {
			break
		}
		block, after, ok := strings.Cut(after, "```")
		if !ok {
			return nil, fmt.Errorf("quick start: a ```sh block is not closed")
		}
		rest = after
		items, err := shellItems(block)
		if err != nil {
			return nil, fmt.Errorf("quick start: %w", err)
		}
		if !slices.ContainsFunc(items, func(it shellItem) bool { return !it.comment && it.words[0] == "curl" }) {
			continue // not a block of curl commands (make run, grpcurl)
		}
		for _, it := range items {
			switch {
			case !it.comment:
				if it.words[0] != "curl" {
					return nil, fmt.Errorf("quick start: %q is not a curl command", it.line)
				}
				cmds = append(cmds, curlCommand{line: it.line, args: it.words})
			case strings.HasPrefix(it.text, "→"):
				if len(cmds) == 0 || cmds[len(cmds)-1].want != nil {
					return nil, fmt.Errorf("quick start: result %q follows no command", it.text)
				}
				m := shownResultRE.FindStringSubmatch(it.text)
				if m == nil {
					return nil, fmt.Errorf("quick start: result %q is not `→ <status> <text>[, ETag: \"<v>\"]`", it.text)
				}
				code, _ := strconv.Atoi(m[1])
				if http.StatusText(code) != m[2] {
					return nil, fmt.Errorf("quick start: result %q: status %d is %q", it.text, code, http.StatusText(code))
				}
				cmds[len(cmds)-1].want = &shownResult{status: code, etag: m[3]}
			}
		}
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("README.md's quick start has no block of curl commands")
	}
	return cmds, nil
}

// shellItem is a command (its words) or a comment of a shell block.
type shellItem struct {
	comment bool
	text    string   // a comment's text after "# "
	words   []string // a command's words, quotes removed
	line    string   // a command's first line
}

// shellItems splits a POSIX shell block into commands and comments: words
// split on blanks, single and double quotes (which may span lines),
// backslash escapes and line continuations, "#" comments. It refuses what
// it does not know ($, `, ;, |, &, redirections), rather than run
// something other than what a shell would.
func shellItems(block string) ([]shellItem, error) {
	var items []shellItem
	var words []string
	var word strings.Builder
	inWord := false
	lineStart := 0
	endWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	endCommand := func(end int) {
		endWord()
		if len(words) > 0 {
			line, _, _ := strings.Cut(block[lineStart:end], "\n")
			items = append(items, shellItem{words: words, line: strings.TrimSpace(strings.TrimSuffix(line, `\`))})
			words = nil
		}
	}
	for i := 0; i < len(block); i++ {
		c := block[i]
		if len(words) == 0 && !inWord && c != ' ' && c != '\t' && c != '\n' {
			lineStart = i
		}
		switch {
		case c == '\n':
			endCommand(i)
		case c == ' ' || c == '\t':
			endWord()
		case c == '#' && !inWord:
			end := strings.IndexByte(block[i:], '\n')
			if end < 0 {
				end = len(block) - i
			}
			if len(words) == 0 {
				items = append(items, shellItem{comment: true, text: strings.TrimSpace(block[i+1 : i+end])})
			}
			i += end - 1
		case c == '\\':
			if i+1 >= len(block) {
				return nil, fmt.Errorf("a backslash ends the block")
			}
			i++
			if block[i] != '\n' { // a backslash-newline joins lines
				word.WriteByte(block[i])
				inWord = true
			}
		case c == '\'':
			end := strings.IndexByte(block[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unclosed single quote in %q", block[lineStart:])
			}
			word.WriteString(block[i+1 : i+1+end])
			inWord = true
			i += end + 1
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(block) {
					return nil, fmt.Errorf("unclosed double quote in %q", block[lineStart:])
				}
				if block[i] == '"' {
					break
				}
				if block[i] == '$' || block[i] == '`' {
					return nil, fmt.Errorf("expansion in %q is not supported by this test", block[lineStart:])
				}
				if block[i] == '\\' && i+1 < len(block) && strings.IndexByte("\"\\$`\n", block[i+1]) >= 0 {
					i++
					if block[i] == '\n' {
						continue
					}
				}
				word.WriteByte(block[i])
			}
		case strings.IndexByte("$`;|&<>(){}", c) >= 0:
			return nil, fmt.Errorf("shell syntax %q in %q is not supported by this test", c, block[lineStart:])
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	endCommand(len(block))
	return items, nil
}
