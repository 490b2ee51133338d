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

from challenge_xyz import metrics
from challenge_xyz.data import PlantDataModule

key = metrics.logged_key()
log = next(Path("logs").rglob("metrics.csv"))
scores = [float(r[key]) for r in csv.DictReader(log.open()) if r.get(key)]
dm = PlantDataModule("tests/data", num_workers=0)
dm.setup("fit")
trivial = metrics.most_frequent_set_score(dm.val_set.targets.numpy(), dm.train_set.targets.numpy())
rows = list(csv.DictReader(open("submission.csv")))
best = max(scores) if metrics.HIGHER_IS_BETTER else min(scores)
print(f"demo: validation {key} {scores[-1]:.3f} (best {best:.3f}) vs {trivial:.3f} for"
      f" 'always the most frequent label set'")
print(f"demo: wrote {Path('submission.csv').resolve()} ({len(rows)} rows)")
PY
