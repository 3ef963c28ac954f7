#!/usr/bin/env bash
# Stop the one-node Slurm cluster that slurm/start.sh started: cancel all jobs, then stop slurmd,
# slurmctld, slurmdbd, mariadbd and munged, in that order. Only processes named in start.sh's pid
# files are stopped. Safe to run again, and when nothing runs.
#
# Usage: slurm/stop.sh [--purge]
#   --purge  also delete the state folder (accounting database, job state, logs) and the config
#            files that start.sh generated in /etc/slurm, so that the next start.sh begins afresh.
set -euo pipefail

SCRIPT_NAME=slurm/stop.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/common.sh
source "$SCRIPT_DIR/common.sh"

# Seconds a cancelled job gets to exit after SIGTERM before stop.sh kills its processes. Shorter
# than Slurm's KillWait (30 s by default) because submitit jobs ignore SIGTERM, and waiting out
# KillWait for each teardown would slow the tests.
JOB_TERM_GRACE=10
# Seconds to wait for jobs to leave squeue after SIGKILL.
JOB_KILL_TIMEOUT=30
# Seconds to wait for a daemon to exit after SIGTERM before sending SIGKILL.
DAEMON_STOP_TIMEOUT=30

purge=0

parse_arguments() {
  while (($#)); do
    case $1 in
      --purge) purge=1 ;;
      -h | --help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
      *) die "unknown argument '$1'; usage: $0 [--purge]" ;;
    esac
    shift
  done
}

no_jobs_left() {
  [[ -z $(squeue --noheader --format=%A) ]]
}

# Job steps outlive slurmd, and steps that lose munged keep retrying instead of exiting. So cancel
# every job first and wait until squeue lists none.
cancel_jobs() {
  local job_ids
  if ! running_pid slurmctld >/dev/null || ! running_pid slurmd >/dev/null; then
    return 0
  fi
  job_ids=$(squeue --noheader --format=%A | tr '\n' ' ') || {
    log "warning: squeue failed, so no jobs were cancelled"
    return 0
  }
  if [[ -z ${job_ids// /} ]]; then
    return 0
  fi

  log "cancelling jobs: $job_ids"
  # shellcheck disable=SC2086  # word splitting of the job id list is intended
  scancel $job_ids || log "warning: scancel $job_ids failed"
  if wait_until "$JOB_TERM_GRACE" no_jobs_left; then
    return 0
  fi

  kill_remaining_jobs
  if ! wait_until "$JOB_KILL_TIMEOUT" no_jobs_left; then
    log "warning: jobs still listed by squeue $JOB_KILL_TIMEOUT s after SIGKILL: $(squeue --noheader --format=%A | tr '\n' ' ')"
  fi
}

# A cancelled job that ignores SIGTERM stays COMPLETING until KillWait ends, and scancel rejects
# it meanwhile. So send SIGKILL to the processes that slurmstepd tracks for each job still listed.
kill_remaining_jobs() {
  local job_id pids
  for job_id in $(squeue --noheader --format=%A); do
    pids=$(scontrol listpids "$job_id" 2>/dev/null | awk 'NR > 1 { print $1 }' | tr '\n' ' ')
    if [[ -n $pids ]]; then
      log "job $job_id still running $JOB_TERM_GRACE s after SIGTERM; sending SIGKILL to pids $pids"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
    fi
  done
}

# Send SIGTERM to a daemon that start.sh started, wait for it to exit, and use SIGKILL after
# DAEMON_STOP_TIMEOUT seconds.
stop_daemon() {
  local name=$1 pid
  if ! pid=$(running_pid "$name"); then
    log "$name not running"
    rm -f "$(pid_file_of "$name")"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until "$DAEMON_STOP_TIMEOUT" not process_alive "$pid"; then
    log "warning: $name (pid $pid) still running $DAEMON_STOP_TIMEOUT s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 not process_alive "$pid" || log "warning: $name (pid $pid) survived SIGKILL"
  fi
  rm -f "$(pid_file_of "$name")"
}

# slurmd starts one slurmstepd per job step, and a step outlives slurmd. They have no pid file, so
# report any that are left instead of guessing which ones to kill.
report_leftover_steps() {
  local pids
  pids=$(pgrep -x slurmstepd | tr '\n' ' ' || true)
  if [[ -n $pids ]]; then
    log "warning: slurmstepd processes still running: $pids; end them with: kill $pids"
  fi
}

# Delete only files that start.sh generated, never a hand-written config.
remove_generated_file() {
  local path=$1
  if [[ -e $path ]] && head -n 1 "$path" | grep -qF "$GENERATED_MARKER"; then
    rm -f "$path"
    log "removed $path"
  fi
}

purge_state() {
  remove_generated_file "$SLURM_CONF_DIR/slurm.conf"
  remove_generated_file "$SLURM_CONF_DIR/slurmdbd.conf"
  if [[ -d $STATE ]]; then
    rm -rf "$STATE"
    log "removed $STATE"
  fi
}

main() {
  local start_time=$EPOCHREALTIME
  parse_arguments "$@"
  require_root
  check_settings
  if [[ ! -d $STATE ]]; then
    log "nothing to stop: $STATE does not exist"
    ((purge)) && purge_state
    return 0
  fi
  lock_state
  cd /

  cancel_jobs
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon slurmdbd
  stop_daemon mariadbd
  stop_daemon munged
  report_leftover_steps

  if ((purge)); then
    purge_state
  fi
  log "stopped in $(seconds_since "$start_time") s"
}

main "$@"
