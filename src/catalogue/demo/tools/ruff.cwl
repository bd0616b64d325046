- class: CommandLineTool
  id: ruff_tool
  label: Lint Python files with Ruff
  doc: |-
    Runs `ruff check` on the files of `source_directory` whose path matches `regex` and writes
    Ruff's JSON diagnostics. `select` is a comma-separated list of rule codes or prefixes
    (empty: Ruff's default rules). Findings do not fail the step.
  hints:
    DockerRequirement:
      dockerPull: ghcr.io/astral-sh/ruff:0.8.6-alpine
    ResourceRequirement:
      coresMin: 0.25
      ramMin: 128
  inputs:
    source_directory: Directory
    regex: string
    select: string
  outputs:
    report:
      type: File
      outputBinding:
        glob: ruff.json
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -eu
    out="$PWD/ruff.json"
    cd "$1"
    regex="$2"
    rules="$3"
    # The files to analyse: those under the root whose path (./dir/name) matches the
    # POSIX regular expression, sorted; selection and analysis are one step (one pod).
    list=`find . -type f -regex "$regex" | sort`
    set --
    while IFS= read -r file; do
      if [ -n "$file" ]; then set -- "$@" "$file"; fi
    done <<EOF
    $list
    EOF
    if [ "$#" -eq 0 ]; then
      echo "[]" > "$out"
      exit 0
    fi
    if [ -n "$rules" ]; then
      set -- --select "$rules" "$@"
    fi
    ruff check --exit-zero --no-cache --output-format json "$@" > "$out"
  - ruff
  - $(inputs.source_directory.path)
  - $(inputs.regex)
  - $(inputs.select)
