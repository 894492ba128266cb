#!/bin/bash
# Restores the kit's snapshot ($SNAPDIR) into a fresh Firecracker served by the
# handler given as a command (it gets <socket> <memory file> appended, as with
# the kit's run-restore.sh), then has the guest allocate, touch and check
# ALLOC_MIB MiB of fresh memory ("alloc N" on its console): the memory a
# guest takes after a restore, which the snapshot holds as zero pages.
# Prints one line:
#   RESULT: PASS|FAIL load=<ms> alloc_us=<guest µs> alloc_wall_ms=<ms> nonzero_words=<n>
# Needs the kit's common.sh ($KIT) and root. Env: ALLOC_MIB (default 64), ALLOC_TIMEOUT (s, 120).
set -uo pipefail
KIT=${KIT:?set KIT to the Firecracker kit}
. "$KIT/common.sh"
[ $# -ge 1 ] || { echo "usage: $0 <handler-command> [args...]" >&2; exit 2; }
ALLOC_MIB=${ALLOC_MIB:-64}; ALLOC_TIMEOUT=${ALLOC_TIMEOUT:-120}
RUN=$FC_WORK/runs/alloc-$(date +%Y%m%d-%H%M%S)-$$; mkdir -p "$RUN"
USOCK=$RUN/uffd.sock
HPID=
cleanup() {
    stop_fc
    if [ -n "$HPID" ] && kill -0 "$HPID" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$HPID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$HPID" 2>/dev/null && kill "$HPID"
        wait "$HPID" 2>/dev/null
    fi
}
trap cleanup EXIT
fail() { log "FAIL: $*"; log "run dir: $RUN"; echo "RESULT: FAIL $*"; exit 1; }

"$@" "$USOCK" "$SNAPDIR/mem" > "$RUN/handler.stdout" 2> "$RUN/handler.stderr" &
HPID=$!
for _ in $(seq 1 200); do [ -S "$USOCK" ] && break; kill -0 $HPID 2>/dev/null || break; sleep 0.05; done
[ -S "$USOCK" ] || { cat "$RUN/handler.stderr" >&2; fail "handler did not create its socket"; }
start_fc "$RUN" || fail "cannot start firecracker"
OUT=$(api $RUN/fc.sock PUT /snapshot/load "{\"snapshot_path\":\"$SNAPDIR/vmstate\",\"mem_backend\":{\"backend_type\":\"Uffd\",\"backend_path\":\"$USOCK\"},\"resume_vm\":true}")
CODE=${OUT%% *}; LOAD_S=${OUT##* }
[ "$CODE" = 204 ] || fail "PUT /snapshot/load -> HTTP $CODE: $(cat "$API_BODY" 2>/dev/null)"
LOAD_MS=$(awk -v s="$LOAD_S" 'BEGIN{printf "%.1f", s*1000}')
TA=$(date +%s%N)
console_send "alloc $ALLOC_MIB"
LINE=$(wait_for "$RUN/serial.log" '^ALLOC .* END' "$ALLOC_TIMEOUT") || fail "no ALLOC result within ${ALLOC_TIMEOUT}s"
WALL_MS=$(( ($(date +%s%N) - TA) / 1000000 ))
US=$(echo "$LINE" | sed -n 's/.* us=\([0-9]*\).*/\1/p'); NZ=$(echo "$LINE" | sed -n 's/.* nonzero_words=\([0-9]*\).*/\1/p')
stop_fc
cleanup; trap - EXIT
log "handler stderr (tail):"; tail -3 "$RUN/handler.stderr" >&2
ok=FAIL; [ "$NZ" = 0 ] && [ -n "$US" ] && ok=PASS
echo "RESULT: $ok load=$LOAD_MS alloc_us=$US alloc_wall_ms=$WALL_MS nonzero_words=$NZ"
[ $ok = PASS ] || { log "run dir: $RUN"; exit 1; }
[ "${KEEP_RUNS:-1}" = 0 ] && rm -rf "$RUN"
exit 0
