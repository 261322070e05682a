#!/bin/sh
# bench-deps.sh installs what the tcs/client benchmarks need beyond Go:
# Debian's redis-server, which BenchmarkRedisGET starts itself on a free
# 127.0.0.1 port (no persistence) and stops. Does nothing when redis-server
# is already on PATH. Runs apt-get through sudo when not root.
set -eu

if command -v redis-server >/dev/null 2>&1; then
	exit 0
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "bench-deps.sh: not root and no sudo; run as root: apt-get install -y --no-install-recommends redis-server" >&2
		exit 1
	fi
	sudo=sudo
fi

install() {
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
}
# A fresh machine may have no package lists yet.
install || { $sudo apt-get update && install; }

command -v redis-server >/dev/null 2>&1 || {
	echo "bench-deps.sh: redis-server still not on PATH after installing it" >&2
	exit 1
}
