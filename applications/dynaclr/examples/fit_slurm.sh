#!/bin/bash
# Train DynaCLR with Lightning DDP on SLURM GPU nodes: one task (process) per GPU.
#
#   sbatch applications/dynaclr/examples/fit_slurm.sh                     # from the repository root
#   CONFIG=my_fit.yml sbatch applications/dynaclr/examples/fit_slurm.sh   # another config
#
# Before the time limit, SLURM sends SIGUSR1 (--signal below). Lightning's SLURMEnvironment
# (auto_requeue, on by default) then saves <run dir>/hpc_ckpt_<n>.ckpt and requeues the job
# (`scontrol requeue`, allowed by --requeue). The requeued job keeps its job id, so it runs this
# script again with the same run directory and resumes from that checkpoint: epoch, step,
# optimizer and scheduler state.
#
# Change the #SBATCH lines for your cluster (partition, account, sizes). Keep
# --ntasks-per-node equal to the N of --gres=gpu:N: the script derives --trainer.devices and
# --trainer.num_nodes from the allocation, so the config's values do not matter.

#SBATCH --job-name=dynaclr_fit
#SBATCH --nodes=1                  # nodes; becomes --trainer.num_nodes
#SBATCH --ntasks-per-node=4        # one task per GPU; becomes --trainer.devices
#SBATCH --gres=gpu:4               # GPUs per node: the same number as --ntasks-per-node
#SBATCH --cpus-per-task=14         # CPU cores per GPU (data loading and augmentation threads)
#SBATCH --time=20:00:00            # wall time of one run; a longer training is requeued
#SBATCH --requeue                  # let Lightning put the job back in the queue
#SBATCH --signal=SIGUSR1@90        # SIGUSR1 90 s before the time limit: checkpoint and requeue
#SBATCH --open-mode=append         # requeued runs append to the same log
#SBATCH --output=%x-%j.out         # log file: <job name>-<job id>.out
##SBATCH --partition=gpu           # uncomment and set for your cluster
##SBATCH --account=my_account
##SBATCH --mem=0                  # all the memory of each node, if your cluster needs a --mem

set -euo pipefail

# The training config (LightningCLI YAML), relative to the directory the job was submitted from.
CONFIG=${CONFIG:-applications/dynaclr/examples/configs/fit.yml}
# Lightning's default_root_dir: where the HPC checkpoints go. One directory per job, stable across
# requeues (same job name and id) and never shared with another job. The config's logger and
# ModelCheckpoint keep their own directories (trainer.logger.init_args.save_dir in fit.yml).
RUNS_DIR=${RUNS_DIR:-$PWD/slurm_runs}
RUN_DIR="$RUNS_DIR/$SLURM_JOB_NAME/$SLURM_JOB_ID"

# One task per GPU: Lightning starts no processes itself under srun, so the GPUs of a node must
# match its tasks.
if [[ -n "${SLURM_GPUS_ON_NODE:-}" && "$SLURM_GPUS_ON_NODE" != "$SLURM_NTASKS_PER_NODE" ]]; then
    echo "error: $SLURM_GPUS_ON_NODE GPUs but $SLURM_NTASKS_PER_NODE tasks per node;" \
        "set --ntasks-per-node to the N of --gres=gpu:N." >&2
    exit 1
fi

# A requeued run resumes from the newest HPC checkpoint. Lightning would pick it by itself when
# the config sets no ckpt_path; `--ckpt_path hpc` also overrides a config's ckpt_path (e.g. a
# checkpoint to start from), which belongs to the first run only. A job that SLURM requeued
# without one (preemption, a failed node) continues from the config's last.ckpt instead, which
# ResumableCheckpoint writes during training and on SIGTERM (`--ckpt_path last`: the newest in
# the logger's run directory, so give each training its own logger version, as fit.yml does).
RESUME=()
if compgen -G "$RUN_DIR/hpc_ckpt_*.ckpt" >/dev/null; then
    RESUME=(--ckpt_path hpc)
    echo "Resuming from the newest HPC checkpoint in $RUN_DIR"
elif [[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]]; then
    RESUME=(--ckpt_path last)
    echo "Requeued (restart $SLURM_RESTART_COUNT) without an HPC checkpoint: resuming from the config's last.ckpt"
fi
mkdir -p "$RUN_DIR"
echo "Training on $SLURM_NNODES node(s) x $SLURM_NTASKS_PER_NODE GPU(s), config $CONFIG, run directory $RUN_DIR"

srun uv run --frozen dynaclr fit -c "$CONFIG" \
    --trainer.devices "$SLURM_NTASKS_PER_NODE" \
    --trainer.num_nodes "$SLURM_NNODES" \
    --trainer.default_root_dir "$RUN_DIR" \
    ${RESUME[@]+"${RESUME[@]}"}
