- class: CommandLineTool
  id: pylint_tool
  label: Analyse Python files with Pylint
  doc: |-
    Runs `pylint` on the selected files and writes its JSON messages (`type`, `symbol`,
    `message-id`, `path`, `line`, ...). `disable` is a comma-separated list of message ids or
    symbols (E0401 by default: the run installs none of the repository's dependencies);
    `errors_only` keeps errors and fatal messages only. Findings do not fail the step.
  hints:
    DockerRequirement:
      dockerPull: aq-local/tools:1
  requirements:
    InlineJavascriptRequirement: {}
  inputs:
    source_directory: Directory
    file_list:
      type: string[]
      inputBinding:
        position: 1
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
    disable="$2"
    errors_only="$3"
    shift 3
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
  - $(inputs.disable)
  - "$(inputs.errors_only ? 'yes' : 'no')"
