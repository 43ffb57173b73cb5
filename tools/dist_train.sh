#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [tools/train.py options]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT (the same on every node).
# Without CUDA each process trains on CPUs over gloo; GPUS is then the number of processes.
# Faults: if a process dies, torchrun stops the others and exits non-zero; a process that hangs
# fails the collectives after env_cfg.dist_cfg.timeout seconds. `exec` hands signals sent to
# this script (a scheduler's SIGTERM) to torchrun, which passes them on to the workers.
# Restart a killed job with the same command plus --resume (see docs/robustness.md).
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

# shellcheck source=tools/check_port.sh
source "$(dirname "$0")/check_port.sh"
export PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
