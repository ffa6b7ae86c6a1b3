#!/usr/bin/env bash
# Fetches trixie's criu 4.1.1 into build/criu/ (bookworm's 3.17.1 fails `criu check` on these
# kernels: vDSO), without installing it; prints the path of the binary. See scripts/fetch-trixie.sh.
exec "$(dirname -- "${BASH_SOURCE[0]}")/fetch-trixie.sh" criu
