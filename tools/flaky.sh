#!/usr/bin/env bash
# Runs the whole suite N times (default 10), each in a fresh clone of HEAD with ../shared beside it and in a random
# test order (pytest-randomly, a new seed each run), and names every test that ever failed, with the seed to replay it.
#   tools/flaky.sh [N]        exit 0 when every run passed
# One environment serves every run (installing is not what is tested): the project's .venv, made by `make install`;
# each run imports its own clone's code, which the script checks.
set -uo pipefail
runs=${1:-10}
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$repo/../shared" && pwd) || { echo "flaky.sh: no ../shared beside $repo" >&2; exit 2; }
make -s -C "$repo" install browser
python=$repo/.venv/bin/python
work=$(mktemp -d /tmp/digitrec-flaky.XXXXXX)
echo "runs in $work"
failures=$work/failures.txt
: > "$failures"
for run in $(seq 1 "$runs"); do
  place=$work/$run
  mkdir -p "$place" && ln -s "$shared" "$place/shared"
  git clone -q "$repo" "$place/digitrec"
  log=$place/pytest.log
  seed=$((RANDOM * 32768 + RANDOM))
  (
    cd "$place/digitrec" || exit 2
    export PYTHONPATH=$PWD/src
    where=$("$python" -c 'import digitrec; print(digitrec.__file__)')
    [[ $where == $PWD/* ]] || { echo "flaky.sh: the clone's code is not the one imported ($where)"; exit 2; }
    exec "$python" -m pytest -q -n 2 --dist loadgroup -p randomly --randomly-seed="$seed" -p no:cacheprovider
  ) > "$log" 2>&1
  code=$?
  summary=$(tail -1 "$log")
  printf 'run %2d: exit %d, %s (--randomly-seed=%d)\n' "$run" "$code" "$summary" "$seed"
  grep -E '^(FAILED|ERROR) ' "$log" | sed "s/^/  run $run (--randomly-seed=$seed): /" | tee -a "$failures"
  [[ $code -eq 0 ]] || grep -qE '^(FAILED|ERROR) ' "$log" || echo "  run $run (--randomly-seed=$seed): exit $code, see $log" | tee -a "$failures"
done
if [[ -s $failures ]]; then
  echo "tests that failed in some run:"; sed -E 's/^ +run [0-9]+ \([^)]*\): //' "$failures" | sort | uniq -c
  exit 1
fi
echo "all $runs runs passed"
