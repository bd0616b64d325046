- class: CommandLineTool
  id: filter_tool
  label: Select files by regular expression
  doc: |-
    Lists the files of `source_directory` whose path (relative, starting with `./`) matches
    the POSIX regular expression `regex`, one per line, sorted.
  hints:
    DockerRequirement:
      dockerPull: alpine:3.21
    ResourceRequirement:
      coresMin: 0.25
      ramMin: 128
  requirements:
    InlineJavascriptRequirement: {}
  inputs:
    source_directory: Directory
    regex: string
  outputs:
    file_list:
      type: string[]
      outputBinding:
        glob: files.txt
        loadContents: true
        outputEval: $(self[0].contents.split('\n').filter(function (line) { return line.length > 0; }))
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -eu
    out="$PWD/files.txt"
    cd "$1"
    find . -type f -regex "$2" | sort > "$out"
  - filter
  - $(inputs.source_directory.path)
  - $(inputs.regex)
