#!/usr/bin/env bash
# Publishes the demo's sample match to its room through Switchboard's HTTP
# API, as a backend would: the same match, step for step, that the demo
# page's "Publish a sample update" button plays (server/demo.go), so the
# page's match centre (http://localhost:8080/, match 1) shows it live and
# the button carries on from where this script stopped.
#
#   examples/sports/publish.sh                  # room demo-match:1 on http://127.0.0.1:8080
#   examples/sports/publish.sh demo-match:2     # matches 1, 2 and 3 have the demo's teams
#   examples/sports/publish.sh --listen :9000   # a node started with --listen :9000
#   SWITCHBOARD_LISTEN=:9000 examples/sports/publish.sh   # the serve command's own variable
#   SWITCHBOARD_URL=https://rt.example.com SWITCHBOARD_API_KEY=... examples/sports/publish.sh
#
# The node's URL is, first found: --url URL, SWITCHBOARD_URL, --listen ADDR,
# SWITCHBOARD_LISTEN (an address without a host, or 0.0.0.0 / [::], means
# this machine), then http://127.0.0.1:8080. DELAY is the pause between
# events in seconds (default 1). Each event has an idempotency key made
# from RUN (default: the time), so running it again with the same RUN after
# a failure publishes nothing twice.
set -euo pipefail

url="${SWITCHBOARD_URL:-}"
listen="${SWITCHBOARD_LISTEN:-}"
room=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--url) url="$2"; shift 2 ;;
	--url=*) url="${1#--url=}"; shift ;;
	--listen) listen="$2"; url=""; shift 2 ;;
	--listen=*) listen="${1#--listen=}"; url=""; shift ;;
	-h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "publish.sh: unknown option $1" >&2; exit 2 ;;
	*) room="$1"; shift ;;
	esac
done
room="${room:-demo-match:1}"
if [[ -z "$url" && -n "$listen" ]]; then
	port="${listen##*:}"
	host="${listen%:*}"
	case "$host" in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
	url="http://$host:$port"
fi
url="${url:-http://127.0.0.1:8080}"
url="${url%/}"
delay="${DELAY:-1}"
run="${RUN:-$(date +%s)}"
auth=()
if [[ -n "${SWITCHBOARD_API_KEY:-}" ]]; then
	auth=(-H "Authorization: Bearer ${SWITCHBOARD_API_KEY}")
fi

id="${room##*:}" # the match id in the events: demo-match:2 -> 2
case "$id" in # the demo's fixtures (server/demo.go demoMatches)
2) home=City away=Athletic ;;
3) home=Wanderers away=Rangers ;;
*) home=Rovers away=United ;;
esac
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
m='"match_id":"'"$id"'"'
data() { publish match_data '{'"$m"',"home_team":"'"$home"'","away_team":"'"$away"'","minute":'"$1"',"score":{"home":'"$2"',"away":'"$3"'},"status":"'"$4"'"}'; }
update() { publish score_update '{'"$m"',"minute":'"$1"',"score":{"home":'"$2"',"away":'"$3"'},"status":"'"$4"'"}'; }
say() { publish commentary '{'"$m"',"minute":'"$1"',"text":"'"$2"'"}'; }

# The script of server/demo.go demoScript; TestSportsPublishScript checks
# that the two publish the same events.
data 0 0 0 live
say 0 "Kick-off! $home get us under way."
say 12 "$away win a corner; it is cleared at the near post."
update 23 1 0 live
say 23 "GOAL! $home lead with a header from a corner."
update 45 1 0 half_time
say 45 "Half-time: $home 1, $away 0."
update 46 1 0 live
say 46 "$away restart the second half."
update 61 1 1 live
say 61 "GOAL! $away level with a low shot into the corner."
say 77 "Yellow card for $away's captain after a late tackle."
update 88 2 1 live
say 88 "GOAL! $home win it late on the counter-attack."
data 90 2 1 full_time
say 90 "Full time: $home 2, $away 1."
echo "published $n events to $room on $url" >&2
