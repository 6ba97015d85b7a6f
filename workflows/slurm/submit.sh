#!/usr/bin/env bash
# Submit the driver of a SLURM campaign. The driver is light (it schedules jobflow jobs and
# writes results); the Dask workers it starts through dask-jobqueue get the GPUs.
#SBATCH --job-name=matris-flows-driver
#SBATCH --time=48:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --output=matris-flows-driver-%j.log
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")}"
source "$HOME/matris-flows/.venv/bin/activate"
export MATRIS_FLOWS_MONGO_USER MATRIS_FLOWS_MONGO_PASSWORD MP_API_KEY   # from your environment
# Resumes where a previous driver stopped: finished jobs are skipped.
matris-flows screen campaign.yaml --dir "$HOME/campaigns/slurm-oxides"
