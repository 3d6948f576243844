#!/usr/bin/env bash
# Few-shot robustness on multi-agent HalfCheetah 6x1 (the report's Figure 17 shape), CPU-sized.
#
#   1. pretrain each algorithm on the intact robot (jax_mat/configs/experiment/mujoco_halfcheetah_6x1_cpu.yaml);
#   2. for each disabled joint: fine-tune the pretrained policy (--init-from, fresh Adam state) and train
#      from scratch, both for the same budget FINETUNE_STEPS;
#   3. plot, per joint, the fine-tuned and scratch learning curves (scripts/plot_results.py, episode/return).
#
# Settings (environment variables):
#   OUT=runs/fewshot_mujoco    where the runs, figures and tables go (finished runs there are reused)
#   ALGOS="mat marwkv"          algorithms (each pretrains and fine-tunes its own network)
#   JOINTS="bthigh bshin bfoot fthigh fshin ffoot"   one fine-tuning task per disabled joint
#   PRETRAIN_STEPS=2000000      env steps on the intact robot (the CPU learning check's budget)
#   FINETUNE_STEPS=200000       env steps of each fine-tuning and each scratch run
#   PRETRAINED=RUN_DIR          reuse this pretrained run instead of step 1 (with a single algorithm in ALGOS)
#   SEEDS=1                     seeds per run (--seeds: one vmapped program; the pretrained seeds map one to one)
#   KEEP_OPTIMIZER=0            1: fine-tune with the checkpoint's Adam state instead of a fresh one
#   BUDGET=cpu                  tiny: a smoke run of the whole protocol in minutes (small network, 1000 steps
#                               per run, ALGOS=mat and JOINTS=bthigh unless given); its numbers mean nothing
#   EXTRA="key=value ..."       overrides added to every run
#
# Roughly 1-2 hours per pretraining and 10-20 minutes per 200k-step run with MJX on a 2-core CPU, so the
# defaults take a day: pick a few JOINTS, or pass PRETRAINED.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=${BUDGET:-cpu}
case "$BUDGET" in
  cpu)
    ALGOS=${ALGOS:-"mat marwkv"}
    JOINTS=${JOINTS:-"bthigh bshin bfoot fthigh fshin ffoot"}
    PRETRAIN_STEPS=${PRETRAIN_STEPS:-2000000}
    FINETUNE_STEPS=${FINETUNE_STEPS:-200000}
    SIZE=()
    SMOOTH=10
    ;;
  tiny)
    ALGOS=${ALGOS:-mat}
    JOINTS=${JOINTS:-bthigh}
    PRETRAIN_STEPS=${PRETRAIN_STEPS:-1000}
    FINETUNE_STEPS=${FINETUNE_STEPS:-1000}
    # 1 env x 100 steps per update: each run finishes one 1000-step episode, so every curve has a point.
    SIZE=(train.n_envs=1 train.episode_length=100 algo.num_mini_batch=2 algo.ppo_epochs=2 algo.n_embd=16
          train.eval_episodes=1 train.checkpoint_every=5)
    SMOOTH=1
    ;;
  *) echo "error: BUDGET must be cpu or tiny, got '$BUDGET'" >&2; exit 2 ;;
esac
OUT=${OUT:-runs/fewshot_mujoco}
SEEDS=${SEEDS:-1}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
read -r -a ALGO_LIST <<< "$ALGOS"
read -r -a JOINT_LIST <<< "$JOINTS"
if [[ -n "${PRETRAINED:-}" && ${#ALGO_LIST[@]} -ne 1 ]]; then
  echo "error: PRETRAINED=$PRETRAINED names one run: set ALGOS to its algorithm alone" >&2; exit 2
fi
OPTIMIZER=(--reset-optimizer)
[[ "${KEEP_OPTIMIZER:-0}" == 1 ]] && OPTIMIZER=()
mkdir -p "$OUT"

# train RUN_DIR ARGS...: one run, skipped when RUN_DIR already finished (its eval.json exists).
train() {
  local run_dir=$1; shift
  if [[ -f "$run_dir/eval.json" ]]; then echo "== $run_dir: finished, reused"; return; fi
  if [[ -e "$run_dir" ]]; then echo "error: $run_dir exists but did not finish; --resume it or remove it" >&2; exit 2; fi
  echo "== $run_dir"
  python -m jax_mat.train mujoco_halfcheetah_6x1_cpu "$@" "${SIZE[@]}" "${EXTRA_ARGS[@]}" --seeds "$SEEDS" \
    --run-dir "$run_dir" --no-progress
}

for algo in "${ALGO_LIST[@]}"; do
  pretrained=${PRETRAINED:-$OUT/$algo-pretrain-intact}
  if [[ -z "${PRETRAINED:-}" ]]; then
    train "$pretrained" "algo=$algo" "train.total_steps=$PRETRAIN_STEPS"
  fi
  for joint in "${JOINT_LIST[@]}"; do
    train "$OUT/$algo-finetune-$joint" "algo=$algo" "env.disabled_joints=[$joint]" \
      "train.total_steps=$FINETUNE_STEPS" --init-from "$pretrained" "${OPTIMIZER[@]}"
    train "$OUT/$algo-scratch-$joint" "algo=$algo" "env.disabled_joints=[$joint]" "train.total_steps=$FINETUNE_STEPS"
  done
done

for joint in "${JOINT_LIST[@]}"; do
  runs=()
  for algo in "${ALGO_LIST[@]}"; do runs+=("$OUT/$algo-finetune-$joint" "$OUT/$algo-scratch-$joint"); done
  python -m scripts.plot_results "${runs[@]}" --group-by run --tag episode/return --smooth "$SMOOTH" \
    --title "HalfCheetah 6x1, $joint disabled: fine-tuned vs scratch, $BUDGET" \
    --out "$OUT/fewshot-$joint.png" --table "$OUT/fewshot-$joint.md"
done
