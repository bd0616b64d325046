- class: CommandLineTool
  id: flake8_tool
  label: Check Python style with Flake8
  doc: |-
    Runs `flake8` on the files of `source_directory` whose path matches `regex` with the JSON
    formatter (flake8-json): an object from file name to its violations (`code`, `line_number`,
    `column_number`, `text`, `physical_line`). Findings do not fail the step. One process
    (`--jobs 1`): its parallel mode needs POSIX semaphores, which the local runner's sandbox
    does not offer to a run's user.
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
        glob: flake8.json
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -eu
    out="$PWD/flake8.json"
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
      echo '{}' > "$out"
      exit 0
    fi
    flake8 --format=json --output-file="$out" --exit-zero --jobs=1 "$@"
  - flake8
  - $(inputs.source_directory.path)
  - $(inputs.regex)
