# Shared by scripts/demo-contracts and scripts/bench-store (sourced, not run): a bonded committee of four
# `btcmpc party run` processes (t = 1) and a funded owner on the embedded regtest node.
# Needs: $B (the btcmpc binary), $work (a scratch directory). Sets: ELECTRUM, MANIFEST, PIDS.

field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
as() { local who=$1; shift; "$B" --datadir "$work/$who" --electrum "$ELECTRUM" "$@"; }
mine() { "$B" regtest mine "$1" >/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
committee_down() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# committee_up [FAULT_FOR_PARTY_3]
committee_up() {
  local fault=${1:-}
  export BTCMPC_DATADIR="$work/node"
  if [ -z "${ELECTRUM:-}" ]; then
    "$B" regtest up --detach --electrum-port 0 --rpc-port 0 >/dev/null
    ELECTRUM=$("$B" regtest status --json | field '["electrum"]')
  fi
  local cards=()
  for i in 1 2 3 4; do
    as "p$i" wallet create >/dev/null
    "$B" regtest faucet "$(as "p$i" wallet address)" 0.01btc >/dev/null
    as "p$i" party init --endpoint "127.0.0.1:$(free_port)" >/dev/null
    cards+=("$work/p$i/card.json")
  done
  as owner wallet create >/dev/null
  "$B" regtest faucet "$(as owner wallet address)" 0.01btc >/dev/null
  as p1 network roster --t 1 --min-bond 100000sat --out "$work/roster.json" "${cards[@]}" >/dev/null
  for i in 1 2 3 4; do as "p$i" party sign-roster "$work/roster.json" >/dev/null; done
  for i in 1 2 3 4; do
    as "p$i" party bond 100000sat --exit +1000 --roster "$work/roster.json" --fee-rate 2 >/dev/null
  done
  mine 1
  MANIFEST="$work/manifest.json"
  as p1 network manifest --roster "$work/roster.json" --out "$MANIFEST" "${cards[@]}" >/dev/null
  for i in 1 2 3 4; do
    cp "$MANIFEST" "$work/p$i/manifest.json"
    local f=()
    if [ "$i" = 3 ] && [ -n "$fault" ]; then f=(--testing-fault "$fault"); fi
    "$B" --datadir "$work/p$i" --electrum "$ELECTRUM" party run --round-timeout 10 --acl-poll 1 "${f[@]}" \
      >"$work/p$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 1 2 3 4; do
    for _ in $(seq 1 100); do
      as "p$i" party status >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
}
