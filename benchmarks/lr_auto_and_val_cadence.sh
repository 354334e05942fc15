#!/bin/bash
# Reproduces the "--lr auto" numbers of BENCHMARKS.md. Run in an empty folder:
#   fda generate data && fda preprocess data --out shards --size 32 --frames-train 4 --frames-test 4
#   bash lr_auto_and_val_cadence.sh   (then: fda eval --run run-lr<lr>-s<seed> --split train for the train-split R@1)
# lr: fda-tiny from random weights, 150 steps, batch 8, seeds 0 1; --lr 1e-6 (old default) vs auto (1e-3)
set -e
for lr in 1e-6 auto; do for seed in 0 1; do
  out=run-lr$lr-s$seed; rm -rf $out
  fda train shards --model fda-tiny --pretrained none --batch-size 8 --max-steps 150 --loader-workers 0 --seed $seed --lr $lr --val-split none --out $out --no-tensorboard 2>/dev/null >/dev/null
  r1=$(fda eval --run $out --device cpu --no-cache 2>/dev/null | awk '/^Text-to-video/{getline; print $3}')
  loss=$(tail -1 $out/metrics.jsonl | python3 -c "import json,sys; print(round(json.load(sys.stdin)['train/loss'],3))")
  echo "lr=$lr seed=$seed test t2v R@1=$r1 last loss=$loss"
done; done
# validation cadence: 60 steps; 15 steps/epoch at batch 8 (120 pairs); old default = every epoch end; --val-every 3 = an epoch of a 7-video set
for v in 3 0; do
  out=run-val$v; rm -rf $out
  s=$(date +%s.%N)
  fda train shards --model fda-tiny --pretrained none --batch-size 8 --max-steps 60 --loader-workers 0 --val-every $v --out $out --no-tensorboard 2>/dev/null >/dev/null
  e=$(date +%s.%N)
  n=$(grep -c 'eval/t2v_R@1' $out/metrics.jsonl)
  echo "val-every=$v validations=$n wall=$(python3 -c "print(round($e-$s,1))") s"
done
