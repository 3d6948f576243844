#!/usr/bin/env bash
# Few-shot transfer to held-out SMAX maps (the report's Figure 18 shape), CPU-sized.
#
#   1. train one policy on several maps at once (env=smax_multi env.maps=TRAIN_MAPS), every map padded to the
#      most allies and enemies over TRAIN_MAPS and HELDOUT_MAPS, so the network also fits the held-out maps;
#   2. for each held-out map: fine-tune that policy on it (--init-from, fresh Adam state) and train from
#      scratch on it, both for the same budget FINETUNE_STEPS and with the same padding;
#   3. plot, per held-out map, the fine-tuned and scratch win-rate curves (scripts/plot_results.py).
#
# Settings (environment variables):
#   OUT=runs/fewshot_smax           where the runs, figures and tables go (finished runs there are reused)
#   ALGOS="mat"                      algorithms (e.g. "mat marwkv")
#   TRAIN_MAPS=3m,8m,2s3z,3s5z       the maps trained together
#   HELDOUT_MAPS=5m_vs_6m,3s_vs_5z,6h_vs_8z   the few-shot tasks (at most as many allies/enemies as padded)
#   PRETRAIN_STEPS=4000000           env steps on TRAIN_MAPS (shared equally between them)
#   FINETUNE_STEPS=500000            env steps of each fine-tuning and each scratch run
#   PRETRAINED=RUN_DIR               reuse this smax_multi run instead of step 1 (a single algorithm in ALGOS;
#                                    it must have been padded as step 1 pads: see PAD below)
#   SEEDS=1                          seeds per run (--seeds)
#   KEEP_OPTIMIZER=0                 1: fine-tune with the checkpoint's Adam state instead of a fresh one
#   BUDGET=cpu                       tiny: a smoke run of the whole protocol in minutes (small network, 400 steps
#                                    per run, TRAIN_MAPS=3m,2s3z and HELDOUT_MAPS=5m_vs_6m unless given);
#                                    its numbers mean nothing
#   EXTRA="key=value ..."            overrides added to every run
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=${BUDGET:-cpu}
case "$BUDGET" in
  cpu)
    TRAIN_MAPS=${TRAIN_MAPS:-3m,8m,2s3z,3s5z}
    HELDOUT_MAPS=${HELDOUT_MAPS:-5m_vs_6m,3s_vs_5z,6h_vs_8z}
    PRETRAIN_STEPS=${PRETRAIN_STEPS:-4000000}
    FINETUNE_STEPS=${FINETUNE_STEPS:-500000}
    SIZE=()
    SMOOTH=10
    ;;
  tiny)
    TRAIN_MAPS=${TRAIN_MAPS:-3m,2s3z}
    HELDOUT_MAPS=${HELDOUT_MAPS:-5m_vs_6m}
    PRETRAIN_STEPS=${PRETRAIN_STEPS:-400}
    FINETUNE_STEPS=${FINETUNE_STEPS:-400}
    # 4 envs x 25 steps per update: each env plays at least one (<= 100-step) episode, so every curve has a point.
    SIZE=(train.n_envs=4 train.episode_length=25 algo.num_mini_batch=1 algo.ppo_epochs=2 algo.n_embd=16
          train.eval_episodes=4 train.checkpoint_every=2)
    SMOOTH=1
    ;;
  *) echo "error: BUDGET must be cpu or tiny, got '$BUDGET'" >&2; exit 2 ;;
esac
OUT=${OUT:-runs/fewshot_smax}
ALGOS=${ALGOS:-mat}
SEEDS=${SEEDS:-1}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
read -r -a ALGO_LIST <<< "$ALGOS"
IFS=, read -r -a HELDOUT_LIST <<< "$HELDOUT_MAPS"
if [[ -n "${PRETRAINED:-}" && ${#ALGO_LIST[@]} -ne 1 ]]; then
  echo "error: PRETRAINED=$PRETRAINED names one run: set ALGOS to its algorithm alone" >&2; exit 2
fi
OPTIMIZER=(--reset-optimizer)
[[ "${KEEP_OPTIMIZER:-0}" == 1 ]] && OPTIMIZER=()
# PAD: the most allies and enemies over every map, training and held-out (one network shape for all runs).
sizes=$(python -c "
import sys
from jax_mat.envs.smax_multi import common_sizes
try:
    print(*common_sizes(sys.argv[1].split(',') + sys.argv[2].split(',')))
except ValueError as err:
    sys.exit(f'error: {err}')" "$TRAIN_MAPS" "$HELDOUT_MAPS")
read -r PAD_ALLIES PAD_ENEMIES <<< "$sizes"
PAD=("env.pad_allies=$PAD_ALLIES" "env.pad_enemies=$PAD_ENEMIES")
echo "== padding every map to $PAD_ALLIES allies and $PAD_ENEMIES enemies"
mkdir -p "$OUT"

# train RUN_DIR ARGS...: one run, skipped when RUN_DIR already finished (its eval.json exists).
train() {
  local run_dir=$1; shift
  if [[ -f "$run_dir/eval.json" ]]; then echo "== $run_dir: finished, reused"; return; fi
  if [[ -e "$run_dir" ]]; then echo "error: $run_dir exists but did not finish; --resume it or remove it" >&2; exit 2; fi
  echo "== $run_dir"
  python -m jax_mat.train env=smax_multi "${PAD[@]}" "$@" "${SIZE[@]}" "${EXTRA_ARGS[@]}" --seeds "$SEEDS" \
    --run-dir "$run_dir" --no-progress
}

for algo in "${ALGO_LIST[@]}"; do
  pretrained=${PRETRAINED:-$OUT/$algo-pretrain-${TRAIN_MAPS//,/-}}
  if [[ -z "${PRETRAINED:-}" ]]; then
    train "$pretrained" "algo=$algo" "env.maps=[$TRAIN_MAPS]" "train.total_steps=$PRETRAIN_STEPS"
  fi
  for map in "${HELDOUT_LIST[@]}"; do
    train "$OUT/$algo-finetune-$map" "algo=$algo" "env.maps=[$map]" "train.total_steps=$FINETUNE_STEPS" \
      --init-from "$pretrained" "${OPTIMIZER[@]}"
    train "$OUT/$algo-scratch-$map" "algo=$algo" "env.maps=[$map]" "train.total_steps=$FINETUNE_STEPS"
  done
done

for map in "${HELDOUT_LIST[@]}"; do
  runs=()
  for algo in "${ALGO_LIST[@]}"; do runs+=("$OUT/$algo-finetune-$map" "$OUT/$algo-scratch-$map"); done
  python -m scripts.plot_results "${runs[@]}" --group-by run --tag episode/win_rate --smooth "$SMOOTH" \
    --title "SMAX $map (held out): fine-tuned vs scratch, $BUDGET" \
    --out "$OUT/fewshot-$map.png" --table "$OUT/fewshot-$map.md"
done
