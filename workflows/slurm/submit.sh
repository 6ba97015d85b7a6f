#!/usr/bin/env bash
# Submit the driver of a SLURM campaign:  sbatch submit.sh
# The driver is light (it schedules jobflow jobs and writes results); the Dask workers it
# starts as their own SLURM jobs (dask-jobqueue, adaptive: jobs that reach their worker
# lifetime or walltime, or are cancelled, are replaced) get the GPUs. Scheduler traffic is
# TLS-encrypted with a throwaway certificate (execution.tls, on by default).
#SBATCH --job-name=matris-flows-driver
#SBATCH --time=48:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --output=matris-flows-driver-%j.log
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")}"
# Override with sbatch --export=ALL,MATRIS_FLOWS_VENV=...,CAMPAIGN_SPEC=...,CAMPAIGN_DIR=...
source "${MATRIS_FLOWS_VENV:-$HOME/matris-flows/.venv}/bin/activate"
export MATRIS_FLOWS_MONGO_USER MATRIS_FLOWS_MONGO_PASSWORD MP_API_KEY   # from your environment
# Resumes where a previous driver stopped: finished jobs are skipped. If no worker runs and
# no job finishes for execution.stall_timeout seconds, the driver stops with one `error:`
# line (exit 2); resubmit this script to carry on.
matris-flows screen "${CAMPAIGN_SPEC:-campaign.yaml}" --dir "${CAMPAIGN_DIR:-$HOME/campaigns/slurm-oxides}"
