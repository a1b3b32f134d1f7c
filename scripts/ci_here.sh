#!/usr/bin/env bash
# Run .ci/run on a clean checkout of HEAD, beside the working tree, so that editing
# the working tree cannot disturb the run. Usage: scripts/ci_here.sh [LOGFILE]
set -euo pipefail
top=$(git rev-parse --show-toplevel)
dir=$(mktemp -d)/ci
git -C "$top" worktree add --detach "$dir" HEAD >/dev/null
trap 'git -C "$top" worktree remove --force "$dir"' EXIT
cd "$dir"
bash .ci/run
