#!/bin/bash
# Write DynaCLR embeddings of every tracked cell with one SLURM GPU (EmbeddingWriter in predict.yml).
#
#   sbatch applications/dynaclr/examples/predict_slurm.sh                          # from the repository root
#   CKPT_PATH=path/to/last.ckpt sbatch applications/dynaclr/examples/predict_slurm.sh
#   CONFIG=my_predict.yml sbatch applications/dynaclr/examples/predict_slurm.sh
#
# Change the #SBATCH lines for your cluster. More GPUs also work (keep --ntasks-per-node equal
# to the N of --gres=gpu:N): the EmbeddingWriter gathers every rank's cells into one store.

#SBATCH --job-name=dynaclr_predict
#SBATCH --nodes=1                  # nodes; becomes --trainer.num_nodes
#SBATCH --ntasks-per-node=1        # one task per GPU; becomes --trainer.devices
#SBATCH --gres=gpu:1               # GPUs per node: the same number as --ntasks-per-node
#SBATCH --cpus-per-task=16         # CPU cores for reading patches
#SBATCH --time=01:00:00
#SBATCH --output=%x-%j.out         # log file: <job name>-<job id>.out
##SBATCH --partition=gpu           # uncomment and set for your cluster
##SBATCH --account=my_account

set -euo pipefail

# The prediction config (LightningCLI YAML), relative to the directory the job was submitted from.
CONFIG=${CONFIG:-applications/dynaclr/examples/configs/predict.yml}
# The trained checkpoint; when unset, the config's ckpt_path is used.
CKPT_PATH=${CKPT_PATH:-}

if [[ -n "${SLURM_GPUS_ON_NODE:-}" && "$SLURM_GPUS_ON_NODE" != "$SLURM_NTASKS_PER_NODE" ]]; then
    echo "error: $SLURM_GPUS_ON_NODE GPUs but $SLURM_NTASKS_PER_NODE tasks per node;" \
        "set --ntasks-per-node to the N of --gres=gpu:N." >&2
    exit 1
fi

CHECKPOINT=()
if [[ -n "$CKPT_PATH" ]]; then
    CHECKPOINT=(--ckpt_path "$CKPT_PATH")
fi
echo "Predicting on $SLURM_NNODES node(s) x $SLURM_NTASKS_PER_NODE GPU(s), config $CONFIG"

srun uv run --frozen dynaclr predict -c "$CONFIG" \
    --trainer.devices "$SLURM_NTASKS_PER_NODE" \
    --trainer.num_nodes "$SLURM_NNODES" \
    ${CHECKPOINT[@]+"${CHECKPOINT[@]}"}
