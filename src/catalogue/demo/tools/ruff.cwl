- class: CommandLineTool
  id: ruff_tool
  label: Lint Python files with Ruff
  doc: |-
    Runs `ruff check` on the selected files and writes Ruff's JSON diagnostics. `select` is a
    comma-separated list of rule codes or prefixes (empty: Ruff's default rules). Findings do
    not fail the step.
  hints:
    DockerRequirement:
      dockerPull: ghcr.io/astral-sh/ruff:0.8.6-alpine
  inputs:
    source_directory: Directory
    file_list:
      type: string[]
      inputBinding:
        position: 1
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
    root="$1"
    rules="$2"
    shift 2
    cd "$root"
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
  - $(inputs.select)
