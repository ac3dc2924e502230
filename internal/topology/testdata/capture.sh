#!/usr/bin/env bash
# Captures real CLUSTER NODES / CLUSTER INFO / INFO outputs from Redis
# (Debian's 7.0.15) for the parser tests. Run from this directory:
#   ./capture.sh [baseport]
# It starts 6 foreground redis-server processes on 127.0.0.1, forms a
# cluster with redis-cli, captures several states, and kills them on exit.
set -euo pipefail
base=${1:-12001}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
cli() { local p=$1; shift; redis-cli -p "$p" "$@"; }
for i in 0 1 2 3 4 5; do
  p=$((base + i)); mkdir -p "$tmp/$p"
  redis-server --port "$p" --bind 127.0.0.1 --dir "$tmp/$p" --save "" --appendonly no \
    --cluster-enabled yes --cluster-node-timeout 1000 --repl-diskless-sync-delay 0 \
    --logfile "$tmp/$p/log" --daemonize no &
  pids+=($!)
done
for i in 0 1 2 3 4 5; do until cli $((base + i)) ping >/dev/null 2>&1; do sleep 0.05; done; done
cli "$base" cluster nodes >cluster-nodes-fresh.txt
cli "$base" cluster info >cluster-info-fresh.txt
addrs=(); for i in 0 1 2 3 4 5; do addrs+=("127.0.0.1:$((base + i))"); done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
until [ "$(for i in 0 1 2 3 4 5; do cli $((base + i)) cluster info | grep -c 'cluster_state:ok'; done | paste -sd+ | bc)" = 6 ]; do sleep 0.1; done
sleep 2 # let gossip settle roles everywhere (capture script only, not a test)
cli "$base" cluster nodes >cluster-nodes-6-master-view.txt
rep=""
for i in 1 2 3 4 5; do
  if cli $((base + i)) info replication | grep -q role:slave; then rep=$((base + i)); break; fi
done
cli "$rep" cluster nodes >cluster-nodes-6-replica-view.txt
cli "$base" cluster info >cluster-info-ok.txt
cli "$base" info >info-master.txt
cli "$rep" info replication >info-replication-replica.txt
# open slots: move slot 100 from its owner (base) towards another master.
src_id=$(cli "$base" cluster myid)
dst=""; for i in 1 2 3 4 5; do
  if cli $((base + i)) info replication | grep -q role:master; then dst=$((base + i)); break; fi
done
dst_id=$(cli "$dst" cluster myid)
cli "$dst" cluster setslot 100 importing "$src_id" >/dev/null
cli "$base" cluster setslot 100 migrating "$dst_id" >/dev/null
cli "$base" cluster nodes >cluster-nodes-migrating.txt
cli "$dst" cluster nodes >cluster-nodes-importing.txt
cli "$dst" cluster setslot 100 stable >/dev/null
cli "$base" cluster setslot 100 stable >/dev/null
# hostname
cli "$dst" config set cluster-announce-hostname node-b.example >/dev/null
sleep 1.5
cli "$base" cluster nodes >cluster-nodes-hostname.txt
# pfail / fail: stop the replica process.
kill -STOP "${pids[$((rep - base))]}"
sleep 1.5
cli "$base" cluster nodes >cluster-nodes-pfail-or-fail.txt
sleep 3
cli "$base" cluster nodes >cluster-nodes-fail.txt
cli "$base" cluster info >cluster-info-after-fail.txt
echo "captured into $(pwd)"
# cluster-nodes-100.txt is not made by this script: it is CLUSTER NODES from
# one master of a 100-node cluster (replicas 1) formed by slots.Form.
