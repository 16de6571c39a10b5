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
    go test "$pkg" -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime"
  done
done
