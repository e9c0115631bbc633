#!/usr/bin/env bash
# Train a recipe on a GPU machine lent through the `device` tool, from the kit that tools/device_kit.py packed
# into .device (name it in the tool's carry; $KIT names another kit folder). The machine's own python3 (with
# PyTorch) runs the trainer ($PYTHON another; $DEVICE another torch device than cuda).
#
#   bash tools/device_train.sh RECIPE ITERATIONS MINUTES [--set KEY=VALUE ...]
#
# Trains RECIPE for ITERATIONS (its cosine decay stretched to that length), stopping after MINUTES of wall time
# if it has not finished: SIGTERM makes the trainer save last.pt, so a later call continues it when the
# run folder that came back is put at $KIT/runs/NAME/ (it is then carried with the kit, and --resume is
# added). What comes back under $OUT (at most 8 files): NAME/{last.pt,best.pt,recipe.yaml,train.csv,val.csv},
# NAME.log, and NAME.pt (the shipped-weights format, `dgdehaze train --export`) when the run finished.
# NAME is the recipe's file name unless $NAME gives another (two runs of one recipe side by side).
# EXPORT=0 leaves NAME.pt out (a run that is only timed, whose weights nobody reads: the export is a
# second Python and torch start on the lent machine's clock).
set -uo pipefail

if [ $# -lt 3 ]; then
    echo "usage: bash tools/device_train.sh RECIPE ITERATIONS MINUTES [--set KEY=VALUE ...]" >&2
    exit 2
fi
recipe=$1 iterations=$2 minutes=$3
shift 3
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
out=${OUT:?OUT must name the folder whose files come back}
kit=$(realpath -m "${KIT:-.device}")
if [ ! -f "$kit/manifest.json" ]; then
    echo "no finished kit in $kit (no manifest.json): pack the recipe's data with tools/device_kit.py and carry .device" >&2
    exit 2
fi
name=${NAME:-$(basename "$recipe" .yaml)}
scratch=$(mktemp -d)  # the run folder while it trains; its files are copied to $OUT, then it goes
trap 'rm -rf "$scratch"' EXIT
run=$scratch/$name
mkdir -p "$run"
resume=()
if [ -f "$kit/runs/$name/last.pt" ]; then
    cp "$kit/runs/$name/"* "$run/"
    resume=(--resume)
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
export DGDEHAZE_DATA=$kit/data PYTHONUNBUFFERED=1
start=$SECONDS
timeout --foreground -s TERM --kill-after=60 "${minutes}m" "$python" -m dgdehaze_core.cli train --config "$recipe" \
    --out "$run" --iterations "$iterations" --device "$device" --no-progress "${resume[@]}" "$@" \
    > "$out/$name.log" 2>&1
status=$?
echo "train exited $status after $((SECONDS - start)) s; last lines of $name.log:"
tail -n 5 "$out/$name.log"
mkdir -p "$out/$name"
for file in last.pt best.pt recipe.yaml train.csv val.csv; do
    [ -f "$run/$file" ] && cp "$run/$file" "$out/$name/"
done
if [ "$status" -eq 0 ] && [ "${EXPORT:-1}" != 0 ] && ! "$python" -c \
        "import sys; from dgdehaze_core.training.trainer import export_weights as e; e(*sys.argv[1:])" \
        "$run/last.pt" "$out/$name.pt"; then
    echo "the run finished but its weights could not be exported to $name.pt: export $name/last.pt here" >&2
    status=1
fi
exit "$status"
