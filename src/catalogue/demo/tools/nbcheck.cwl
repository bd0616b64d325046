- class: CommandLineTool
  id: nbcheck_tool
  label: Check Jupyter notebooks
  doc: |-
    Structural checks on `.ipynb` files with the Python standard library only: valid JSON,
    nbformat 4, a kernel spec, a title cell, no stored error outputs, cells executed in order,
    no empty or over-long code cells. Writes one JSON report; always exits 0 (findings are data).
  hints:
    DockerRequirement:
      dockerPull: python:3.13-alpine
    ResourceRequirement:
      coresMin: 0.25
      ramMin: 128
  requirements:
    InlineJavascriptRequirement: {}
    InitialWorkDirRequirement:
      listing:
      - entryname: nbcheck.py
        entry: |-
          import json
          import os
          import sys

          root = sys.argv[1]
          require_title = sys.argv[2] == "yes"
          allow_error_outputs = sys.argv[3] == "yes"
          max_cell_lines = int(sys.argv[4])
          files = sys.argv[5:]

          summary = {"files": len(files), "errors": 0, "warnings": 0}
          results = []

          def text(cell):
              src = cell.get("source", "")
              return "".join(src) if isinstance(src, list) else str(src)

          for rel in files:
              issues = []

              def add(severity, message, cell=None):
                  issues.append({"severity": severity, "cell": cell, "message": message})
                  summary[severity + "s"] += 1

              try:
                  with open(os.path.join(root, rel), encoding="utf-8") as handle:
                      nb = json.load(handle)
              except (OSError, ValueError) as err:
                  add("error", "not a readable JSON notebook: " + str(err))
                  results.append({"path": rel, "issues": issues})
                  continue
              if not isinstance(nb, dict) or nb.get("nbformat", 0) < 4:
                  add("error", "nbformat 4 or later is required")
                  results.append({"path": rel, "issues": issues})
                  continue
              meta = nb.get("metadata", {})
              if not meta.get("kernelspec"):
                  add("error", "metadata.kernelspec is missing: readers cannot tell how to run it")
              if not meta.get("language_info"):
                  add("warning", "metadata.language_info is missing")
              cells = nb.get("cells", [])
              if not cells:
                  add("warning", "the notebook has no cells")
              elif require_title:
                  first = cells[0]
                  if first.get("cell_type") != "markdown" or not text(first).lstrip().startswith("# "):
                      add("warning", "the first cell should be a Markdown title ('# ...')", 0)
              last_count = 0
              for index, cell in enumerate(cells):
                  if cell.get("cell_type") != "code":
                      continue
                  body = text(cell)
                  if not body.strip():
                      add("warning", "empty code cell", index)
                  lines = len(body.splitlines())
                  if lines > max_cell_lines:
                      add("warning", "code cell has %d lines (more than %d)" % (lines, max_cell_lines), index)
                  count = cell.get("execution_count")
                  if isinstance(count, int):
                      if count <= last_count:
                          add("warning", "cells were executed out of order", index)
                      last_count = count
                  for output in cell.get("outputs", []):
                      if output.get("output_type") == "error" and not allow_error_outputs:
                          add("error", "stored error output: " + str(output.get("ename", "error")), index)
              results.append({"path": rel, "issues": issues})

          print(json.dumps({"tool": "nbcheck", "summary": summary, "files": results}, indent=2))
  inputs:
    source_directory: Directory
    regex: string
    require_title: boolean
    allow_error_outputs: boolean
    max_cell_lines: int
  outputs:
    report:
      type: File
      outputBinding:
        glob: nbcheck.json
  stdout: nbcheck.json
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -eu
    script="$PWD/nbcheck.py"
    cd "$1"
    regex="$2"
    title="$3"
    errors="$4"
    longest="$5"
    # The notebooks to check: those whose path (./dir/name) matches the POSIX regular
    # expression, sorted; selection and checks are one step (one pod).
    list=`find . -type f -regex "$regex" | sort`
    set --
    while IFS= read -r file; do
      if [ -n "$file" ]; then set -- "$@" "$file"; fi
    done <<EOF
    $list
    EOF
    exec python3 "$script" . "$title" "$errors" "$longest" "$@"
  - nbcheck
  - $(inputs.source_directory.path)
  - $(inputs.regex)
  - "$(inputs.require_title ? 'yes' : 'no')"
  - "$(inputs.allow_error_outputs ? 'yes' : 'no')"
  - $(inputs.max_cell_lines)
