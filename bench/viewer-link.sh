#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# A WHEP viewer's rendition following its link, measured the way a user
# would run it: a MoQ relay, the `ladder` preset (three live x264 encodes)
# and the serve mode, each its own moq-gateway process, and headless
# Chromium watching over WHEP. After CLEAN seconds the viewer's link (every
# UDP packet on loopback except the relay's port) is capped at RATE with a
# QUEUE-packet drop-tail queue (tc htb + pfifo), for CAPPED seconds, then
# freed for FREE seconds. Prints when the viewer's picture height changed,
# the longest stretch with no frame decoded, and the gateway's switches.
#
# Needs root (tc on lo), chromium, and a built moq-gateway:
#   cargo build --release --bin moq-gateway && sudo bench/viewer-link.sh
set -euo pipefail
GATEWAY=${GATEWAY:-${CARGO_TARGET_DIR:-target}/release/moq-gateway}
RATE=${RATE:-1mbit} QUEUE=${QUEUE:-50}
CLEAN=${CLEAN:-15} CAPPED=${CAPPED:-30} FREE=${FREE:-40}
RELAY_PORT=4443 HTTP=127.0.0.1:8080
OUT=$(mktemp -d)
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$line"; done; }
uncap() { tc qdisc del dev lo root 2>/dev/null || true; }
cleanup() {
  uncap
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$GATEWAY" relay --listen 127.0.0.1:$RELAY_PORT > "$OUT/relay.log" 2>&1 &
sleep 1
"$GATEWAY" --relay http://127.0.0.1:$RELAY_PORT/anon --broadcast live ladder > "$OUT/ladder.log" 2>&1 &
"$GATEWAY" serve --listen $HTTP --relay http://127.0.0.1:$RELAY_PORT/anon 2>&1 | stamp > "$OUT/serve.log" &
sleep 3
chromium --headless --no-sandbox --disable-gpu --no-first-run \
  --autoplay-policy=no-user-gesture-required --enable-logging=stderr --v=0 \
  --user-data-dir="$OUT/profile" "http://$HTTP/?watch=live" 2>&1 \
  | grep --line-buffered -o 'moq-gateway:.*' | stamp > "$OUT/page.log" &
sleep "$CLEAN"
echo "$(date +%s.%N | cut -c1-14) cap" > "$OUT/marks"
tc qdisc add dev lo root handle 1: htb default 10
tc class add dev lo parent 1: classid 1:10 htb rate 10gbit quantum 200000
tc class add dev lo parent 1: classid 1:20 htb rate "$RATE" ceil "$RATE"
tc qdisc add dev lo parent 1:20 handle 20: pfifo limit "$QUEUE"
# The relay's traffic passes; every other UDP packet (WebRTC) is capped.
prio=1
for match in ip ip6; do
  proto=ip; [ $match = ip6 ] && proto=ipv6
  tc filter add dev lo parent 1: protocol $proto prio $prio u32 match $match sport $RELAY_PORT 0xffff flowid 1:10
  tc filter add dev lo parent 1: protocol $proto prio $prio u32 match $match dport $RELAY_PORT 0xffff flowid 1:10
  tc filter add dev lo parent 1: protocol $proto prio $((prio + 1)) u32 match $match protocol 17 0xff flowid 1:20
  prio=$((prio + 2))
done
sleep "$CAPPED"
uncap
echo "$(date +%s.%N | cut -c1-14) free" >> "$OUT/marks"
sleep "$FREE"

cp -r "$OUT" /tmp/vl-last 2>/dev/null; python3 - "$OUT" "$RATE" "$QUEUE" <<'PY'
import re, sys
out, rate, queue = sys.argv[1:]
marks = dict(reversed(l.split()) for l in open(f"{out}/marks"))
cap, free = float(marks["cap"]), float(marks["free"])
samples = []
for line in open(f"{out}/page.log"):
    m = re.match(r"(\S+) moq-gateway: framesDecoded (\d+) frameHeight (\d+)", line)
    if m:
        samples.append((float(m[1]), int(m[2]), int(m[3])))
if not samples:
    sys.exit(f"the page decoded nothing; logs in {out}")
def first(after, cond):
    return next((t - after for t, _, h in samples if t > after and cond(h)), None)
print(f"link capped at {rate} (queue {queue} packets) for {free - cap:.0f} s, then freed")
before = [h for t, _, h in samples if t < cap and h > 0]
print(f"  height before the cap: {min(before, default=0)} .. {max(before, default=0)}")
down = first(cap, lambda h: h < 720)
print(f"  first picture below 720 lines: {down:.1f} s after the cap" if down is not None else "  never below 720 lines")
heights = sorted({h for t, _, h in samples if cap < t < free})
print(f"  heights while capped: {heights}")
capped = [s for s in samples if cap < s[0] < free]
if len(capped) > 1:
    decoded = capped[-1][1] - capped[0][1]
    print(f"  frames decoded while capped: {decoded} in {capped[-1][0] - capped[0][0]:.0f} s")
stall, last = 0.0, None
for t, n, _ in samples:
    if last is None or n > last[1]:
        if last is not None:
            stall = max(stall, t - last[0] - 1.0)
        last = (t, n)
print(f"  longest stretch with no frame decoded: {max(stall, 0):.0f} s (stats once a second)")
up = first(free, lambda h: h >= 720)
print(f"  back at 720 lines: {up:.1f} s after the link was freed" if up is not None else "  not back at 720 lines")
for line in open(f"{out}/serve.log"):
    if "link estimated" in line:
        t, rest = line.split(" ", 1)
        print(f"  {float(t) - cap:+6.1f} s  {rest.split(': ', 1)[1].strip()}")
PY
