#!/usr/bin/env bash
# Every generated table of docs/RESULTS.md, from scratch: runs `dgdehaze eval` for every measure on every set in
# ../shared/data, keeps each run's JSON and provenance in docs/results/, then renders the doc's tables from them
# (the four tables the doc says are copied by hand come from other commands' JSON, not from this script).
#
#   make results                        # the shipped lite weights against the shipped ablation (NO_DEPTH)
#   LITE=runs/lite/last.pt make results # another checkpoint in the `lite` rows
#   EVAL_ARGS="--limit 2" RESULTS=/tmp/r DOC=/tmp/RESULTS.md tools/make_results.sh   # a quick trial elsewhere
#   ONLY=kitti-tiny,middlebury2003 make results   # re-record those steps only (each keeps its own provenance;
#                                                 # a name not among STEPS below stops it, listing them)
#
# Methods: hazy (the input), dcp, lite (LITE, default: the shipped dgdehaze_core/weights/dgdehaze_lite.pt),
# lite-no-depth (NO_DEPTH, default dgdehaze_core/weights/dgdehaze_lite_no_depth.pt: the same recipe with depth
# guidance off, exported from runs/lite_no_depth), clear (detection recovery's ceiling) and clear-jpeg90 (the clear
# image's JPEG copy: how much of that ceiling a near-lossless copy already loses).
# Every figure is on data the models neither trained nor were tuned on: of SOTS-indoor and the DAWN fog photos only
# the judge part of their split (data/splits/: SOTS-indoor rooms 1400-1422 are training images, 1424-1428 chose the
# recipe); the real hazy photos of hazy-real/ (URHI, O-HAZE without ground truth) are training images, none here.
# KITTI is evaluated on its left colour camera (image_02) only; image_03 holds the same 7 frames from 54 cm away.
# docs/RESULTS.md says how long the recorded steps took, when and at which commits (each table: its own step's).
set -euo pipefail
cd "$(dirname "$0")/.."

# every step below, in the order it runs: ONLY= may name these and nothing else
STEPS=(sots-indoor sots-outdoor o-haze sots-indoor-work320x240 sots-outdoor-work320x240 o-haze-work320x240
       dawn-fog kitti-tiny middlebury2003 kitti-tiny-visibility kitti-tiny-clear middlebury2003-clear
       int8-sots-indoor int8-sots-outdoor int8-o-haze int8-dawn-fog)
is_step() {  # is_step NAME: whether NAME is one of STEPS
    [[ " ${STEPS[*]} " == *" $1 "* ]]
}
if [ -n "${ONLY:-}" ]; then  # a misspelt name would otherwise run nothing and exit 0
    IFS=, read -r -a WANTED <<< "$ONLY"
    for name in "${WANTED[@]}"; do
        if ! is_step "$name"; then
            echo "make_results: unknown step '$name' in ONLY=$ONLY; the steps are: $(IFS=,; echo "${STEPS[*]}")" >&2
            exit 2
        fi
    done
fi

PY=${VENV:-.venv}/bin/python
DATA=${DGDEHAZE_DATA:-../shared/data}
LITE=${LITE:-lite}
NO_DEPTH=${NO_DEPTH:-dgdehaze_core/weights/dgdehaze_lite_no_depth.pt}
METHODS="hazy,dcp,lite=$LITE"
if [ -f "$NO_DEPTH" ]; then
    METHODS="$METHODS,lite-no-depth=$NO_DEPTH"
else
    echo "make_results: no ablation weights at $NO_DEPTH (set NO_DEPTH): the lite-no-depth rows are left out" >&2
fi
METHODS="$METHODS,clear,clear-jpeg90"
RESULTS=${RESULTS:-docs/results}
DOC=${DOC:-docs/RESULTS.md}
read -r -a EXTRA <<< "${EVAL_ARGS:-}"

if [ ! -d "$DATA" ]; then
    echo "make_results: no data at $DATA (set DGDEHAZE_DATA)" >&2
    exit 2
fi

record() {  # record NAME EVAL-ARGS...: docs/results/NAME.json and NAME.meta.json
    local name=$1
    shift
    if ! is_step "$name"; then
        echo "make_results: step $name is not in STEPS: add it there so that ONLY= accepts it" >&2
        exit 2
    fi
    if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]]; then
        return 0
    fi
    echo "== $name"
    "$PY" -m dgdehaze_core.evaluation.results_doc record --results "$RESULTS" "$name" -- \
        "$@" --method "$METHODS" "${EXTRA[@]}"
}

# scattering: airlight and transmission against the model fitted to each pair (where a quality loss comes from),
# in the same run as quality and detection so that each image is dehazed once; detection recovery's comparisons
# of lite with the input and DCP get a paired bootstrap over the pairs (docs/EVALUATION.md); the +clahe rows: what
# the detector's contrast equaliser (the node's detection_contrast) does to agreement with the clear image
SOTS_JUDGE=(--include @data/splits/sots-indoor.yaml:judge)
METHODS="$METHODS,hazy+clahe,lite+clahe=$LITE+clahe" record sots-indoor --dataset "$DATA/paired/sots-indoor" \
    --measure quality,scattering,detection "${SOTS_JUDGE[@]}" --bootstrap 2000 --group lite --baseline hazy \
    --baseline dcp
record sots-outdoor --dataset "$DATA/paired/sots-outdoor" --measure quality,scattering,detection
record o-haze --dataset "$DATA/paired/o-haze" --measure quality,scattering,detection
# the networks at the node's reduced working resolution (physics inversion at full size): what speed costs
record sots-indoor-work320x240 --dataset "$DATA/paired/sots-indoor" --measure quality,detection "${SOTS_JUDGE[@]}" \
    --working-size 320x240
record sots-outdoor-work320x240 --dataset "$DATA/paired/sots-outdoor" --measure quality --working-size 320x240
record o-haze-work320x240 --dataset "$DATA/paired/o-haze" --measure quality --working-size 320x240
# real fog on the road: the DAWN photos of data/splits/dawn-fog.yaml's judge part only (the learn part is training
# data, the validation part chose the recipe and the fusion rule); lite+hazy: the detector on the input and on lite's
# output, the boxes fused (the node's detection_input: fused); +clahe: the detector reads the frames with their
# local contrast equalised (the node's detection_contrast; hazy+clahe is the contrast-only baseline); how sure each
# comparison is: a paired bootstrap over the photos (docs/EVALUATION.md). Every lite row runs LITE, named in full:
# a bare lite+... would run the shipped weights whatever LITE says
COMPARE=(--bootstrap 2000 --group lite --group lite+hazy --group hazy+clahe --group lite+clahe --group lite+hazy+clahe
         --baseline hazy --baseline dcp --baseline lite)
if [ -f "$NO_DEPTH" ]; then
    COMPARE+=(--baseline lite-no-depth)
fi
DAWN_METHODS="lite+hazy=$LITE+hazy,hazy+clahe,lite+clahe=$LITE+clahe,lite+hazy+clahe=$LITE+hazy+clahe"
METHODS="$METHODS,$DAWN_METHODS" record dawn-fog --dataset "$DATA/detection/dawn-fog" --measure detection,haze \
    --include @data/splits/dawn-fog.yaml:judge "${COMPARE[@]}"
record kitti-tiny --dataset "$DATA/depth/kitti-tiny" --measure depth --include '*/image_02/*'
record middlebury2003 --dataset "$DATA/depth/middlebury2003" --measure depth
# visibility and metric depth in fog (#19): KITTI only (Middlebury has no road); kitti-seq is where choices were made
record kitti-tiny-visibility --dataset "$DATA/depth/kitti-tiny" --measure visibility --include '*/image_02/*'
# what dehazing does to a frame without fog (the node dehazes every frame, in fog or not): the depth sets' clear
# frames against themselves; clear-jpeg90: what a near-lossless copy already moves; lite+hazy: the node's fused
# detection (detection figures only); clear is the frame itself, hazy's row again, so it is left out
CLEAR_METHODS="${METHODS/,clear,clear-jpeg90/,clear-jpeg90},lite+hazy=$LITE+hazy"
METHODS=$CLEAR_METHODS record kitti-tiny-clear --dataset "$DATA/depth/kitti-tiny" --measure clear \
    --include '*/image_02/*'
METHODS=$CLEAR_METHODS record middlebury2003-clear --dataset "$DATA/depth/middlebury2003" --measure clear
# lite as a statically quantised int8 (QDQ) model against its own fp32 export, both on ONNX Runtime (#23): the
# paired sets' quality and real fog's detection, calibrated on the real hazy photos of hazy-real (seen in training)
if [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",int8-"* ]]; then
    EXPORTS=${EXPORTS:-out/int8}
    WEIGHTS=()
    if [ "$LITE" != lite ]; then
        WEIGHTS=(--weights "$LITE")
    fi
    "$PY" -m dgdehaze_core.cli export --config lite "${WEIGHTS[@]}" --physics-only --dynamic \
        --out "$EXPORTS/lite_fp32.onnx"
    "$PY" -m dgdehaze_core.cli export --config lite "${WEIGHTS[@]}" --physics-only --dynamic --int8 \
        --calib "$DATA/hazy-real" --out "$EXPORTS/lite_int8.onnx"
    INT8="lite-fp32=$EXPORTS/lite_fp32.onnx,lite-int8=$EXPORTS/lite_int8.onnx"
    METHODS=$INT8 record int8-sots-indoor --dataset "$DATA/paired/sots-indoor" --measure quality "${SOTS_JUDGE[@]}"
    METHODS=$INT8 record int8-sots-outdoor --dataset "$DATA/paired/sots-outdoor" --measure quality
    METHODS=$INT8 record int8-o-haze --dataset "$DATA/paired/o-haze" --measure quality
    METHODS=$INT8 record int8-dawn-fog --dataset "$DATA/detection/dawn-fog" --measure detection \
        --include @data/splits/dawn-fog.yaml:judge --bootstrap 2000 --group lite-int8 --baseline lite-fp32
fi

"$PY" -m dgdehaze_core.evaluation.results_doc render --results "$RESULTS" --doc "$DOC"
echo "$DOC rendered from $RESULTS/"
