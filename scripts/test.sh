#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, vet, every test under the
# race detector (ipmitool, FreeIPMI and pyghmi against the bridge and the
# embedded vCenter simulator), then each fuzz target for a short budget.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
CI="${CI:-}" go test -race -count=1 ./...

fuzztime="${FUZZTIME:-10s}"
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
  pkg="./$(dirname "${target#./}")"
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$target" | cut -d' ' -f2); do
    echo "fuzz $pkg $fn ($fuzztime)"
    # Go's fuzz coordinator sometimes ends a timed run with a bare "context
    # deadline exceeded" when a worker is slow to stop; that is not a
    # finding (a finding writes "Failing input"), so such a run is repeated once.
    if ! out=$(go test "$pkg" -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" 2>&1); then
      echo "$out"
      if grep -q "Failing input" <<<"$out" || ! grep -q "context deadline exceeded" <<<"$out"; then
        exit 1
      fi
      echo "fuzz coordinator timed out without a finding; running $fn again"
      go test "$pkg" -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime"
    else
      echo "$out" | tail -n 2
    fi
  done
done
