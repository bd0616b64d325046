cwlVersion: v1.2
$graph:
- class: Workflow
  id: main
  requirements:
    SubworkflowFeatureRequirement: {}
  inputs:
    server_url: string
    pipeline_id: string
    run_id: string
    clone_subworkflow.clone.repo_branch:
      type: string
      label: "Branch"
      doc: "Branch or tag to check out; empty for the remote\u0027s default branch."
      default: ""
    clone_subworkflow.clone.repo_url:
      type: string
      label: "Repository URL"
      doc: "HTTPS URL of the git repository to analyse."
      default: ""
    notebook_validation_subworkflow.filter.regex:
      type: string
      label: "File pattern"
      doc: "POSIX regular expression matched against paths such as ./docs/intro.ipynb."
      default: ".*\\.ipynb"
    notebook_validation_subworkflow.nbcheck.allow_error_outputs:
      type: boolean
      label: "Allow stored error outputs"
      default: false
    notebook_validation_subworkflow.nbcheck.max_cell_lines:
      type: int
      label: "Longest code cell (lines)"
      default: 60
    notebook_validation_subworkflow.nbcheck.require_title:
      type: boolean
      label: "Require a title cell"
      doc: "Warn when the first cell is not a Markdown heading."
      default: true
    ruff_ipynb_subworkflow.filter.regex:
      type: string
      label: "File pattern"
      doc: "POSIX regular expression matched against paths such as ./docs/intro.ipynb."
      default: ".*\\.ipynb"
    ruff_ipynb_subworkflow.ruff.select:
      type: string
      label: "Rules"
      doc: "Comma-separated Ruff rule codes or prefixes (e.g. E,F,B); empty for Ruff\u0027s defaults."
      default: "E4,E7,E9,F"
  outputs: []
  steps:
    clone_step:
      run: '#clone_subworkflow'
      in:
        clone.repo_url: clone_subworkflow.clone.repo_url
        clone.repo_branch: clone_subworkflow.clone.repo_branch
      out: [repo_directory]
    notebook_validation_step:
      run: '#notebook_validation_subworkflow'
      in:
        source_directory: clone_step/repo_directory
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
        filter.regex: notebook_validation_subworkflow.filter.regex
        nbcheck.require_title: notebook_validation_subworkflow.nbcheck.require_title
        nbcheck.allow_error_outputs: notebook_validation_subworkflow.nbcheck.allow_error_outputs
        nbcheck.max_cell_lines: notebook_validation_subworkflow.nbcheck.max_cell_lines
      out: [report]
    ruff_ipynb_step:
      run: '#ruff_ipynb_subworkflow'
      in:
        source_directory: clone_step/repo_directory
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
        filter.regex: ruff_ipynb_subworkflow.filter.regex
        ruff.select: ruff_ipynb_subworkflow.ruff.select
      out: [report]
- class: Workflow
  id: clone_subworkflow
  label: Clone a repository
  inputs:
    clone.repo_url: string
    clone.repo_branch:
      type: string
      default: ""
  outputs:
    repo_directory:
      type: Directory
      outputSource: clone/repo_directory
  steps:
    clone:
      run: '#clone_tool'
      in:
        repo_url: clone.repo_url
        repo_branch: clone.repo_branch
      out: [repo_directory]
- class: CommandLineTool
  id: clone_tool
  label: Clone a git repository
  doc: |-
    Shallow-clones `repo_url` (optionally at `repo_branch`) into the directory `repo`.
    The URL and branch reach git as separate arguments, never through a shell string.
    A server that stops sending (under 1000 bytes/s for 30 s) or an ssh host that does not
    answer within 30 s fails the clone; the runner's GIT_HTTP_LOW_SPEED_* and GIT_SSH_COMMAND
    (the service's REPO_* settings) take precedence over these defaults.
  hints:
    DockerRequirement:
      dockerPull: alpine/git:v2.47.2
  requirements:
    NetworkAccess:
      networkAccess: true
  inputs:
    repo_url: string
    repo_branch:
      type: string
      default: ""
  outputs:
    repo_directory:
      type: Directory
      outputBinding:
        glob: repo
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -eu
    clone() {
      git -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=30 \
        -c core.sshCommand='ssh -o ConnectTimeout=30 -o BatchMode=yes' \
        clone --depth 1 "$@"
    }
    if [ -n "$2" ]; then
      clone --branch "$2" -- "$1" repo
    else
      clone -- "$1" repo
    fi
  - clone
  - $(inputs.repo_url)
  - $(inputs.repo_branch)
- class: Workflow
  id: notebook_validation_subworkflow
  label: Notebook validation
  inputs:
    source_directory: Directory
    server_url: string
    pipeline_id: string
    run_id: string
    filter.regex: string
    nbcheck.require_title: boolean
    nbcheck.allow_error_outputs: boolean
    nbcheck.max_cell_lines: int
  outputs:
    report:
      type: File
      outputSource: check/report
  steps:
    select:
      run: '#filter_tool'
      in:
        source_directory: source_directory
        regex: filter.regex
      out: [file_list]
    check:
      run: '#nbcheck_tool'
      in:
        source_directory: source_directory
        file_list: select/file_list
        require_title: nbcheck.require_title
        allow_error_outputs: nbcheck.allow_error_outputs
        max_cell_lines: nbcheck.max_cell_lines
      out: [report]
    digest:
      run: '#digest_tool'
      in:
        report: check/report
        name:
          default: nbcheck
      out: [digest]
    save:
      run: '#save_tool'
      in:
        report: check/report
        digest: digest/digest
        name:
          default: nbcheck
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
      out: []
- class: CommandLineTool
  id: filter_tool
  label: Select files by regular expression
  doc: |-
    Lists the files of `source_directory` whose path (relative, starting with `./`) matches
    the POSIX regular expression `regex`, one per line, sorted.
  hints:
    DockerRequirement:
      dockerPull: alpine:3.21
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
    file_list:
      type: string[]
      inputBinding:
        position: 1
    require_title: boolean
    allow_error_outputs: boolean
    max_cell_lines: int
  outputs:
    report:
      type: File
      outputBinding:
        glob: nbcheck.json
  stdout: nbcheck.json
  baseCommand: python3
  arguments:
  - nbcheck.py
  - $(inputs.source_directory.path)
  - "$(inputs.require_title ? 'yes' : 'no')"
  - "$(inputs.allow_error_outputs ? 'yes' : 'no')"
  - $(inputs.max_cell_lines)
- class: CommandLineTool
  id: digest_tool
  label: Count a report's findings by severity
  doc: |-
    Reads one tool report and writes `digest.json`: the six counters (info, convention, warning,
    error, security, critical) the run's verdict is computed from, with the Python standard
    library only. The mapping of each tool's findings is in docs/verdicts.md. A report
    that cannot be read gives zero counters and a `status` saying why; the step never fails.
  hints:
    DockerRequirement:
      dockerPull: python:3.13-alpine
  requirements:
    InlineJavascriptRequirement: {}
    InitialWorkDirRequirement:
      listing:
      - entryname: make_digest.py
        entry: |-
          import datetime
          import json
          import sys

          name, instance, version, report_path = sys.argv[1:5]
          counters = dict.fromkeys(
              ["info", "convention", "warning", "error", "security", "critical"], 0)
          status = "ok"

          # Longest prefix wins (ERA before E, FIX before F, C90 before C4), as the reference.
          RUFF = [("ERA", "info"), ("T20", "info"), ("FIX", "info"), ("C90", "convention"),
                  ("C4", "convention"), ("UP", "convention"), ("S", "security"),
                  ("F", "error"), ("E", "error"), ("W", "warning"), ("N", "convention"),
                  ("D", "convention"), ("I", "convention"), ("B", "critical")]
          PYLINT = {"fatal": "critical", "error": "error", "warning": "warning",
                    "convention": "convention", "refactor": "info"}
          NBCHECK = {"error": "error", "warning": "warning", "info": "info"}
          AP_VALIDATOR = {"error": "error", "hint": "convention", "note": "info"}

          def ruff_category(code):
              for prefix, category in sorted(RUFF, key=lambda p: -len(p[0])):
                  if code.startswith(prefix):
                      return category
              return "warning"

          try:
              with open(report_path, encoding="utf-8") as handle:
                  report = json.load(handle)
              if name == "ruff":
                  for item in report:
                      code = item.get("code") or ""
                      if code:
                          counters[ruff_category(code)] += 1
              elif name == "nbcheck":
                  for notebook in report.get("files", []):
                      for issue in notebook.get("issues", []):
                          category = NBCHECK.get(issue.get("severity"))
                          if category:
                              counters[category] += 1
              elif name == "pylint":
                  for message in report:
                      category = PYLINT.get(str(message.get("type", "")).lower())
                      if category:
                          counters[category] += 1
              elif name == "bandit":
                  totals = report.get("metrics", {}).get("_totals", {})
                  counters["info"] = int(totals.get("SEVERITY.LOW", 0))
                  counters["warning"] = int(totals.get("SEVERITY.MEDIUM", 0))
                  counters["error"] = int(totals.get("SEVERITY.HIGH", 0))
                  counters["undefined"] = int(totals.get("SEVERITY.UNDEFINED", 0))
              elif name == "flake8":
                  # The reference counted nothing here; flake8's codes (pycodestyle E/W,
                  # pyflakes F, mccabe C90) are the ones Ruff took over, so Ruff's table.
                  for violations in report.values():
                      for item in violations:
                          code = item.get("code") or ""
                          if code:
                              counters[ruff_category(code)] += 1
              elif name == "papermill":
                  # A notebook that did not run to its end (an error in a cell, its time
                  # limit, a kernel that would not start) is one error.
                  summary = report.get("metadata", {}).get("execution_summary", {})
                  if summary.get("status") != "succeeded":
                      counters["error"] += 1
              elif name == "ap_validator":
                  for issue in report.get("issues", []):
                      category = AP_VALIDATOR.get(issue.get("type"))
                      if category:
                          counters[category] += 1
              else:
                  status = "Unsupported tool: " + name
          except Exception as err:  # any unreadable report: zero counters, and say why
              counters = dict.fromkeys(counters, 0)
              status = "Failed to generate the digest: " + str(err)

          with open("digest.json", "w", encoding="utf-8") as out:
              json.dump({
                  "tool": {"name": name, "instance": instance, "version": version},
                  "issues": counters,
                  "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "status": status,
              }, out)
  inputs:
    report: File
    name: string
    instance:
      type: string
      default: ""
    version:
      type: string
      default: ""
  outputs:
    digest:
      type: File
      outputBinding:
        glob: digest.json
  baseCommand: python3
  arguments:
  - make_digest.py
  - $(inputs.name)
  - $(inputs.instance)
  - $(inputs.version)
  - $(inputs.report.path)
- class: CommandLineTool
  id: save_tool
  label: Send a job report to the Application Quality API
  doc: |-
    POSTs the JSON `report` to the run's job-report endpoint, with its `digest` when one is given
    (then as `multipart/form-data` with the parts `report` and `digest`, as the reference's
    upload step; an empty digest file counts as `{}`). The per-run callback token comes
    from the AQ_CALLBACK_TOKEN environment variable of the step pod; it is never a CWL input, so
    it appears neither in the parameters nor in the stored CWL. `name` and `instance` are
    URL-encoded, and the URL is passed to curl as one argument (no shell quoting involved).
  hints:
    DockerRequirement:
      dockerPull: curlimages/curl:8.11.1
  requirements:
    NetworkAccess:
      networkAccess: true
    InlineJavascriptRequirement: {}
  inputs:
    report: File
    digest: File?
    name: string
    instance:
      type: string
      default: ""
    server_url: string
    pipeline_id: string
    run_id: string
  outputs: []
  baseCommand: sh
  arguments:
  - -c
  - |-
    set -e
    if [ -z "$AQ_CALLBACK_TOKEN" ]; then
      echo "AQ_CALLBACK_TOKEN is not set: cannot authenticate the job report" >&2
      exit 1
    fi
    if [ -n "$3" ]; then
      curl --silent --show-error --fail-with-body --retry 5 --retry-connrefused \
        -X POST -H "Authorization: Bearer $AQ_CALLBACK_TOKEN" \
        -F "report=@$2;type=application/json" -F "digest=@$3;type=application/json" "$1"
    else
      curl --silent --show-error --fail-with-body --retry 5 --retry-connrefused \
        -X POST -H "Content-Type: application/json" \
        -H "Authorization: Bearer $AQ_CALLBACK_TOKEN" \
        --data-binary "@$2" "$1"
    fi
  - save
  - $(inputs.server_url + '/api/pipelines/' + encodeURIComponent(inputs.pipeline_id) + '/runs/' + encodeURIComponent(inputs.run_id) + '/jobreports/?name=' + encodeURIComponent(inputs.name) + '&instance=' + encodeURIComponent(inputs.instance))
  - $(inputs.report.path)
  - "$(inputs.digest ? inputs.digest.path : '')"
- class: Workflow
  id: ruff_ipynb_subworkflow
  label: Ruff on notebooks
  inputs:
    source_directory: Directory
    server_url: string
    pipeline_id: string
    run_id: string
    filter.regex: string
    ruff.select: string
  outputs:
    report:
      type: File
      outputSource: analyse/report
  steps:
    select:
      run: '#filter_tool'
      in:
        source_directory: source_directory
        regex: filter.regex
      out: [file_list]
    analyse:
      run: '#ruff_tool'
      in:
        source_directory: source_directory
        file_list: select/file_list
        select: ruff.select
      out: [report]
    digest:
      run: '#digest_tool'
      in:
        report: analyse/report
        name:
          default: ruff
      out: [digest]
    save:
      run: '#save_tool'
      in:
        report: analyse/report
        digest: digest/digest
        name:
          default: ruff
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
      out: []
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