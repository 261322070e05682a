// Command tcsctl is the SRE tool of TCS: look tenants up, compare every
// region's replica with the source of truth, repair drift by flushing the
// truth through the stream again, and change, import or export tenants in
// bulk — against a running system, while it serves traffic.
//
// # How it reaches the system
//
// tcsctl never opens data files (the running system holds its bbolt files
// exclusively, and the AWS family has none): it is a client of
//
//   - the catalog's admin REST API (--catalog, env TCS_CATALOG_URL, default
//     http://127.0.0.1:8080): tenants, hostnames, and the admin operations
//     GET /v1/admin/export (every tenant, tombstones included, with the claim
//     versions of its hostnames) and POST /v1/admin/resync (re-emit tenants
//     through the outbox and the stream);
//   - each region's tcs gRPC server (--regions REGION=HOST:PORT,…, env
//     TCS_REGIONS, default the three regions of `make run` on
//     127.0.0.1:9001-9003): tcs.v1.TenantContextService/Lookup, and
//     tcs.admin.v1.ReplicaAdmin (ScanDocs, ScanHosts) on the same port, which
//     reads the replica table page by page, never the cache.
//
// Each takes its own bearer token, with no default: the catalog's (--token,
// env TCS_ADMIN_TOKEN, else TCS_READER_TOKEN; admin for writes), the
// regions' Lookup (--lookup-token, env TCS_LOOKUP_TOKEN; role lookup) and
// their ReplicaAdmin (--scan-token, env TCS_SCAN_TOKEN; role replica-scan,
// for verify and repair), or the reference in a named context (see
// Contexts). -h never shows a token. gRPC is TLS to regions
// that are not on loopback and plaintext to loopback ones; --tls or
// --ca-file (env TCS_CA_FILE) makes it TLS everywhere, --insecure (env
// TCS_INSECURE=true) plaintext everywhere (with a warning for non-loopback
// regions); an http:// --catalog off loopback is refused without
// --insecure. --cert/--key add a client certificate for mutual TLS,
// --server-name overrides the name checked. An https --catalog uses the
// same TLS options.
//
// token new --role ROLE --name NAME [--append FILE] issues a credential:
// it prints a new random token (32 bytes, base64url) once, and its line
// for the servers' --tokens-file (`ROLE sha256:<hex> NAME`), which --append
// adds to FILE (mode 0600; a name already there is an error). token digest
// --role ROLE --name NAME prints the line of a token read from stdin. So tcsctl works the same on the embedded family (`make run`)
// and on the AWS deployment.
//
// # Commands
//
//	tcsctl lookup HOSTNAME [--region R | --addr HOST:PORT] [-o json|yaml|table]
//	tcsctl get TENANT_ID [-o json|yaml|table]
//	tcsctl tenant list [--limit N] [-o table|json|yaml]
//	tcsctl tenant get TENANT_ID [-o table|json|yaml]
//	tcsctl tenant create -f FILE [-o text|json|yaml]
//	tcsctl tenant apply -f FILE [-o text|json|yaml]
//	tcsctl tenant patch TENANT_ID (--set FIELD=VALUE… | -f PATCH) [--if-version N] [-o text|json|yaml]
//	tcsctl tenant delete TENANT_ID [--if-version N]
//	tcsctl tenant history TENANT_ID [--limit N] [-o table|json|yaml|jsonl]
//	tcsctl placement [--where EXPR] [--weight users|tenants|label:NAME] [--top K] [--max-load N [--add-host NAME]…] [-o table|json|yaml]
//	tcsctl wait TENANT_ID --version V [--timeout D] [-o text|json|yaml]
//	tcsctl move [run] TENANT_ID [--to JSON] [--copy-cmd CMD | --copied] [--max-lag D]
//	tcsctl move status TENANT_ID [-o text|json|yaml] | move cancel TENANT_ID | move reverse TENANT_ID
//	tcsctl resync (--all | --tenant ID… | --file IDS) [--region R…] [--batch N] [--dry-run] [-o text|json|yaml] [--yes]
//	tcsctl verify [--region R…] [-o table|json|yaml] [--recheck N] [--settle D] [--digest] [--metrics-file PATH]
//	tcsctl repair [--region R…] [--dry-run] [--wait D] [-o table|json|yaml] [--yes]
//	tcsctl transform --where EXPR --set FIELD=VALUE… [--dry-run] [-o text|json|yaml] [--yes]
//	tcsctl backfill --from FILE.jsonl [--on-error abort|skip] [--dry-run] [-o text|json|yaml] [--yes]
//	tcsctl export [--to FILE.jsonl [--force]] [--include-deleted]
//	tcsctl audit [list] (--tenant ID | --resync) [--limit N] [-o jsonl|json|yaml|table]
//	tcsctl audit verify (--tenant ID… | --resync | --all) [-o text|json|yaml]
//	tcsctl config get-contexts | current-context | use-context NAME | set-context NAME [flags]
//	tcsctl completion bash|zsh|fish|powershell
//	tcsctl version (or --version)
//
// # The command line
//
// tcsctl is built on github.com/spf13/cobra, the library of kubectl,
// etcdctl, helm and the GitHub CLI: SREs get the conventions they know
// from those tools without tcsctl carrying its own parser. -h, --help and
// `tcsctl help COMMAND` print help on stdout (exit 0); bad usage (an
// unknown command or flag, a wrong number of arguments, a bad flag value)
// prints the error and a pointer to --help on stderr (exit 2); a mistyped
// command gets "Did you mean this?"; `completion SHELL` prints a
// completion script for bash, zsh, fish or PowerShell (commands, flags, -o
// values, roles, contexts, and tenant ids read from the catalog). Flags
// are GNU style (--flag, -o json, -ojson); the Go style of earlier
// versions (-flag, -flag=value) is still accepted for every long flag.
//
// Every command that prints data takes -o (--output). get and lookup keep
// JSON as their default, tenant list, tenant get, tenant history, placement,
// verify and repair a table, transform, resync, backfill, audit verify and the tenant
// writes a text summary; audit keeps one JSON object a line (jsonl) as
// served. yaml is the JSON document in YAML (the same field names). export
// writes JSON Lines, its file format, and takes no -o; token and infra
// print text for people (and files for servers).
//
// # Tenants
//
// tenant manages tenants one at a time through the catalog's REST API
// (catalog/httpclient). create and apply read a document from -f FILE, JSON
// or YAML (- reads stdin; version, updated_at and updated_by are the
// catalog's and not sent). apply creates a tenant that does not exist and
// otherwise replaces it (PUT) with If-Match: the document's version if it
// has one (the output of tenant get -o yaml or an export line has: an
// edit of an older version is refused), else the version just read; a
// document the catalog already holds is left alone ("unchanged"). patch
// sends a JSON merge patch from --set (as transform's) or -f, with If-Match
// --if-version or the version just read. delete deletes (a tombstone),
// --if-version guarding it. history lists the tenant's audit records. A
// refusal of the catalog (invalid document, naming each field; unknown
// tenant; version changed; id or hostname taken) is exit 1, and nothing was
// written.
//
// # Moves
//
// move repoints a tenant at another database as a resumable workflow
// (catalog/move; docs/moves.md): PREPARED (the tenant read-only in its
// document, still ACTIVE), the barrier of tcsctl wait, the copy (--copy-cmd,
// run with sh -c and TCS_MOVE_TENANT and TCS_MOVE_{FROM,TO}_{ENGINE,HOST,
// PORT,NAME,REGION,SECRET_REF} in its environment; or by hand, then
// --copied), COPIED, the barrier again, SWITCHED (pointer flipped and flag
// cleared in one write), the barrier, COMPLETE. --to is merged over the
// current database. Each barrier wait is bounded by --max-lag (2m): past
// it the move stops at its step naming who lags (exit 1), as it does for
// the copy; the state is in the catalog, so running the command again (or
// move TENANT alone) resumes from the stored step after any interruption.
// move status shows the step and who lags; move cancel ends the move where
// it stands; move reverse undoes it (before the switch: ends at the old
// database; after: starts a move back). Input the move refuses (a malformed
// --to, the database the tenant is on, another move in progress) is exit 2
// and writes nothing; so is a step the catalog refuses (409 move_conflict).
// A tenant named status, cancel, reverse or run moves with move run NAME.
//
// # Placement
//
// placement shows where tenants' data lives: it lists every live tenant
// (those matching --where, the language of transform) and groups them by
// database.host; tenants without a database are counted apart and never
// moved. Per host it shows the tenants, their total weight and the --top K
// (default 3) heaviest. --weight says what a tenant weighs: users (the
// default: the users of its ACTIVE products; deactivated ones carry no
// load), tenants (1 each), or label:NAME (the label's value, a whole number
// 0 or more; a tenant without the label weighs 0 and is named on stderr,
// one with another value is an error naming it). It writes nothing.
//
// With --max-load N it suggests moves that bring every host to N or under
// (catalog/placement, a greedy bin packing, deterministic: the same
// tenants give the same moves). Hosts over N are taken heaviest first; from
// each, tenants move heaviest first (ties by id), each to the least-loaded
// other host (ties by name) only if that host stays within N, a tenant too
// heavy for it giving way to a lighter one; when one tenant alone is
// enough, the lightest such tenant moves. The targets are the hosts seen
// plus each --add-host NAME (repeatable: a new, empty server; written as the
// catalog writes database.host). A move never takes a host over N, no tenant
// moves twice, and a host the plan cannot bring within N keeps its tenants
// (its room stays for hosts that can be fixed) and is reported with a
// reason: tenant_too_heavy (a tenant weighs more than N on its own),
// no_target (no other host), no_room (the other hosts' room under N, all
// together, is less than its excess) or no_fit (room enough, in pieces its
// tenants do not fit). Then the exit code is 1. With --where, loads and
// moves count only the matching tenants.
//
// -o json (yaml: the same document) is stable, for scripts and tcsctl move:
//
//	{"weight": "users", "where": "", "unweighted": 0, "max_load": 100,
//	 "tenants": 6, "total_weight": 139,
//	 "hosts": [{"host": "db-1.internal", "added": false, "tenants": 4, "weight": 125,
//	            "heaviest": [{"tenant": "acme", "weight": 70}, …],
//	            "tenants_after": 3, "weight_after": 95}, …],
//	 "no_database": {"tenants": 1, "weight": 4},
//	 "moves": [{"tenant": "bolt", "from": "db-1.internal", "to": "db-2.internal", "weight": 30}],
//	 "unresolved": [{"host", "weight", "excess", "reason", "detail", "tenants"}]}
//
// weight is --weight as given; where the --where condition ("" if none);
// unweighted the tenants --weight label:NAME weighed 0 for want of the
// label; max_load 0 when no plan was asked for (moves and unresolved are then
// empty, and the *_after figures equal the others). hosts are heaviest first
// by weight before the moves (ties by name; added hosts after the others of
// their weight); moves are in the order planned; unresolved are heaviest
// first, and their tenants, present only for tenant_too_heavy, are the
// tenants heavier than max_load. Other lists are [] when empty, never null.
//
// # Confirmation
//
// Commands that may write many tenants — transform, backfill, repair,
// resync --all and resync --file — ask "… Continue? [y/N]" on stderr when
// stdin is a terminal and go on only on y or yes (anything else: exit 1,
// nothing changed). When stdin is not a terminal (a script, a pipe, cron),
// or is the command's input (backfill --from -, resync --file -), they
// refuse to start (exit 2, nothing changed) unless --yes (-y) is given.
// --dry-run needs no confirmation. resync --tenant lists its ids itself and
// is not asked about.
//
// # Contexts
//
// A config file holds named contexts: $TCSCTL_CONFIG, else
// $XDG_CONFIG_HOME/tcsctl/config.yaml, else ~/.config/tcsctl/config.yaml.
//
//	current-context: prod
//	contexts:
//	  prod:
//	    catalog: https://catalog.prod.example.com
//	    regions: us-east-1=tcs.use1.example.com:443,eu-west-1=tcs.euw1.example.com:443
//	    ca-file: /etc/tcs/ca.pem          # also cert, key, server-name, tls, insecure
//	    token: {env: TCS_PROD_ADMIN_TOKEN}
//	    scan-token: {file: ~/.config/tcsctl/prod-scan.token}
//	    # lookup-token likewise
//
// Credentials are references: the name of an environment variable or the
// path of a file holding the token, never the token. A token written in the
// file, a token file that group or others can read, and a config file that
// group or others can write (they could point the references elsewhere) are
// refused with an error naming them. Each setting comes from its flag if
// given, else its environment variable, else the context (--context NAME,
// else env TCSCTL_CONTEXT, else current-context), else the default. `config
// set-context NAME --catalog … --token-env VAR …` creates or changes a
// context (writing the file mode 0600; --token is refused), `use-context`
// switches, `current-context` prints it (exit 1 if none), `get-contexts`
// lists them.
//
// lookup asks a region's lookup server (the first of --regions unless
// --region or --addr says otherwise) and prints the answer (JSON by
// default): the tenant, the answering region, whether it was stale and its
// age. get prints the tenant as the catalog stores it.
//
// resync re-emits the current state of tenants — every stored tenant with
// --all (tombstones included), the ids given with --tenant (repeatable,
// comma-separated lists allowed) or read from --file (one per line, #
// comments, - for stdin) — in requests of up to 1000 (--batch). Each event
// carries the whole document and its claims; replicas apply it even at an
// equal version, so it repairs corrupted content, but never roll a newer
// version back. --region limits it to some regions. Ids the catalog never
// saw are named at the end (exit 1).
//
// verify reads the source of truth (export), then every region (ScanDocs and
// ScanHosts, in parallel), and reports, per region:
//
//	missing_tenant     the region has no document of a tenant (or tombstone)
//	stale_version      the region holds an older version
//	ahead_version      the region holds a newer version than the truth
//	content_mismatch   same version, different content (names the fields)
//	unknown_tenant     a document of a tenant the truth never had
//	unmapped_hostname  a hostname the truth assigns maps to no tenant
//	wrong_owner        a hostname maps to another tenant than in the truth
//	claim_version      same owner, different claim version
//	orphaned_hostname  the region maps a hostname no tenant holds
//
// Writes go on during a verify, so a finding is only reported if a re-check
// pass (after --settle, default 500ms; up to --recheck passes, default 3)
// finds it again while the versions of the tenants it concerns stayed the
// same in the truth. A finding about a tenant that moved is checked again
// in the next pass; tenants still moving after the last pass are listed as
// "not judged" and do not count as drift. Replication lag is thus not
// drift. verify keeps per tenant only a version and hashes of its fields, so
// it fits millions of tenants in memory. Output: a table with a summary line,
// or -o json or yaml ({"clean", "regions", "tenants", "hostnames", "passes",
// "findings": [{"region", "kind", "tenant_id", "hostname", "truth_version",
// "region_version", "truth_owner", "region_owner", "truth_claim_version",
// "region_claim_version", "fields", "detail"}], "unsettled"}).
//
// With --digest, verify first compares bucket digests (internal/digest: 4,096
// buckets by hash of tenant id) that the catalog (GET /v1/admin/digests) and
// each region's tcs node (tcs.admin.v1.ReplicaAdmin/Digests) compute from
// their own stores: when every region's equal the truth's, the report is
// clean and no document crossed the wire. When a region's differ (drift, or
// a change on its way), stderr names it and the full verify runs.
//
// With --metrics-file, verify also writes its result in Prometheus' text
// format (replaced atomically) for the node exporter's textfile collector,
// so that a scheduled verify feeds alerts (infra/prometheus: TCSRegionsDiverged,
// TCSVerifyNotRunning): tcs_verify_findings{region} (0 when the region
// agrees), tcs_verify_unsettled_tenants, tcs_verify_completed (0 when the run
// failed before judging; the file then holds no findings) and
// tcs_verify_last_run_timestamp_seconds.
//
// repair runs verify, then resyncs exactly what drifted, to the regions
// where it drifted: a tenant's document by resyncing the tenant; a hostname
// by resyncing the tenant that holds it in the truth; an orphaned hostname
// by resyncing the tenant the region maps it to, with the hostname to settle
// (the catalog re-emits its release). It prints each resync and why, and
// what it cannot repair and why (a version or claim version above the
// truth's: resync never goes back; a tenant the truth never had). Then it
// verifies again until clean or --wait (default 30s; 0 skips it) runs out.
// --dry-run prints the plan only.
//
// transform changes every live tenant matching --where through the catalog:
// it reads each tenant, evaluates the condition, and sends the --set fields
// as a JSON merge patch with If-Match: "<version read>". On a version
// conflict it re-reads the tenant and evaluates again (it may no longer
// match: skipped), up to --retries times; so a concurrent writer causes
// retries, never a lost update. --dry-run prints, per tenant, each field's
// old and new value and the hostnames whose lookups the change affects, and
// writes nothing. It reports changed, unchanged (already as wanted),
// skipped and failed tenants, naming the cause (exit 1 if any failed).
// With --workers N above 1 it lists the catalog in segments
// (GET /v1/tenants?segment=I&segments=S), one lister each, S the largest
// power of two up to N and 64, so that the pages in flight — and on
// DynamoDB their writes — fall in different outbox shards rather than
// queueing on one; a catalog that does not list by segment is listed with
// one lister (saying so on stderr).
//
// --set FIELD=VALUE takes a dotted path under database, hostnames, labels,
// products, region or status (id, version and updated_* belong to the
// catalog): database.host=db-9, products.jira.users=30, labels.tier=gold.
// VALUE is JSON if it parses as JSON (6432, true, ["a.example.com"],
// "quoted") and a string otherwise; null removes the field (labels.old=null).
//
// The --where language is small and cannot do harm: no calls, no loops, no
// side effects; RE2 regular expressions run in linear time; an expression is
// at most 4096 bytes and 64 levels deep.
//
//	expr     = or;  or = and { "||" and };  and = unary { "&&" unary }
//	unary    = "!" unary | compare
//	compare  = operand [ ("==" | "!=" | "<" | "<=" | ">" | ">=" | "=~" | "!~" | "in" | "contains") operand ]
//	operand  = path | "string" | 'string' | number | true | false | null | [literal, …] | ( expr )
//	path     = name { "." name }   e.g. database.host, products.jira.users, labels.tier, hostnames.0
//
// A path reads the tenant as the REST API shows it; a missing one is null. Its
// first name must be a tenant field and a database field must exist, so a
// typo is an error, not a condition that silently matches nothing. ==/!=
// compare any values (no type coercion); ordering needs two numbers or two
// strings (a missing field is neither less nor greater); =~/!~ match a
// regular expression; in tests membership of a list; contains tests a list
// element, an object key or a substring. Examples:
//
//	database.host == "db-7.us-east-1.internal" && status == "ACTIVE"
//	products.jira.users >= 100 && region in ["us-east-1", "us-west-2"]
//	hostnames contains "acme.example.com" || labels.tier == null
//	database.host =~ "^db-(7|8)\\." && !(products contains "confluence")
//
// backfill imports tenants from JSON Lines, one tenant document per line
// (blank lines ignored; version, updated_at and updated_by are dropped, so
// an export backfills as it is). Every line is checked as the catalog
// would (strict fields, secrets refused, hostname rules) and against the
// rest of the file (an id or hostname used twice). Bad lines are reported
// with their line numbers. With --on-error abort (the default) the whole
// file is checked first, then checked against the catalog (an id that exists
// with another document, a hostname another tenant holds), and nothing is
// written if any line is bad; should the catalog still refuse a write (a
// race with another writer), the tenants this run created are deleted again.
// With --on-error skip the good lines are written and the bad ones
// reported. A tenant that already exists with the same document counts as
// already present, so a backfill can be run again. --dry-run checks
// everything, writes nothing.
//
// export writes every live tenant (with --include-deleted, tombstones too)
// as JSON Lines in the catalog's page order, exactly as the catalog sent each document, to
// stdout or to --to FILE (written as FILE.partial, renamed when complete).
// Files are created mode 0600 with O_EXCL and O_NOFOLLOW: a FILE that
// exists, or a FILE.partial no checkpoint resumes (a symbolic link
// included), is an error naming it; --force replaces them, FILE atomically
// (renamed over) once the export is complete. Checkpoint files are written
// the same way (a new 0600 file renamed over the old one).
//
// audit lists a tenant's audit records (--tenant) or those of resync and
// resync-all (--resync), newest first, one JSON object a line exactly as
// the catalog serves them (-o json, yaml or table: all of them at once).
// audit verify walks hash chains through the
// catalog API (GET /v1/tenants/{id}/history, GET /v1/admin/history): each
// record's hash must be the SHA-256 of its canonical encoding, its
// prev_hash the hash of the record before, the versions 1, 2, 3… with none
// missing up to the tenant's version (for --all, read from the export; a
// deleted tenant's newest record must be its delete). Each problem is a
// line naming the tenant and version ("tenant acme: version 3: altered: …";
// -o json or --json: a report per chain, a line each; -o yaml: a document
// each) and the exit code is 1. Records written
// before chaining (no hash) are counted, not checked.
//
// # Long-running commands
//
// resync, transform, backfill and export (and verify and repair for
// progress and --rate) share:
//
//   - a progress bar with count, rate and ETA on stderr when it is a
//     terminal, nothing otherwise;
//   - --rate N: at most N tenants (verify, repair: records read) per second,
//     so that a full resync does not starve production traffic;
//   - --workers N: requests in flight (default max(2, GOMAXPROCS));
//   - resumability: a checkpoint file (--checkpoint FILE; default a file
//     named after the command and the work in TCS_CHECKPOINT_DIR, else the
//     user cache directory's tcsctl/, else ./.tcsctl/; "off" disables it).
//     Running the same command again continues where it stopped, saying so;
//     --restart starts over; a checkpoint of other work is refused; a
//     completed run removes it. verify and repair compare a moment's state
//     and start afresh; a dry run writes nothing and keeps no checkpoint;
//   - Ctrl-C (or SIGTERM) stops cleanly: no new request is started,
//     requests in flight finish, the checkpoint is saved, exit code 130.
//
// The checkpoint is JSON:
//
//	{"version": 1, "command": "resync", "key": "<sha256 of the work>",
//	 "token": "<where to continue>", "offset": 0, "done": 12000, "updated_at": "…"}
//
// token is the catalog page token of the first page not done (resync --all,
// transform with one lister, export; a transform by segment saves
// "segments:" and each segment's page token, and resumes with that many
// segments whatever --workers says), the index of the first id not done (resync --tenant,
// --file), or the number of input lines done (backfill); offset is the bytes
// of FILE.partial already written (export); done counts items for progress.
// Work is done in batches that finish out of order; the checkpoint moves
// past a batch only when every batch before it is done, so resuming may redo
// a few batches — harmless, since every write of tcsctl is idempotent.
//
// Errors name the tenant (or the input line) and the cause; requests that
// fail because the catalog is unavailable are retried with backoff.
//
// # Exit codes
//
//	0    success; verify: clean
//	1    a finding: verify found drift; repair left drift or found what it
//	     cannot repair; lookup/get found nothing; resync named unknown ids;
//	     transform had failures; backfill had bad lines; placement left
//	     hosts over --max-load; the catalog refused
//	     a tenant command (invalid, not found, version changed, taken);
//	     config current-context has none; a confirmation was declined
//	2    an error: bad usage (on stderr, with a pointer to --help; also
//	     a many-tenant write without --yes and no terminal to ask),
//	     unreachable or refusing system (unauthorized, unavailable)
//	130  interrupted (Ctrl-C or SIGTERM); progress saved
package main
