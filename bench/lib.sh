# Helpers the benchmark scripts share; sourced, never run:
#   . "$root/bench/lib.sh"

# A TCP port on 127.0.0.1 nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Parse `--out FILE` and `--only PART` into $out and $only, PART being one
# of PARTS (space-separated); wants PART then says whether to run it.
# ARGS: "PARTS" "$@"
bench_options() {
  local parts=$1
  shift
  out=""
  only=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --out) out="$2"; shift 2 ;;
      --only) only="$2"; shift 2 ;;
      *) echo "usage: $0 [--out FILE] [--only ${parts// /|}]" >&2; exit 2 ;;
    esac
  done
  case " $parts " in
    *" $only "*) ;;
    *) [ -z "$only" ] || { echo "--only: one of ${parts// /, }" >&2; exit 2; } ;;
  esac
}
wants() { [ -z "$only" ] || [ "$only" = "$1" ]; }

# Wait until URL answers with success (every 0.1 s, TRIES times), or stop
# the script with the tail of LOG when PID ends or time runs out.
# ARGS: WHAT URL PID LOG TRIES
wait_up() {
  local what=$1 url=$2 pid=$3 log=$4 tries=$5 i
  for i in $(seq 1 "$tries"); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$what did not start; log:" >&2
  tail -20 "$log" >&2
  exit 1
}
