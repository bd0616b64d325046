- class: CommandLineTool
  id: bandit_tool
  label: Find common security issues in Python files with Bandit
  doc: |-
    Runs `bandit` on the files of `source_directory` whose path matches `regex` and writes its
    JSON report (`results`, `errors` and `metrics`, whose `_totals` the digest counts by
    severity). Findings do not fail the step.
  hints:
    DockerRequirement:
      dockerPull: aq-local/tools:1
    ResourceRequirement:
      coresMin: 0.5
      ramMin: 256
  inputs:
    source_directory: Directory
    regex: string
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
    regex="$2"
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
      echo '{"errors": [], "metrics": {"_totals": {}}, "results": []}' > "$out"
      exit 0
    fi
    bandit --format json --output "$out" --exit-zero --quiet "$@"
  - bandit
  - $(inputs.source_directory.path)
  - $(inputs.regex)
