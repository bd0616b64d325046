- class: CommandLineTool
  id: bandit_tool
  label: Find common security issues in Python files with Bandit
  doc: |-
    Runs `bandit` on the selected files and writes its JSON report (`results`, `errors` and
    `metrics`, whose `_totals` the digest counts by severity). Findings do not fail the step.
  hints:
    DockerRequirement:
      dockerPull: aq-local/tools:1
  inputs:
    source_directory: Directory
    file_list:
      type: string[]
      inputBinding:
        position: 1
  outputs:
    report:
      type: File
      outputBinding:
        glob: bandit.json
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -eu
    out="$PWD/bandit.json"
    cd "$1"
    shift
    if [ "$#" -eq 0 ]; then
      echo '{"errors": [], "metrics": {"_totals": {}}, "results": []}' > "$out"
      exit 0
    fi
    bandit --format json --output "$out" --exit-zero --quiet "$@"
  - bandit
  - $(inputs.source_directory.path)
