#!/usr/bin/env bash
# The main job: bake the template with its defaults into demo/, install the baked project, train
# the baseline on its sample images on the CPU and write submission.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
root=$PWD
rm -rf demo
mkdir demo
.venv/bin/python -m cookiecutter --no-input -o demo .
project="demo/kaggle-plant-pathology"
# The baked project's own venv, layered on .venv so PyTorch is not installed twice.
.venv/bin/python scripts/layered_venv.py demo/.venv >/dev/null
cd "$project"
# As its users do: `make install` (its requirements.lock, the project, the git hooks).
git init -q
make --no-print-directory install PYTHON="$root/demo/.venv/bin/python" >/dev/null
configs=(--config configs/baseline.yaml --config configs/cpu_debug.yaml)
"$root/demo/.venv/bin/challenge_xyz" fit "${configs[@]}"
"$root/demo/.venv/bin/challenge_xyz" predict "${configs[@]}" --ckpt_path checkpoints/last.ckpt
"$root/demo/.venv/bin/python" - <<'PY'
import csv
from pathlib import Path

from challenge_xyz.data import PlantDataModule
from challenge_xyz.metrics import most_frequent_set_f1

metrics = next(Path("logs").rglob("metrics.csv"))
scores = [float(r["val/f1"]) for r in csv.DictReader(metrics.open()) if r.get("val/f1")]
dm = PlantDataModule("tests/data", num_workers=0)
dm.setup("fit")
trivial = most_frequent_set_f1(dm.val_set.targets.numpy(), dm.train_set.targets.numpy())
rows = list(csv.DictReader(open("submission.csv")))
print(f"demo: validation samples-F1 {scores[-1]:.3f} (best {max(scores):.3f}) vs {trivial:.3f} for"
      f" 'always the most frequent label set'")
print(f"demo: wrote {Path('submission.csv').resolve()} ({len(rows)} rows)")
PY
