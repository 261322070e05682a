#!/usr/bin/env bash
# make run-aws-local: the AWS topology of docker-compose.yml without Docker.
# Starts the local emulators (DynamoDB Local, kinesalite, fauxqs) on
# loopback, creates the tables, stream and topics with `tcsctl infra apply`,
# then runs every binary as its own process: catalog, two streamer publish
# (they share the outbox's shards through leases), and per region one
# streamer apply and one tcs. Ctrl-C stops everything.
#
# A publisher that dies is reported (on stderr, naming its log) and the rest
# keeps running: the other publisher takes its shards over within the lease
# duration (TCS_PUBLISH_LEASE_DURATION, 10s by default). Any other process
# dying, or the last publisher, stops everything, as there is nothing to take
# its place.
#
# Everything it starts dies with it, even if it is killed with SIGKILL: each
# child runs under `setpriv --pdeathsig KILL` (util-linux), so the kernel
# kills it when the script dies. A port that something already listens on
# (an emulator left over from an earlier run, say) stops the start with a
# message naming it, instead of silently using the old process.
#
# Ports (override with the environment): DynamoDB 8000, Kinesis 4567,
# SNS/SQS 4566, catalog 8080, regions 9001-9003. Metrics ports (/metrics,
# /healthz, /readyz) count from METRICS_PORT (M, default 9180): catalog M,
# the publishers M+1 and M+6, the Nth region's (from 0) applier M+2+10N and
# tcs M+3+10N. Logs go to $LOGS (default .bin/aws-local-logs/).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

emu=${EMULATORS_DIR:-$repo/.emulators}
DYNAMODB_PORT=${DYNAMODB_PORT:-8000}
KINESIS_PORT=${KINESIS_PORT:-4567}
SNSSQS_PORT=${SNSSQS_PORT:-4566}
CATALOG_ADDR=${CATALOG_ADDR:-127.0.0.1:8080}
METRICS_PORT=${METRICS_PORT:-9180}
REGIONS=${REGIONS:-us-east-1=127.0.0.1:9001,eu-west-1=127.0.0.1:9002,ap-southeast-2=127.0.0.1:9003}
LOGS=${LOGS:-$repo/.bin/aws-local-logs}
GO=${GO:-go}

if [ ! -f "$emu/dynamodb-local/DynamoDBLocal.jar" ] || [ ! -d "$emu/node/node_modules/kinesalite" ] || [ ! -d "$emu/node/node_modules/fauxqs" ]; then
	echo "run-aws-local: emulators missing in $emu; run infra/emulators/install.sh (make run-aws-local does)" >&2
	exit 1
fi

# Refuse ports in use before starting anything.
check_port_free() { # name, port, variable to change
	if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
		echo "run-aws-local: port $2 ($1) is already in use: another process listens on 127.0.0.1:$2 (an earlier run-aws-local or emulator still running? see: ss -ltnp 'sport = :$2'). Stop it, or set $3 to another port." >&2
		exit 1
	fi
}
check_port_free DynamoDB "$DYNAMODB_PORT" DYNAMODB_PORT
check_port_free Kinesis "$KINESIS_PORT" KINESIS_PORT
check_port_free SNS/SQS "$SNSSQS_PORT" SNSSQS_PORT
check_port_free catalog "${CATALOG_ADDR##*:}" CATALOG_ADDR
for pair in ${REGIONS//,/ }; do check_port_free "tcs ${pair%%=*}" "${pair##*:}" REGIONS; done
metrics_ports=("$METRICS_PORT" $((METRICS_PORT + 1)) $((METRICS_PORT + 6)))
n=0
for pair in ${REGIONS//,/ }; do
	metrics_ports+=($((METRICS_PORT + 2 + 10 * n)) $((METRICS_PORT + 3 + 10 * n)))
	n=$((n + 1))
done
for port in "${metrics_ports[@]}"; do check_port_free metrics "$port" METRICS_PORT; done

# The kernel kills each child when this script dies (parent-death signal),
# however it dies. The signal is tied to the parent process: bash starts a
# background command by forking itself and exec-ing the command, so the
# parent is this script.
if command -v setpriv >/dev/null 2>&1; then
	diewithme=(setpriv --pdeathsig KILL)
else
	echo "run-aws-local: setpriv (util-linux) not found: the processes started here will outlive this script if it is killed" >&2
	diewithme=()
fi

mkdir -p "$LOGS" .bin
echo "building binaries into .bin/ ..."
$GO build -o .bin/ ./cmd/catalog ./cmd/streamer ./cmd/tcs ./cmd/tcsctl

pids=()
names=()
cleanup() {
	trap - EXIT INT TERM
	echo
	echo "stopping ..."
	# The binaries first (tcs nodes remove their SQS queues on a clean stop,
	# so SNS/SQS must still run), then the three emulators.
	# Only the binaries still running: `wait` on one that the watch loop's
	# `wait -n` already reaped (a publisher that died) can hang bash.
	local binaries=() pid
	for pid in "${pids[@]:3}"; do
		if kill -0 "$pid" 2>/dev/null; then binaries+=("$pid"); fi
	done
	if [ ${#binaries[@]} -gt 0 ]; then
		kill -TERM "${binaries[@]}" 2>/dev/null || true
		wait "${binaries[@]}" 2>/dev/null || true
	fi
	kill -TERM "${pids[@]:0:3}" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name, command...
	local name=$1
	shift
	"${diewithme[@]}" "$@" >"$LOGS/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

# The emulators run in their own session, so that Ctrl-C (sent to the whole
# foreground process group) stops the binaries first and the emulators only
# afterwards, from cleanup: a stopping tcs node still needs SNS/SQS to
# remove its queue. (setsid runs the command in the same process — the child
# bash forks for `&` leads no process group — so the parent-death signal that
# setpriv sets stays on the emulator: java and node are started directly.)
start_emulator() { # name, command...
	local name=$1
	shift
	setsid "${diewithme[@]}" "$@" >"$LOGS/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

wait_port() { # name, port
	local i
	for ((i = 0; i < 600; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "run-aws-local: $1 did not listen on 127.0.0.1:$2 within 60s; see $LOGS/$1.log" >&2
	exit 1
}

# DynamoDB Local has no bind-address option: it listens on every interface.
# (Run in its own folder: DynamoDB Local writes a metadata file where it runs.)
start_emulator dynamodb env -C "$emu/dynamodb-local" java -Djava.library.path=./DynamoDBLocal_lib \
	-jar DynamoDBLocal.jar -inMemory -sharedDb -disableTelemetry -port "$DYNAMODB_PORT"
start_emulator kinesis env KINESALITE_MODULE="$emu/node/node_modules/kinesalite" KINESALITE_PORT="$KINESIS_PORT" \
	node infra/emulators/kinesalite.js
start_emulator sns-sqs node infra/emulators/fauxqs.js "$emu/node/node_modules/fauxqs" "$SNSSQS_PORT"
wait_port dynamodb "$DYNAMODB_PORT"
wait_port kinesis "$KINESIS_PORT"
wait_port sns-sqs "$SNSSQS_PORT"

export TCS_BACKEND=aws TCS_AWS_PREFIX=${TCS_AWS_PREFIX:-tcs}
# kinesalite has no read limit: poll as often as the tests like (the default,
# 1s, is for real Kinesis).
export TCS_POLL_INTERVAL=${TCS_POLL_INTERVAL:-100ms}
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$DYNAMODB_PORT
export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:$KINESIS_PORT
export AWS_ENDPOINT_URL_SNS=http://127.0.0.1:$SNSSQS_PORT
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$SNSSQS_PORT
# make run's development tokens unless set (accepted on loopback addresses only).
export TCS_ADMIN_TOKEN=${TCS_ADMIN_TOKEN:-dev-admin-token} TCS_READER_TOKEN=${TCS_READER_TOKEN:-dev-reader-token}
export TCS_LOOKUP_TOKEN=${TCS_LOOKUP_TOKEN:-dev-lookup-token} TCS_SCAN_TOKEN=${TCS_SCAN_TOKEN:-dev-scan-token}

region_names=$(echo "$REGIONS" | tr ',' '\n' | cut -d= -f1 | paste -sd, -)
.bin/tcsctl infra apply --regions "$region_names" --shards 2

start catalog .bin/catalog --addr "$CATALOG_ADDR" --metrics-addr "127.0.0.1:$METRICS_PORT"
start publish-1 .bin/streamer publish --worker-id publish-1 --metrics-addr "127.0.0.1:$((METRICS_PORT + 1))"
start publish-2 .bin/streamer publish --worker-id publish-2 --metrics-addr "127.0.0.1:$((METRICS_PORT + 6))"
# Several appliers and lookup servers on one machine: each its own metrics port.
n=0
metrics_lines=""
for pair in ${REGIONS//,/ }; do
	r=${pair%%=*}
	addr=${pair#*=}
	start "apply-$r" .bin/streamer apply --region "$r" --worker-id "apply-$r-1" --metrics-addr "127.0.0.1:$((METRICS_PORT + 2 + 10 * n))"
	start "tcs-$r" .bin/tcs --region "$r" --addr "$addr" --node-id "local-$r" --metrics-addr "127.0.0.1:$((METRICS_PORT + 3 + 10 * n))"
	metrics_lines+=$(printf '\n  metrics %-15s apply http://127.0.0.1:%d   tcs http://127.0.0.1:%d' "$r" $((METRICS_PORT + 2 + 10 * n)) $((METRICS_PORT + 3 + 10 * n)))
	n=$((n + 1))
done
wait_port catalog "${CATALOG_ADDR##*:}"
for pair in ${REGIONS//,/ }; do wait_port "tcs-${pair%%=*}" "${pair##*:}"; done

first=${REGIONS%%,*}
cat <<BANNER

TCS is running on the AWS backends, against local emulators (one process per binary; logs in $LOGS/).
Ctrl-C stops everything.

  catalog admin REST API  http://$CATALOG_ADDR
$(for pair in ${REGIONS//,/ }; do printf '  tcs %-19s gRPC %s\n' "${pair%%=*}" "${pair#*=}"; done)
  metrics (/metrics, /healthz, /readyz): catalog http://127.0.0.1:$METRICS_PORT   publish http://127.0.0.1:$((METRICS_PORT + 1)) http://127.0.0.1:$((METRICS_PORT + 6))${metrics_lines}
  DynamoDB $AWS_ENDPOINT_URL_DYNAMODB   Kinesis $AWS_ENDPOINT_URL_KINESIS   SNS/SQS $AWS_ENDPOINT_URL_SNS

Try it:
  curl -s -X POST http://$CATALOG_ADDR/v1/tenants -H 'Authorization: Bearer $TCS_ADMIN_TOKEN' -H 'Content-Type: application/json' \\
    -d '{"id":"acme","hostnames":["acme.example.com"],"status":"ACTIVE","region":"us-east-1"}'
  go run github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 -plaintext -H 'authorization: Bearer $TCS_LOOKUP_TOKEN' \\
    -import-path proto -proto tcs/v1/tcs.proto -d '{"hostname":"acme.example.com"}' ${first#*=} tcs.v1.TenantContextService/Lookup

BANNER
# Watch the processes: a publisher's death is reported and survived while
# another publisher runs; any other death stops everything.
alive=("${pids[@]}")
while :; do
	wait -n "${alive[@]}" || true
	still=()
	for i in "${!pids[@]}"; do
		pid=${pids[$i]}
		[[ " ${alive[*]} " == *" $pid "* ]] || continue
		if kill -0 "$pid" 2>/dev/null; then
			still+=("$pid")
			continue
		fi
		name=${names[$i]}
		if [[ $name == publish-* ]]; then
			others=0
			for j in "${!names[@]}"; do
				if [[ ${names[$j]} == publish-* && $j != "$i" ]] && kill -0 "${pids[$j]}" 2>/dev/null; then
					others=$((others + 1))
				fi
			done
			if [ "$others" -gt 0 ]; then
				echo "run-aws-local: $name (pid $pid) died; the other publisher takes its outbox shards over. See $LOGS/$name.log" >&2
				continue
			fi
		fi
		echo "run-aws-local: $name (pid $pid) exited; stopping everything. See $LOGS/$name.log" >&2
		exit 1
	done
	alive=("${still[@]}")
done
