# The chaos benchmark, sourced by load-tests/bench.sh (it uses that script's helpers: spawn,
# note, log, fail, free_port, wait_port, wait_for, load, summarize, verdict, STACK_PIDS).
#
# A 3-node nats-server cluster from the shipped configs (nats/config/cluster-node{0,1,2}.conf:
# users per role, mutual TLS for clients and routes; ports moved to free ones on the command
# line, each node's store in its own folder), the request stream at R3, a gateway given all three
# nodes as its seed list, two synthetic workers, and a steady open-loop load of streamed 64-token
# completions whose answers are checked whole afterwards (`coder-load run --check-answers`).
# During the load, in order:
#   1. SIGKILL the node that leads the request stream; restart it BENCH_CHAOS_DOWN s later;
#   2. SIGKILL worker 1; restart it 4 s later;
#   3. SIGSTOP worker 2 for ack_wait + 2 s, then SIGCONT (its requests go to worker 1 meanwhile);
#   4. restart (SIGTERM, then start again) the node the gateway is connected to.
# Each is written to events.tsv (unix time, what) for `coder-load verdict chaos`.
#
# Knobs: BENCH_CHAOS_DURATION=60 BENCH_CHAOS_RATE=10 BENCH_CHAOS_TOKENS=64
#        BENCH_CHAOS_MS_PER_TOKEN=10 BENCH_CHAOS_SLOTS=8 BENCH_CHAOS_ACK_WAIT=5 BENCH_CHAOS_DOWN=6

CHAOS_NODE_PIDS=()
CHAOS_NODE_PORTS=()
CHAOS_MONITOR_PORTS=()
CHAOS_CLUSTER_PORTS=()
CHAOS_WORKER_PIDS=()
CHAOS_WORKER_PORTS=()
CHAOS_STARTS=0

# chaos_secrets DIR: a local CA and certificates (scripts/nats-pki.sh), a random password per
# user, exported for the nodes (nats/config reads them) and for chaos_spawn_as.
chaos_secrets() {
    "$ROOT/scripts/nats-pki.sh" "$1/pki" 2>/dev/null
    export NATS_SERVER_TLS_CERT="$1/pki/server.pem" NATS_SERVER_TLS_KEY="$1/pki/server-key.pem"
    export NATS_SERVER_TLS_CA="$1/pki/ca.pem"
    local role
    for role in GATEWAY WORKER MONITOR; do
        export "NATS_${role}_PASSWORD=$(openssl rand -hex 24)"
    done
    CHAOS_PKI="$1/pki"
}

# chaos_flags ROLE: the NATS flags of a service of ROLE (its password goes in the environment).
chaos_flags() {
    echo --nats-url "$CHAOS_URLS" --nats-user "$1" --nats-tls-ca "$CHAOS_PKI/ca.pem" \
        --nats-tls-cert "$CHAOS_PKI/$1.pem" --nats-tls-key "$CHAOS_PKI/$1-key.pem"
}

# chaos_spawn_as ROLE LOG COMMAND...: spawn with ROLE's password in CODER_NATS_PASSWORD, which
# the command line (and commands.txt) never shows.
chaos_spawn_as() {
    local role=$1 password_variable
    password_variable="NATS_${1^^}_PASSWORD"
    shift
    CODER_NATS_PASSWORD="${!password_variable}" spawn "$@"
}

# chaos_start_node DIR I: node I of the cluster, in the background, until it listens.
chaos_start_node() {
    local dir=$1 i=$2
    CHAOS_STARTS=$((CHAOS_STARTS + 1))
    mkdir -p "$dir/store/node$i"
    spawn "$dir/logs/nats-$i-$CHAOS_STARTS.log" env -C "$dir/store/node$i" "$NATS_BIN" \
        -c "$ROOT/nats/config/cluster-node$i.conf" -a 127.0.0.1 -p "${CHAOS_NODE_PORTS[$i]}" \
        -m "${CHAOS_MONITOR_PORTS[$i]}" --cluster "nats://127.0.0.1:${CHAOS_CLUSTER_PORTS[$i]}" \
        --routes "$CHAOS_ROUTES"
    CHAOS_NODE_PIDS[i]=$SPAWNED
    STACK_PIDS+=("$SPAWNED")
    wait_port "${CHAOS_NODE_PORTS[$i]}"
}

# chaos_start_worker DIR I: worker I (1 or 2), its metrics on a port kept across restarts.
chaos_start_worker() {
    local dir=$1 i=$2
    CHAOS_STARTS=$((CHAOS_STARTS + 1))
    # shellcheck disable=SC2046 # the flags are words without spaces
    chaos_spawn_as worker "$dir/logs/worker-$i-$CHAOS_STARTS.log" env RUST_LOG="$SERVICE_LOG" \
        "$WORKER_BIN" --metrics-listen "127.0.0.1:${CHAOS_WORKER_PORTS[$i]}" --backend synthetic \
        --model "$SYNTHETIC" --concurrency "$CHAOS_SLOTS" --synthetic-ms-per-token "$CHAOS_MS" \
        --ack-wait "$CHAOS_ACK_WAIT" --max-deliver 3 --stream-replicas 3 $(chaos_flags worker)
    CHAOS_WORKER_PIDS[i]=$SPAWNED
    STACK_PIDS+=("$SPAWNED")
}

# chaos_node_of SERVER_NAME: the index of node coder-nats-N.
chaos_node_of() { echo "${1##*-}"; }

# chaos_leader: the index of the node leading the request stream, asked of any live node.
chaos_leader() {
    local i leader
    for i in 0 1 2; do
        leader=$(curl -sf "http://127.0.0.1:${CHAOS_MONITOR_PORTS[$i]}/jsz?accounts=true&streams=true" |
            jq -r '.account_details[]?.stream_detail[]? | select(.name == "CODER_REQUESTS") | .cluster.leader // empty') || continue
        if [ -n "$leader" ]; then
            chaos_node_of "$leader"
            return
        fi
    done
    return 1
}

# chaos_gateway_node: the index of the node the gateway is connected to.
chaos_gateway_node() {
    local i
    for i in 0 1 2; do
        if curl -sf "http://127.0.0.1:${CHAOS_MONITOR_PORTS[$i]}/connz?limit=4096" |
            jq -e '[.connections[]? | select(.name // "" | startswith("gateway-"))] | length > 0' >/dev/null; then
            echo "$i"
            return
        fi
    done
    return 1
}

# chaos_event WHAT: notes WHAT with the time, for the verdict.
chaos_event() {
    printf '%s\t%s\n' "$(date +%s.%N)" "$1" >>"$CHAOS_EVENTS"
    log "chaos: $1"
}

# chaos_faults DIR: the four failures, in order, while the load runs.
chaos_faults() {
    local dir=$1 leader node down="${BENCH_CHAOS_DOWN:-6}"
    sleep 8
    leader=$(chaos_leader) || { fail "chaos: no node names a leader for CODER_REQUESTS"; return; }
    chaos_event "SIGKILL node $leader, the request stream's leader"
    kill -KILL "${CHAOS_NODE_PIDS[$leader]}"
    wait "${CHAOS_NODE_PIDS[$leader]}" 2>/dev/null || true
    sleep "$down"
    chaos_start_node "$dir" "$leader"
    chaos_event "node $leader restarted"
    sleep 6
    chaos_event "SIGKILL worker 1"
    kill -KILL "${CHAOS_WORKER_PIDS[1]}"
    wait "${CHAOS_WORKER_PIDS[1]}" 2>/dev/null || true
    sleep 4
    chaos_start_worker "$dir" 1
    chaos_event "worker 1 restarted"
    sleep 4
    chaos_event "SIGSTOP worker 2 for $((CHAOS_ACK_WAIT + 2)) s (ack_wait $CHAOS_ACK_WAIT s)"
    kill -STOP "${CHAOS_WORKER_PIDS[2]}"
    sleep $((CHAOS_ACK_WAIT + 2))
    kill -CONT "${CHAOS_WORKER_PIDS[2]}"
    chaos_event "SIGCONT worker 2"
    sleep 4
    node=$(chaos_gateway_node) || { fail "chaos: no node has the gateway's connection"; return; }
    chaos_event "restart node $node, the gateway's (SIGTERM, then start)"
    kill -TERM "${CHAOS_NODE_PIDS[$node]}"
    wait "${CHAOS_NODE_PIDS[$node]}" 2>/dev/null || true
    chaos_start_node "$dir" "$node"
    chaos_event "node $node restarted"
}

bench_chaos() {
    local dir="$OUT/10-chaos"
    local duration="${BENCH_CHAOS_DURATION:-60}" rate="${BENCH_CHAOS_RATE:-10}"
    local tokens="${BENCH_CHAOS_TOKENS:-64}"
    CHAOS_MS="${BENCH_CHAOS_MS_PER_TOKEN:-10}"
    CHAOS_SLOTS="${BENCH_CHAOS_SLOTS:-8}"
    CHAOS_ACK_WAIT="${BENCH_CHAOS_ACK_WAIT:-5}"
    CHAOS_EVENTS="$dir/events.tsv"
    mkdir -p "$dir/logs"
    : >"$CHAOS_EVENTS"
    log "10. chaos: 3-node secured NATS cluster (R3), 2 synthetic workers, $rate req/s for $duration s"
    chaos_secrets "$dir"
    local i routes=()
    for i in 0 1 2; do
        CHAOS_NODE_PORTS[i]=$(free_port)
        CHAOS_MONITOR_PORTS[i]=$(free_port)
        CHAOS_CLUSTER_PORTS[i]=$(free_port)
        routes+=("nats-route://127.0.0.1:${CHAOS_CLUSTER_PORTS[$i]}")
    done
    CHAOS_ROUTES=$(IFS=,; echo "${routes[*]}")
    CHAOS_URLS="tls://127.0.0.1:${CHAOS_NODE_PORTS[0]},tls://127.0.0.1:${CHAOS_NODE_PORTS[1]},tls://127.0.0.1:${CHAOS_NODE_PORTS[2]}"
    for i in 0 1 2; do chaos_start_node "$dir" "$i"; done

    local api_port metrics_port
    api_port=$(free_port)
    metrics_port=$(free_port)
    API_URL="http://127.0.0.1:$api_port"
    GATEWAY_METRICS="http://127.0.0.1:$metrics_port/metrics"
    # shellcheck disable=SC2046 # the flags are words without spaces
    chaos_spawn_as gateway "$dir/logs/gateway.log" env RUST_LOG="$SERVICE_LOG" "$GATEWAY_BIN" \
        --listen "127.0.0.1:$api_port" --metrics-listen "127.0.0.1:$metrics_port" \
        --models "$SYNTHETIC" --stream-replicas 3 --max-deliver 3 $(chaos_flags gateway)
    GATEWAY_PID=$SPAWNED
    STACK_PIDS+=("$SPAWNED")
    for i in 1 2; do
        CHAOS_WORKER_PORTS[i]=$(free_port)
        chaos_start_worker "$dir" "$i"
    done
    logged "$LOAD_BIN" wait-ready --url "$API_URL" --model "$SYNTHETIC" --timeout 60
    sleep "${BENCH_SETTLE:-3}"

    local redeliveries_before redeliveries_after status=0
    redeliveries_before=$(chaos_redeliveries)
    # Worker metrics are not accounted against: a killed worker's counters die with it. The
    # gateway's are, and every answer is checked whole against a reference answer. The load runs
    # in the background, the failures here (so the processes they restart are this shell's).
    spawn "$dir/load.log" "$LOAD_BIN" run --url "$API_URL" --model "$SYNTHETIC" \
        --metrics-url "$GATEWAY_METRICS" --rate "$rate" --duration "$duration" --stream \
        --max-tokens "$tokens" --arrival-seed 1 --timeout 120 --settle-timeout 30 \
        --check-answers --label chaos --out "$dir/chaos" --no-progress
    local load_pid=$SPAWNED
    chaos_faults "$dir"
    wait "$load_pid" || status=$?
    cat "$dir/load.log"
    case $status in
        0) ;;
        2) fail "chaos: accounting or answer check failed (see $dir/chaos/report.html)" ;;
        *) fail "chaos: coder-load run exit status $status" ;;
    esac
    redeliveries_after=$(chaos_redeliveries)
    stop_stack

    local summary="$dir/summary.md"
    summarize "$summary" "10. Chaos: failures on a 3-node NATS cluster under load" "" "chaos=$dir/chaos"
    {
        echo
        echo "nats-server cluster of 3 (nats/config/cluster-node*.conf: users per role, mutual TLS on"
        echo "client connections and routes), stream CODER_REQUESTS at R3, the gateway connected with the"
        echo "seed list of all three; 2 synthetic workers ($CHAOS_SLOTS slots, $CHAOS_MS ms/token, ack_wait"
        echo "${CHAOS_ACK_WAIT} s, max_deliver 3); open loop at $rate req/s (Poisson, seed 1) for $duration s,"
        echo "streamed completions of $tokens tokens, every answer checked against a reference answer to"
        echo "the same body after the run. Failures, from the load's start:"
        echo
    } >>"$summary"
    verdict "$summary" chaos --run "$dir/chaos" --events "$CHAOS_EVENTS" \
        --redeliveries $((redeliveries_after - redeliveries_before))
}

# chaos_redeliveries: the gateway's coder_queue_redeliveries_total, all models.
chaos_redeliveries() {
    curl -sf "$GATEWAY_METRICS" | awk '/^coder_queue_redeliveries_total/ { n += $NF } END { print n + 0 }'
}
