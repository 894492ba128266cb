#!/bin/bash
# Restores the kit's snapshot ($SNAPDIR) into a fresh Firecracker with the
# File memory backend: no page-fault handler at all, Firecracker maps the
# memory file (MAP_PRIVATE) and the guest's first touches fault it in from
# the page cache. The floor any userfaultfd handler is measured against.
# Then "check" on the guest console, as the kit's run-restore.sh does. Prints:
#   RESULT: PASS|FAIL restore(snapshot/load+resume)=<ms>ms load->first verified checksum=<ms>ms
# Needs the kit's common.sh ($KIT) and root. Env: CHECK_TIMEOUT (s, 120).
set -uo pipefail
KIT=${KIT:?set KIT to the Firecracker kit}
. "$KIT/common.sh"
CHECK_TIMEOUT=${CHECK_TIMEOUT:-120}
EXPECTED_SUM=$(sed -n 's/.* sum=\([0-9a-f]*\).*/\1/p' "$SNAPDIR/expected.txt")
RUN=$FC_WORK/runs/file-$(date +%Y%m%d-%H%M%S)-$$; mkdir -p "$RUN"
trap stop_fc EXIT
fail() { log "FAIL: $*"; log "run dir: $RUN"; echo "RESULT: FAIL $*"; exit 1; }

# The page cache holds the file, as it does for a handler reading it.
cat "$SNAPDIR/mem" > /dev/null
start_fc "$RUN" || fail "cannot start firecracker"
T0=$(date +%s%N)
OUT=$(CURL_MAX_TIME=60 api $RUN/fc.sock PUT /snapshot/load "{\"snapshot_path\":\"$SNAPDIR/vmstate\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$SNAPDIR/mem\"},\"resume_vm\":true}")
CODE=${OUT%% *}; LOAD_S=${OUT##* }
[ "$CODE" = 204 ] || fail "PUT /snapshot/load -> HTTP $CODE: $(cat "$API_BODY" 2>/dev/null)"
LOAD_MS=$(awk -v s="$LOAD_S" 'BEGIN{printf "%.1f", s*1000}')
console_send check
end=$(( T0 + CHECK_TIMEOUT * 1000000000 ))
while ! grep -Eq '^CHECK_(OK|BAD) END' "$RUN/serial.log"; do
    [ "$(date +%s%N)" -lt $end ] || fail "no CHECK result from the guest within ${CHECK_TIMEOUT}s"
    kill -0 "$FC_PID" 2>/dev/null || fail "firecracker exited: $(tail -3 "$RUN/firecracker.log")"
    sleep 0.005
done
TE=$(date +%s%N)
LINE=$(grep '^CHECK round=' "$RUN/serial.log" | tail -1); VERDICT=$(grep -E '^CHECK_(OK|BAD) END' "$RUN/serial.log" | tail -1 | cut -d' ' -f1)
SUM=$(echo "$LINE" | sed -n 's/.* sum=\([0-9a-f]*\).*/\1/p')
stop_fc; trap - EXIT
ok=$([ "$SUM" = "$EXPECTED_SUM" ] && [ "$VERDICT" = CHECK_OK ] && echo PASS || echo FAIL)
echo "RESULT: $ok restore(snapshot/load+resume)=${LOAD_MS}ms load->first verified checksum=$(( (TE - T0) / 1000000 ))ms"
[ "$ok" = PASS ] || exit 1
rm -rf "$RUN"
