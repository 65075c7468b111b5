#!/usr/bin/env bash
# Makes a local certificate authority and the certificates NATS TLS needs, with openssl:
#   scripts/nats-pki.sh [DIR]        (default .run/nats-pki, which git ignores)
# writes, in DIR:
#   ca.pem ca-key.pem                the CA (clients' --nats-tls-ca, the server's ca_file)
#   server.pem server-key.pem        nats-server, for clients and cluster routes; names
#                                    localhost, 127.0.0.1, ::1 and NATS_PKI_SERVER_NAMES
#                                    (comma-separated DNS names, e.g. nats.example.org)
#   gateway.pem gateway-key.pem      the gateway's client certificate (--nats-tls-cert/-key)
#   worker.pem worker-key.pem        the gpu-worker's
#   monitor.pem monitor-key.pem      the read-only monitoring user's
# Idempotent: a certificate that exists, is signed by DIR's CA and is valid for 30 more days is
# kept; anything else is made again (a new CA re-issues them all). For tests and local stacks:
# production certificates come from your own CA (e.g. cert-manager, infra/k8s/nats).
set -euo pipefail
DIR=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.run/nats-pki"}
DAYS=397
KEEP_SECONDS=$((30 * 24 * 3600))
mkdir -p "$DIR"
chmod 700 "$DIR"
cd "$DIR"
umask 077

log() { printf 'nats-pki: %s\n' "$*" >&2; }

fresh() { # fresh NAME: NAME.pem and its key exist, are valid long enough and chain to ca.pem
  [ -s "$1.pem" ] && [ -s "$1-key.pem" ] || return 1
  openssl x509 -checkend "$KEEP_SECONDS" -noout -in "$1.pem" >/dev/null 2>&1 || return 1
  [ "$1" = ca ] || openssl verify -CAfile ca.pem "$1.pem" >/dev/null 2>&1
}

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if ! fresh ca; then
  log "making a CA in $DIR"
  new_key ca-key.pem
  openssl req -x509 -new -key ca-key.pem -out ca.pem -days "$DAYS" -subj "/CN=coder NATS local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

issue() { # issue NAME COMMON_NAME EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
  local name=$1 cn=$2 eku=$3 san=${4:-}
  fresh "$name" && return 0
  log "issuing $name.pem ($cn)"
  new_key "$name-key.pem"
  openssl req -new -key "$name-key.pem" -out "$name.csr" -subj "/CN=$cn"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -CAserial ca.srl \
    -days "$DAYS" -out "$name.pem" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

server_names="DNS:localhost,IP:127.0.0.1,IP:::1"
IFS=',' read -r -a extra <<<"${NATS_PKI_SERVER_NAMES:-}"
for name in "${extra[@]}"; do
  [ -z "$name" ] || server_names+=",DNS:$name"
done
# Routes dial other nodes, so the server certificate is a client certificate too.
issue server coder-nats serverAuth,clientAuth "$server_names"
for role in gateway worker monitor; do
  issue "$role" "coder-$role" clientAuth
done
