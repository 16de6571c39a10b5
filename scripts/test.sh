#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, vet, every test under the
# race detector (ipmitool, FreeIPMI and pyghmi against the bridge and the
# embedded vCenter simulator), then each fuzz target for a short budget.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the suite needs, checked first so that a fresh machine stops at once
# with what to install rather than failing tests one by one (.ci/run
# installs them on Debian).
missing=()
cc=$(go env CC)
command -v "${cc:-gcc}" >/dev/null || missing+=("a C compiler (-race needs cgo): gcc")
command -v ipmitool >/dev/null || missing+=(ipmitool)
command -v ipmipower >/dev/null || missing+=(freeipmi-tools)
command -v socat >/dev/null || missing+=(socat)
/usr/bin/python3 -c 'import pyghmi.ipmi.command' 2>/dev/null || missing+=(python3-pyghmi)
/usr/bin/python3 -c 'import sushy' 2>/dev/null || missing+=(python3-sushy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh needs: ${missing[*]}" >&2
  echo "on Debian or Ubuntu: apt-get install -y gcc ipmitool freeipmi-tools socat python3-pyghmi python3-sushy (or run .ci/run as root)" >&2
  exit 1
fi
if ! go mod tidy -diff >/dev/null; then
  echo "go.mod or go.sum is not tidy: run go mod tidy" >&2
  exit 1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# The suite's events go through testreport, which prints what go test
# would (a line a package, failed tests' output) and then the slowest
# tests; pipefail keeps go test's exit status.
CI="${CI:-}" go test -race -count=1 -parallel 4 -json ./... | go run ./scripts/testreport

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
