#!/usr/bin/env bash
# The whole pipeline end to end: data -> features -> models -> submissions -> evaluation (leaderboard).
# Every stage is a `python -m <package>` command, run every time: each command decides itself, from what
# made its output, whether that output is up to date, and says so in one line. Run `./run_all.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./run_all.sh [options]

Runs every stage: shards (train, validate, test) -> feature stores -> training of each model ->
top-20 CSVs of validate and test -> scores of validate -> an ensemble of every model trained (weights
fitted on validate; its CSVs and score too) -> the leaderboard. A stage whose output is up to date says so
and does nothing; a failing stage stops the run and is named.

Options:
  --workdir DIR     workspace folder (default $YT8M_WORKDIR or ./workspace)
  --source SRC      synthetic (default): generated frame-level shards;
                    yt8m: download a small part of the official 2018 video-level shards (needs network);
                    DIR: shards already on disk, in DIR/{train,validate,test}/ or named DIR/{train,validate,test}*.tfrecord
  --models LIST     comma-separated models (default: qrnn,nextvlad,lstm,moe,logistic for frame-level data,
                    qrnn-video,moe,logistic for video-level data; all: .venv/bin/python -m models list)
  --videos N        training videos (synthetic: generated, default 2000; yt8m: downloaded, default 40000);
                    validate and test get N/5 each
  --epochs N        training epochs per model (default 3)
  --fresh           delete this dataset's stores, models, CSVs and scores and redo every stage
                    (downloaded shards are kept)
  --submit SLUG     at the end, validate and upload the best model's test CSV to Kaggle competition SLUG
                    (youtube8m-2018 or youtube8m; needs Kaggle credentials, see README)
  -h, --help        this text
EOF
}

# ---------------------------------------------------------------- options
WORK="${YT8M_WORKDIR:-workspace}"
SOURCE=synthetic
MODELS=""
VIDEOS=""
EPOCHS=3
FRESH=0
SUBMIT=""
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "run_all: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --workdir) need_value "$@"; WORK=$2; shift 2 ;;
    --source) need_value "$@"; SOURCE=$2; shift 2 ;;
    --models) need_value "$@"; MODELS=$2; shift 2 ;;
    --videos) need_value "$@"; VIDEOS=$2; shift 2 ;;
    --epochs) need_value "$@"; EPOCHS=$2; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --submit) need_value "$@"; SUBMIT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_all: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for number in "${VIDEOS:-1}" "$EPOCHS"; do
  [[ "$number" =~ ^[1-9][0-9]*$ ]] || { echo "run_all: --videos and --epochs take a whole number >= 1" >&2; exit 2; }
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$REPO/setup.sh"
PY="$REPO/.venv/bin/python"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$MODELS" ]; then  # refuse an unknown model now, not after the data and feature stages
  known=$("$PY" -m models list | cut -d' ' -f1)
  IFS=, read -r -a wanted <<< "$MODELS"
  for model in "${wanted[@]}"; do
    grep -qxF -- "$model" <<< "$known" || {
      echo "run_all: --models: unknown model '$model' (known: $(paste -sd, <<< "$known"))" >&2; exit 2; }
  done
fi
if [ -n "$SUBMIT" ]; then  # find out now, not after the whole run, that the upload cannot work
  "$PY" -c 'import sys
from submissions.kaggle_client import HELP, credential_source
sys.exit(0 if credential_source() else f"run_all: --submit: {HELP}")'
fi
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
START=$SECONDS

# ---------------------------------------------------------------- stages
STAGE=""
trap 'code=$?; if [ $code -ne 0 ] && [ -n "$STAGE" ]; then
  echo "run_all: stage \"$STAGE\" failed (exit $code); fix it and re-run: finished stages say up to date" >&2; fi' EXIT

stage() {  # stage NAME COMMAND...: run COMMAND under a header, with its time (the command skips itself)
  local name=$1 began=$SECONDS
  shift
  echo "== $name"
  STAGE=$name
  "$@"
  STAGE=""
  echo "   ($name: $(( SECONDS - began )) s)"
}

BACKGROUND=()  # "pid|name|log" of the stages running in the background
stage_in_background() {  # like stage, with its output kept in $WORK/logs/ until wait_for_stages shows it
  local log
  log="$WORK/logs/$(printf '%s' "$1" | tr -c 'A-Za-z0-9_.-' '_').log"
  mkdir -p "$WORK/logs"
  stage "$@" > "$log" 2>&1 &
  BACKGROUND+=("$!|$1|$log")
}

wait_for_stages() {  # wait for every background stage, show its output, stop if one failed
  local entry pid name log failed=""
  for entry in "${BACKGROUND[@]}"; do
    IFS='|' read -r pid name log <<< "$entry"
    wait "$pid" || failed=${failed:-$name}
    cat "$log"
  done
  BACKGROUND=()
  if [ -n "$failed" ]; then STAGE=$failed; exit 1; fi
}

# ---------------------------------------------------------------- where the shards come from
SPLITS=(train validate test)
declare -A SHARDS  # split -> folder or glob of its shards
case "$SOURCE" in
  synthetic) DATASET=synthetic; VIDEOS=${VIDEOS:-2000} ;;
  yt8m) DATASET=yt8m-2018; VIDEOS=${VIDEOS:-40000} ;;
  *)
    [ -d "$SOURCE" ] || { echo "run_all: --source $SOURCE: not synthetic, yt8m or a folder" >&2; exit 2; }
    SOURCE="$(cd "$SOURCE" && pwd)"
    DATASET="$(basename "$SOURCE")"
    for split in "${SPLITS[@]}"; do
      if compgen -G "$SOURCE/$split/*.tfrecord" > /dev/null; then SHARDS[$split]="$SOURCE/$split"
      elif compgen -G "$SOURCE/$split*.tfrecord" > /dev/null; then SHARDS[$split]="$SOURCE/$split*.tfrecord"
      fi
    done
    for split in train validate; do
      [ -n "${SHARDS[$split]:-}" ] || {
        echo "run_all: $SOURCE: no $split shards ($split/*.tfrecord or $split*.tfrecord)" >&2; exit 2; }
    done ;;
esac
SMALL=$(( VIDEOS / 5 > 10 ? VIDEOS / 5 : 10 ))  # validate and test videos
FEATURES="$WORK/features/$DATASET"

if [ "$FRESH" = 1 ]; then
  echo "== fresh: removing $DATASET's stores, models, CSVs and scores under $WORK"
  [ "$SOURCE" = synthetic ] && rm -rf "$WORK/data/synthetic"
  rm -rf "$FEATURES" "$WORK/models/$DATASET"-* "$WORK/submissions/$DATASET"-*.csv \
    "$WORK/submissions/.$DATASET"-*.csv.json "$WORK/evaluation/scores/$DATASET"-*.json
fi

# ---------------------------------------------------------------- 1. data
for split in "${SPLITS[@]}"; do
  count=$([ "$split" = train ] && echo "$VIDEOS" || echo "$SMALL")
  out="$WORK/data/$DATASET/$split"
  case "$SOURCE" in
    synthetic)
      stage_in_background "data $split" \
        "$PY" -m data synth --level frame --split "$split" --videos "$count" --seed 0 --out "$out"
      SHARDS[$split]=$out ;;
    yt8m)
      # one part in P of the partition: P chosen so that the part holds about `count` videos
      per_split=$([ "$split" = train ] && echo 3888919 || echo 1112356)  # 2018 videos per partition
      parts=$(( per_split / count > 1 ? per_split / count : 1 ))
      stage_in_background "data $split" \
        "$PY" -m data download --partition "2/video/$split" --shards "1,$parts" --out "$out"
      SHARDS[$split]=$out ;;
  esac
done
wait_for_stages

# ---------------------------------------------------------------- 2. features
for split in "${SPLITS[@]}"; do
  if [ -z "${SHARDS[$split]:-}" ]; then echo "== features $split: no $split shards, skipped"; continue; fi
  stage_in_background "features $split" \
    "$PY" -m features convert --shards "${SHARDS[$split]}" --out "$FEATURES/$split"
done
wait_for_stages
LEVEL=$(grep -o '"level": *"[a-z]*"' "$FEATURES/train/manifest.json" | grep -o '[a-z]*"$' | tr -d '"')
if [ -z "$MODELS" ]; then
  MODELS=$([ "$LEVEL" = frame ] && echo qrnn,nextvlad,lstm,moe,logistic || echo qrnn-video,moe,logistic)
fi

# ---------------------------------------------------------------- 3-5. models, submissions, scores
predict_and_score() {  # predict_and_score RUN: the run's validate and test CSVs, then its validation score
  local run=$1 dir="$WORK/models/$1" split csv
  for split in validate test; do
    [ -f "$FEATURES/$split/manifest.json" ] || continue
    csv="$WORK/submissions/${run}_$split.csv"
    stage_in_background "predict $run $split" \
      "$PY" -m submissions predict --model "$dir" --features "$FEATURES/$split" --out "$csv"
  done
  wait_for_stages
  stage "score $run validate" \
    "$PY" -m evaluation score --submission "$WORK/submissions/${run}_validate.csv" \
    --truth "$FEATURES/validate" --workdir "$WORK"
}

IFS=, read -r -a model_list <<< "$MODELS"
runs=()
for model in "${model_list[@]}"; do
  run="$DATASET-$model"
  runs+=("$run")
  dir="$WORK/models/$run"
  stage "train $run" \
    "$PY" -m models train --model "$model" --train "$FEATURES/train" --validate "$FEATURES/validate" \
    --out "$dir" --epochs "$EPOCHS"
  predict_and_score "$run"
done

# every model trained, combined into one (member weights fitted on validate), predicted and scored the same way
if [ "${#runs[@]}" -ge 2 ]; then
  members=()
  for run in "${runs[@]}"; do members+=("$WORK/models/$run"); done
  run="$DATASET-ensemble"
  stage "ensemble $run" \
    "$PY" -m models ensemble --members "${members[@]}" --validate "$FEATURES/validate" --out "$WORK/models/$run"
  predict_and_score "$run"
  runs+=("$run")
fi

# ---------------------------------------------------------------- 6. leaderboard (always: it is quick)
echo "== leaderboard"
STAGE=leaderboard
"$PY" -m evaluation leaderboard --workdir "$WORK"
STAGE=""

# ---------------------------------------------------------------- 7. optional Kaggle upload
if [ -n "$SUBMIT" ]; then
  best=$("$PY" - "$WORK" "${runs[@]}" <<'EOF'
import json, sys
from pathlib import Path
work, runs = Path(sys.argv[1]), sys.argv[2:]
gap = {r: json.loads((work / "evaluation/scores" / f"{r}_validate.json").read_text())["gap"] for r in runs}
print(max(gap, key=gap.get), f"{max(gap.values()):.4f}")
EOF
)
  read -r best_run best_gap <<< "$best"
  [ -f "$FEATURES/test/manifest.json" ] || { echo "run_all: no test split to submit" >&2; exit 2; }
  echo "== submit ${best_run}_test.csv to $SUBMIT (validation GAP $best_gap)"
  STAGE="submit $best_run"
  "$PY" -m submissions submit --competition "$SUBMIT" --file "$WORK/submissions/${best_run}_test.csv" \
    --truth "$FEATURES/test" --message "$best_run (validation GAP $best_gap), run_all.sh"
  STAGE=""
fi

# ---------------------------------------------------------------- where everything is
minutes=$(( (SECONDS - START) / 60 )); seconds=$(( (SECONDS - START) % 60 ))
cat <<EOF

Done in ${minutes}m${seconds}s. Files (workspace $WORK):
  shards         ${SHARDS[train]%/*}  (train, validate, test)
  feature stores $FEATURES/{train,validate,test}
  models         $WORK/models/$DATASET-<model>/  model.keras, card.json, history.csv, training.png
                 $WORK/models/$DATASET-ensemble/  model.keras (every model above as a member), card.json
  submissions    $WORK/submissions/$DATASET-<model>_{validate,test}.csv
  scores         $WORK/evaluation/scores/$DATASET-<model>_validate.json
  leaderboard    $WORK/evaluation/leaderboard.md (also .csv and .png)
Upload a test CSV: .venv/bin/python -m submissions submit --competition youtube8m-2018 \\
    --file $WORK/submissions/<run>_test.csv --message "..." --dry-run
EOF
