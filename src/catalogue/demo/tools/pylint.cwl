- class: CommandLineTool
  id: pylint_tool
  label: Analyse Python files with Pylint
  doc: |-
    Runs `pylint` on the files of `source_directory` whose path matches `regex` and writes its
    JSON messages (`type`, `symbol`, `message-id`, `path`, `line`, ...). `disable` is a
    comma-separated list of message ids or symbols (E0401 by default: the run installs none of the
    repository's dependencies); `errors_only` keeps errors and fatal messages only. Findings do
    not fail the step.
  hints:
    DockerRequirement:
      dockerPull: aq-local/tools:1
    ResourceRequirement:
      coresMin: 0.5
      ramMin: 256
  requirements:
    InlineJavascriptRequirement: {}
  inputs:
    source_directory: Directory
    regex: string
    disable: string
    errors_only: boolean
  outputs:
    report:
      type: File
      outputBinding:
        glob: pylint.json
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -eu
    out="$PWD/pylint.json"
    cd "$1"
    regex="$2"
    disable="$3"
    errors_only="$4"
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
      echo '[]' > "$out"
      exit 0
    fi
    if [ -n "$disable" ]; then
      set -- "--disable=$disable" "$@"
    fi
    if [ "$errors_only" = yes ]; then
      set -- --errors-only "$@"
    fi
    pylint --output-format json --exit-zero --persistent n "$@" > "$out"
  - pylint
  - $(inputs.source_directory.path)
  - $(inputs.regex)
  - $(inputs.disable)
  - "$(inputs.errors_only ? 'yes' : 'no')"
