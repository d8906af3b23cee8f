#!/bin/bash
# bidsqc on a SLURM cluster: one array task per participant, then the group level.
#   N=$(ls -d /data/sub-* | wc -l)
#   JOB=$(sbatch --parsable --array=1-$N scripts/slurm_array.sh /data /out [bidsqc options])
#   sbatch --dependency=afterany:$JOB --wrap "bidsqc /data /out group"
# Task i rates the i-th sub-* folder of the dataset (sorted); every task writes into the same output
# folder (atomic renames: concurrent tasks never clash). BIDSQC: the command to run (default bidsqc;
# e.g. "apptainer run --containall --cleanenv -B /data:/data:ro -B /out:/out bidsqc.sif", with the
# paths inside the container). SGE: #$ -t 1-N and $SGE_TASK_ID; PBS: #PBS -J 1-N and $PBS_ARRAY_INDEX.
#SBATCH --job-name=bidsqc
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=01:00:00
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: sbatch --array=1-N $0 BIDS_DIR OUTPUT_DIR [bidsqc options]" >&2
    exit 2
fi
BIDS=$1
OUT=$2
shift 2
TASK=${SLURM_ARRAY_TASK_ID:-${SGE_TASK_ID:-${PBS_ARRAY_INDEX:-}}}
if [ -z "$TASK" ]; then
    echo "slurm_array.sh: no array task index (submit with sbatch --array=1-N)" >&2
    exit 2
fi
SUBJECT=$(find "$BIDS" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' | sort | sed -n "${TASK}p")
if [ -z "$SUBJECT" ]; then
    echo "slurm_array.sh: task $TASK has no participant (the dataset has fewer sub-* folders)" >&2
    exit 2
fi
WORK="${TMPDIR:-/tmp}/bidsqc_work_${SLURM_JOB_ID:-job}_${TASK}"
${BIDSQC:-bidsqc} "$BIDS" "$OUT" participant --participant-label "${SUBJECT#sub-}" \
    --nprocs "${SLURM_CPUS_PER_TASK:-1}" -w "$WORK" "$@"
status=$?
rm -rf "$WORK"
exit $status
