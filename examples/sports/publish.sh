#!/usr/bin/env bash
# Publishes a short sample match to a room through Switchboard's HTTP API,
# as a backend would: the demo page's match centre (http://127.0.0.1:8080/,
# match 1) shows it live.
#
#   examples/sports/publish.sh                  # room demo-match:1 on http://127.0.0.1:8080
#   examples/sports/publish.sh demo-match:2
#   SWITCHBOARD_URL=https://rt.example.com SWITCHBOARD_API_KEY=... examples/sports/publish.sh
#
# DELAY is the pause between events in seconds (default 1). Each event has
# an idempotency key made from RUN (default: the time), so running it again
# with the same RUN after a failure publishes nothing twice.
set -euo pipefail

room="${1:-demo-match:1}"
url="${SWITCHBOARD_URL:-http://127.0.0.1:8080}"
delay="${DELAY:-1}"
run="${RUN:-$(date +%s)}"
auth=()
if [[ -n "${SWITCHBOARD_API_KEY:-}" ]]; then
	auth=(-H "Authorization: Bearer ${SWITCHBOARD_API_KEY}")
fi

id="${room##*:}" # the match id in the events: demo-match:2 -> 2
n=0
# publish TYPE DATA: POST /api/broadcast/ROOM; prints the answer
# ({"event_id":...,"recipients":N}) and fails on an error answer.
publish() {
	n=$((n + 1))
	local body
	body=$(printf '{"type":"%s","data":%s,"idempotency_key":"publish-sh-%s-%d"}' "$1" "$2" "$run" "$n")
	# --fail-with-body: an error answer (4xx/5xx) is printed and fails the script.
	curl -sS --fail-with-body --max-time 10 --retry 3 --retry-connrefused \
		-H 'Content-Type: application/json' "${auth[@]}" -d "$body" "$url/api/broadcast/$room"
	echo
	sleep "$delay"
}

publish match_data '{"match_id":"'"$id"'","home_team":"Harbour","away_team":"Northside","score":{"home":0,"away":0},"minute":0,"status":"live"}'
publish commentary '{"match_id":"'"$id"'","minute":0,"text":"Kick-off at the harbour ground."}'
publish commentary '{"match_id":"'"$id"'","minute":9,"text":"Northside hit the post from twenty yards."}'
publish score_update '{"match_id":"'"$id"'","score":{"home":1,"away":0},"minute":31,"status":"live"}'
publish commentary '{"match_id":"'"$id"'","minute":31,"text":"GOAL! Harbour score from the penalty spot."}'
publish score_update '{"match_id":"'"$id"'","score":{"home":1,"away":1},"minute":74,"status":"live"}'
publish commentary '{"match_id":"'"$id"'","minute":74,"text":"GOAL! Northside equalise with a free kick."}'
publish match_data '{"match_id":"'"$id"'","home_team":"Harbour","away_team":"Northside","score":{"home":1,"away":1},"minute":90,"status":"full_time"}'
publish commentary '{"match_id":"'"$id"'","minute":90,"text":"Full time: a point each."}'
echo "published $n events to $room" >&2
