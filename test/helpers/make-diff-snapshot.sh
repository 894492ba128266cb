#!/bin/bash
# A Full snapshot and a Diff snapshot after it, of one boot of the kit's guest
# (the kit's make-snapshot.sh only makes Full ones). Sources the kit's
# common.sh for its Firecracker, guest, console and API helpers.
#
# usage: make-diff-snapshot.sh <base dir> <diff dir> [guest_mb (16)] [vm mem_size_mib (128)] [alloc_mib (4)]
# Boots with track_dirty_pages, waits for READY, pauses, takes a Full snapshot
# into <base dir>, resumes, sends "check" (the guest rewrites half its buffer's
# pages to the same content and counts the round: after a restore of the Diff
# snapshot its next check says round=2, which only the Diff's pages can tell)
# and "alloc <alloc_mib>" (fresh pages, zeroed by the guest kernel), pauses,
# and takes a Diff snapshot into <diff dir>: a sparse memory file holding the
# pages dirtied since the Full one. Both folders get the kit's expected.txt
# (the buffer's checksum is the same in both) and info.txt.
set -euo pipefail
KIT=${KIT:?set KIT to the Firecracker kit}
. "$KIT/common.sh"
BASE=$1; DIFF=$2; GUEST_MB=${3:-16}; MEM_MIB=${4:-128}; ALLOC_MIB=${5:-4}
RUN=$FC_WORK/runs/diff-snapshot-$(date +%Y%m%d-%H%M%S)-$$; mkdir -p "$RUN" "$BASE" "$DIFF"
trap 'stop_fc' EXIT
start_fc "$RUN"
S=$RUN/fc.sock
api_ok $S PUT /boot-source "{\"kernel_image_path\":\"$KERNEL\",\"initrd_path\":\"$INITRD\",\"boot_args\":\"$BOOT_ARGS_BASE guest_mb=$GUEST_MB\"}" >/dev/null
api_ok $S PUT /machine-config "{\"vcpu_count\":1,\"mem_size_mib\":$MEM_MIB,\"track_dirty_pages\":true}" >/dev/null
api_ok $S PUT /actions '{"action_type":"InstanceStart"}' >/dev/null
log "guest started with track_dirty_pages; waiting for READY (~30 s + ~0.4 s per guest MiB)"
READY=$(wait_for "$RUN/serial.log" '^READY .* END' $(( 120 + GUEST_MB ))) || { log "no READY"; tail -20 "$RUN/serial.log" >&2; exit 1; }
log "guest: $READY"

api_ok $S PATCH /vm '{"state":"Paused"}' >/dev/null
rm -f "$BASE/vmstate" "$BASE/mem" "$DIFF/vmstate" "$DIFF/mem"
OUT=$(api_ok $S PUT /snapshot/create "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"$BASE/vmstate\",\"mem_file_path\":\"$BASE/mem\"}")
log "Full snapshot/create: HTTP ${OUT%% *} in ${OUT##* } s"
api_ok $S PATCH /vm '{"state":"Resumed"}' >/dev/null

console_send check
CHECK=$(wait_for "$RUN/serial.log" '^CHECK round=1 .* END' 120) || { log "no CHECK"; tail -5 "$RUN/serial.log" >&2; exit 1; }
log "guest: $CHECK"
console_send "alloc $ALLOC_MIB"
ALLOC=$(wait_for "$RUN/serial.log" "^ALLOC mib=$ALLOC_MIB .* END" 120) || { log "no ALLOC"; tail -5 "$RUN/serial.log" >&2; exit 1; }
log "guest: $ALLOC"

api_ok $S PATCH /vm '{"state":"Paused"}' >/dev/null
OUT=$(api_ok $S PUT /snapshot/create "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"$DIFF/vmstate\",\"mem_file_path\":\"$DIFF/mem\"}")
log "Diff snapshot/create: HTTP ${OUT%% *} in ${OUT##* } s; $(du -k "$DIFF/mem" | cut -f1) KiB of data in a $(stat -c %s "$DIFF/mem") byte file"
stop_fc
for d in "$BASE" "$DIFF"; do
    echo "$READY" > "$d/expected.txt"
    { echo "firecracker=$($FC --version 2>/dev/null | head -1)"; echo "boot_args=$BOOT_ARGS_BASE guest_mb=$GUEST_MB"; echo "mem_size_mib=$MEM_MIB";
      echo "track_dirty_pages=true"; echo "created=$(date -Is)"; } > "$d/info.txt"
done
echo "snapshot_type=Full" >> "$BASE/info.txt"
{ echo "snapshot_type=Diff"; echo "after=check, alloc $ALLOC_MIB"; } >> "$DIFF/info.txt"
rm -rf "$RUN"
log "Full snapshot in $BASE, Diff snapshot in $DIFF"
