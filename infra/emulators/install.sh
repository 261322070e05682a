#!/usr/bin/env bash
# Installs the local AWS stand-ins the tests use into .emulators/ at the repo
# root (gitignored): DynamoDB Local (AWS's jar, shipped inside the npm package
# amplify-dynamodb-simulator), kinesalite and fauxqs. Idempotent: a second run
# with the same versions does nothing. Needs Node.js 20+ with npm, sha256sum (or
# shasum); installs a headless JRE with apt-get only when java is missing.
#
# Supply chain: the simulator's archive and the DynamoDB Local jar are checked
# against the SHA-256 pinned below (the jar again on every run); kinesalite,
# fauxqs and everything they depend on come from the committed lockfile
# (infra/emulators/npm/package-lock.json, each package with its integrity
# hash) through `npm ci --ignore-scripts`, so no package's install script
# runs. The one package with an install script, leveldown (an optional
# dependency of kinesalite), is loaded only for kinesalite's on-disk mode,
# which the tests do not use.
#
# To move to another version: change it here (simulator) or in
# infra/emulators/npm/package.json, then run `npm install --ignore-scripts
# --package-lock-only` in infra/emulators/npm (or compute the new archive and
# jar digests from `npm pack amplify-dynamodb-simulator@VERSION`), review the
# lockfile diff and commit it.
#
#   infra/emulators/install.sh            # into <repo>/.emulators
#   EMULATORS_DIR=/some/dir infra/emulators/install.sh
#
# DynamoDB Local is under AWS's DynamoDB Local licence (development and
# testing use); it is installed, never committed.
set -euo pipefail

DYNAMODB_SIMULATOR_VERSION=2.9.30
# SHA-256 of amplify-dynamodb-simulator-2.9.30.tgz as the npm registry serves
# it (its sha512 integrity is xTeeRLvz…AnSewQ==) and of the DynamoDBLocal.jar
# inside it.
DYNAMODB_SIMULATOR_SHA256=3503ffac19f183407909fecdacf4db51ab1fdad1da7b2f177016670b2d80e4b9
DYNAMODB_LOCAL_JAR_SHA256=454305e9bc3e6ebcca5b62569869e31563b8d7e346474e94557b2600702146c7

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${EMULATORS_DIR:-$repo/.emulators}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

# check FILE WANT: fail naming the file unless its SHA-256 is WANT.
check() {
	local got
	got=$(sha256 "$1")
	if [ "$got" != "$2" ]; then
		echo "install.sh: $1: SHA-256 $got, want $2 (pinned in infra/emulators/install.sh); refusing to use it" >&2
		return 1
	fi
}

# Node.js 20 or newer: the locked packages (the AWS SDK inside fauxqs) need
# it. Debian 12's own nodejs is 18; CI images carry NodeSource's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "install.sh: node and npm not found; install Node.js 20 or newer (with npm) first" >&2
	exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
	echo "install.sh: Node.js $(node --version) is too old; the emulators need Node.js 20 or newer" >&2
	exit 1
fi

if ! command -v java >/dev/null 2>&1; then
	echo "install.sh: java not found; installing default-jre-headless" >&2
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends default-jre-headless
fi

# DynamoDB Local: npm pack the simulator and keep only package/emulator.
ddb="$dir/dynamodb-local"
stamp="$ddb/.installed-amplify-dynamodb-simulator-$DYNAMODB_SIMULATOR_VERSION"
if [ ! -f "$stamp" ] || [ ! -f "$ddb/DynamoDBLocal.jar" ]; then
	tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "amplify-dynamodb-simulator@$DYNAMODB_SIMULATOR_VERSION" >/dev/null)
	check "$tmp/amplify-dynamodb-simulator-$DYNAMODB_SIMULATOR_VERSION.tgz" "$DYNAMODB_SIMULATOR_SHA256"
	tar -xzf "$tmp/amplify-dynamodb-simulator-$DYNAMODB_SIMULATOR_VERSION.tgz" -C "$tmp" package/emulator
	check "$tmp/package/emulator/DynamoDBLocal.jar" "$DYNAMODB_LOCAL_JAR_SHA256"
	rm -rf "$ddb"
	mv "$tmp/package/emulator" "$ddb"
	touch "$stamp"
	rm -rf "$tmp"
	trap - EXIT
	echo "install.sh: DynamoDB Local installed in $ddb"
else
	check "$ddb/DynamoDBLocal.jar" "$DYNAMODB_LOCAL_JAR_SHA256"
	echo "install.sh: DynamoDB Local already installed in $ddb"
fi

# kinesalite and fauxqs: the committed npm project, installed exactly as
# locked. The stamp holds the digests of package.json and the lockfile, so a
# changed lockfile reinstalls. The install is made next to the old one and
# swapped in, so that an emulator started meanwhile (tests of another package)
# finds a complete install, and a failed install leaves the old one.
node="$dir/node"
src="$repo/infra/emulators/npm"
want="$(sha256 "$src/package.json") $(sha256 "$src/package-lock.json")"
if [ ! -f "$node/.installed" ] || [ "$(cat "$node/.installed")" != "$want" ] || [ ! -d "$node/node_modules" ]; then
	new=$(mktemp -d "$dir/.node.XXXXXX")
	trap 'rm -rf "$new"' EXIT
	cp "$src/package.json" "$src/package-lock.json" "$new/"
	(cd "$new" && npm ci --ignore-scripts --silent --no-audit --no-fund)
	echo "$want" >"$new/.installed"
	chmod 755 "$new"
	old=""
	if [ -e "$node" ]; then
		old="$dir/.node.old.$$"
		mv "$node" "$old"
	fi
	mv "$new" "$node"
	trap - EXIT
	if [ -n "$old" ]; then rm -rf "$old"; fi
	echo "install.sh: kinesalite and fauxqs installed in $node from infra/emulators/npm/package-lock.json"
else
	echo "install.sh: kinesalite and fauxqs already installed in $node"
fi
