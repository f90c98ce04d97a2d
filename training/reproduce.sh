#!/bin/bash
# The bundled model, end to end (issue 14): patient-level folds for the pooled out-of-fold thresholds, the
# model on every patient, one run without each hospital, then the bundle with its report.
#   bash training/reproduce.sh [recipe]        (default two_hospitals_resnet18; ~2 h on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${1:-two_hospitals_resnet18}
T="${PYTHON:-.venv/bin/python} -m training"
C="--config $RECIPE --no-progress"
$T prepare $C
FOLDS=$(${PYTHON:-.venv/bin/python} -c "from training.config import load_config; print(load_config('$RECIPE').split.folds)")
RUNS=()
for ((f = 0; f < FOLDS; f++)); do
  $T train $C --set name=\"${RECIPE}_f$f\" --set split.fold=$f
  $T evaluate $C --set name=\"${RECIPE}_f$f\" --set split.fold=$f --bootstrap 200
  RUNS+=("runs/${RECIPE}_f$f")
done
$T train $C --set split.fold=-1
$T evaluate $C --set split.fold=-1 --oof "${RUNS[@]}"
$T export $C --set split.fold=-1
LOHO=()
for source in phe_sich ctich; do
  name="${RECIPE}_without_$source"
  $T train $C --set name=\"$name\" --set split.held_out_source=\"$source\"
  $T evaluate $C --set name=\"$name\" --set split.held_out_source=\"$source\" --bootstrap 200
  LOHO+=("runs/$name")
done
$T bundle $C --set split.fold=-1 --cross-validation "${RUNS[@]}" --leave-one-out "${LOHO[@]}"
