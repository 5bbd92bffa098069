#!/usr/bin/env bash
# Run a command while every CPU core is kept busy, then stop the busy processes.
#
#   bash hack/cpu-hog.sh CMD [ARG...]     exit status: CMD's
#
# One busy loop per core (nproc), so that the command competes for the CPU as in a crowded CI
# runner or node: a test that only passes on an idle machine (a wall-clock deadline, a sleep
# standing in for a condition) fails here.  The loops are stopped however this script ends
# (normal exit, failure, Ctrl-C, TERM), and each loop also stops by itself within a fraction of
# a second once this script is gone (even after a SIGKILL), so no hog outlives it.
set -u

parent=$$
hogs=()

stop_hogs() {
	if ((${#hogs[@]})); then
		kill "${hogs[@]}" 2>/dev/null
		wait "${hogs[@]}" 2>/dev/null
	fi
	hogs=()
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if (($# == 0)); then
	echo "usage: $0 CMD [ARG...]" >&2
	exit 2
fi

cores=$(nproc)
for ((i = 0; i < cores; i++)); do
	# Busy: a tight loop, checking every few thousand turns that this script is still there.
	(while kill -0 "$parent" 2>/dev/null; do for ((j = 0; j < 20000; j++)); do :; done; done) &
	hogs+=($!)
done
echo "cpu-hog: $cores busy processes (${hogs[*]}) while running: $*" >&2

"$@"
