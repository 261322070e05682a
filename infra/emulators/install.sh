#!/usr/bin/env bash
# Installs the local AWS stand-ins the tests use into .emulators/ at the repo
# root (gitignored): DynamoDB Local (AWS's jar, shipped inside the npm package
# amplify-dynamodb-simulator), kinesalite and fauxqs. Idempotent: a second run
# with the same versions does nothing. Needs node/npm; installs a headless JRE
# with apt-get only when java is missing.
#
#   infra/emulators/install.sh            # into <repo>/.emulators
#   EMULATORS_DIR=/some/dir infra/emulators/install.sh
#
# DynamoDB Local is under AWS's DynamoDB Local licence (development and
# testing use); it is installed, never committed.
set -euo pipefail

DYNAMODB_SIMULATOR_VERSION=2.9.30
KINESALITE_VERSION=3.3.3
FAUXQS_VERSION=1.9.2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${EMULATORS_DIR:-$repo/.emulators}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

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
	tar -xzf "$tmp"/amplify-dynamodb-simulator-*.tgz -C "$tmp" package/emulator
	rm -rf "$ddb"
	mv "$tmp/package/emulator" "$ddb"
	touch "$stamp"
	rm -rf "$tmp"
	trap - EXIT
	echo "install.sh: DynamoDB Local installed in $ddb"
else
	echo "install.sh: DynamoDB Local already installed in $ddb"
fi

# kinesalite and fauxqs: a private npm project in the same folder.
node="$dir/node"
want="kinesalite@$KINESALITE_VERSION fauxqs@$FAUXQS_VERSION"
if [ ! -f "$node/.installed" ] || [ "$(cat "$node/.installed")" != "$want" ]; then
	mkdir -p "$node"
	if [ ! -f "$node/package.json" ]; then
		printf '{"name":"tcs-emulators","private":true}\n' >"$node/package.json"
	fi
	# shellcheck disable=SC2086
	(cd "$node" && npm install --silent --no-audit --no-fund --save-exact $want)
	echo "$want" >"$node/.installed"
	echo "install.sh: $want installed in $node"
else
	echo "install.sh: $want already installed in $node"
fi
