#!/usr/bin/env bash
# The evaluator's acceptance run: 4 simulated days through the live system (local
# broker, joiner, one trainer per model, evaluator daemon, all processes), judged
# against `fmstream replay` of the same traffic. Usage: live-evaluation.sh [WORKDIR]
# (default ./live-evaluation; port 19392). About 8 minutes on 2 cores.
set -euo pipefail
WORK=${1:-live-evaluation}
PORT=${PORT:-19392}
K=(--bootstrap "127.0.0.1:$PORT" --kafka-profile local)
SIM=(--days 4 --impressions-per-day 50000 --seed 7)
rm -rf "$WORK" && mkdir -p "$WORK/logs" && cd "$WORK"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

fmstream simulate "${SIM[@]}" --out sim > logs/simulate-files.log 2>&1
fmstream replay sim --out replay --models deepfm,lr > logs/replay.log 2>&1
fmstream broker --port "$PORT" > logs/broker.log 2>&1 & pids+=($!)
until grep -q "broker ready" logs/broker.log; do sleep 0.5; done
fmstream join "${K[@]}" --state-dir join > logs/join.log 2>&1 & pids+=($!)
for m in deepfm lr; do
  fmstream train "${K[@]}" --model "$m" --config replay/features.toml --store-dir "store-$m" \
    --snapshot-dir snapshots --publish-interval-s 10 --keep-snapshots 100 \
    > "logs/train-$m.log" 2>&1 & pids+=($!)
done
fmstream evaluate "${K[@]}" --snapshots snapshots --models deepfm,lr --out evaluation \
  --truth sim/truth.csv --poll-s 1 --max-wait-s 120 > logs/evaluate.log 2>&1 & pids+=($!)
fmstream simulate "${SIM[@]}" --speed 1440 "${K[@]}" > logs/simulate.log 2>&1
sleep 60  # the joiner's last windows close; the trainers learn the rest
fmstream evaluate "${K[@]}" --once --day 2026-01-08 --snapshots snapshots --models deepfm,lr \
  --out evaluation --truth sim/truth.csv > logs/evaluate-once.log 2>&1

python3 - <<'PY'
import json, pathlib
replay = json.loads(pathlib.Path("replay/replay.json").read_text())
print("date       model  events  holdout AUC live/replay  NE gain (holdout - served)")
for period in replay["periods"][1:]:
    date = period["start"][:10]
    for model, name in (("deepfm", "DeepFM"), ("lr", "LR")):
        row = json.loads(pathlib.Path(f"evaluation/{model}/{date}.json").read_text())
        hold, served = row["holdout"], row["served"]
        ref = period["models"][name]["holdout"]["auc"]
        gain = hold["normalized_entropy"] - served["normalized_entropy"]
        print(f"{date} {model:6} {hold['count']:6d}  {hold['auc']:.4f} / {ref:.4f}"
              f"  {gain:+.4f} (served {served['count']}, unscored {row['unscored']})")
PY
