#!/usr/bin/env bash
# Fails when a tracked .cpp/.hpp is not formatted by the repository's .clang-format,
# and lists those files with the command that fixes them. Run from anywhere in the
# checkout; used by .ci/run. CLANG_FORMAT picks the binary (default: clang-format, which
# is Debian 12's clang-format 14 — another version may format differently).
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
clang_format=${CLANG_FORMAT:-clang-format}
if ! command -v "$clang_format" >/dev/null; then
  echo "check_format: $clang_format not found (scripts/quickstart setup installs it)" >&2
  exit 2
fi
unformatted=()
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue  # deleted in the work tree
  if ! "$clang_format" --dry-run --Werror "$f" >/dev/null 2>&1; then
    unformatted+=("$f")
  fi
done < <(git ls-files -z -- '*.cpp' '*.hpp')
if [ ${#unformatted[@]} -gt 0 ]; then
  echo "check_format: ${#unformatted[@]} file(s) not formatted by .clang-format ($("$clang_format" --version)):" >&2
  printf '  %s\n' "${unformatted[@]}" >&2
  echo "fix: clang-format -i ${unformatted[*]}" >&2
  exit 1
fi
echo "check_format: all tracked .cpp/.hpp files are formatted"
