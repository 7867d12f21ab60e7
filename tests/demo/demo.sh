#!/usr/bin/env bash
# make demo: a private mosquitto, the simulator PLC and the agent on
# conf/demo.conf, all on free loopback ports; live messages and `mbgate
# status` on screen. Ctrl-C stops everything this script started (by PID).
set -euo pipefail
bin=${MBGATE_BIN:-build/mbgate}
dir=build/demo
rm -rf "$dir" && mkdir -p "$dir/state"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mq_port=$(free_port)
plc_port=$(free_port)
pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo; echo "demo stopped."
}
trap cleanup INT TERM EXIT

sed -e "s/port = 1883;/port = $mq_port;/" -e "s/port = 1502;/port = $plc_port;/" \
    -e "s#/tmp/mbgate-demo#$PWD/$dir/state#g" conf/demo.conf > "$dir/demo.conf"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' "$mq_port" > "$dir/mosquitto.conf"

mosquitto -c "$dir/mosquitto.conf" > "$dir/mosquitto.log" 2>&1 & pids+=($!)
"$bin" sim -c "$dir/demo.conf" > "$dir/sim.log" 2>&1 & pids+=($!)
sleep 0.5
"$bin" run -c "$dir/demo.conf" > "$dir/agent.log" 2>&1 & pids+=($!)

cat <<INFO
mbgate demo
  broker   127.0.0.1:$mq_port (mosquitto, private)
  PLC      127.0.0.1:$plc_port (mbgate sim)
  config   $dir/demo.conf       agent log  $dir/agent.log
  try      $bin write plc1 setpoint 1200 -c $dir/demo.conf
           mosquitto_pub -p $mq_port -t mbgate/demo/plc1/setpoint/set -m 900
Live messages follow; \`mbgate status\` after 5 s, then every 15 s. Ctrl-C to stop.

INFO
mosquitto_sub -p "$mq_port" -t 'mbgate/#' -v & pids+=($!)
sleep 5
while :; do
  echo; "$bin" status -c "$dir/demo.conf" || true; echo
  sleep 15
done
