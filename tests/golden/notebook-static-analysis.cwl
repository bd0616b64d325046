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
    ResourceRequirement:
      coresMin: 0.25
      ramMin: 128
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
  requirements:
    MultipleInputFeatureRequirement: {}
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
    check:
      run: '#nbcheck_tool'
      in:
        source_directory: source_directory
        regex: filter.regex
        require_title: nbcheck.require_title
        allow_error_outputs: nbcheck.allow_error_outputs
        max_cell_lines: nbcheck.max_cell_lines
      out: [report]
    send:
      run: '#report_tool'
      in:
        reports:
          source: [check/report]
          linkMerge: merge_flattened
        name:
          default: nbcheck
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
      out: []
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
- class: CommandLineTool
  id: report_tool
  label: Digest job reports and send them to the Application Quality API
  doc: |-
    For each of `reports` (with the matching entry of `instances`, or none): counts the
    report's findings into the six counters (info, convention, warning, error, security,
    critical) the run's verdict is computed from, as docs/verdicts.md maps each tool's
    findings, and POSTs the report with that digest to the run's job-report endpoint as
    `multipart/form-data` (parts `report` and `digest`, as the reference's upload step). A
    report that cannot be read gets zero counters and a digest `status` saying why. One step
    for both, with the Python standard library only: digest and upload were two step pods.
    The per-run callback token comes from the AQ_CALLBACK_TOKEN environment variable of the
    step pod; it is never a CWL input, so it appears neither in the parameters nor in the
    stored CWL. Names and instances are URL-encoded by the script, never by a shell.
  hints:
    DockerRequirement:
      dockerPull: python:3.13-alpine
    ResourceRequirement:
      coresMin: 0.25
      ramMin: 128
  requirements:
    NetworkAccess:
      networkAccess: true
    InitialWorkDirRequirement:
      listing:
      - entryname: report.py
        entry: |-
          """Digests each report and posts it with its digest to the run's job-report endpoint."""
          import argparse
          import datetime
          import json
          import os
          import sys
          import time
          import urllib.error
          import urllib.parse
          import urllib.request
          import uuid

          CATEGORIES = ["info", "convention", "warning", "error", "security", "critical"]
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


          def count(name, report, counters):
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
                  # The reference counted nothing here; flake8's codes (pycodestyle E/W, pyflakes F,
                  # mccabe C90) are the ones Ruff took over, so Ruff's table.
                  for violations in report.values():
                      for item in violations:
                          code = item.get("code") or ""
                          if code:
                              counters[ruff_category(code)] += 1
              elif name == "papermill":
                  # A notebook that did not run to its end (an error in a cell, its time limit, a
                  # kernel that would not start) is one error.
                  summary = report.get("metadata", {}).get("execution_summary", {})
                  if summary.get("status") != "succeeded":
                      counters["error"] += 1
              elif name == "ap_validator":
                  for issue in report.get("issues", []):
                      category = AP_VALIDATOR.get(issue.get("type"))
                      if category:
                          counters[category] += 1
              else:
                  return "Unsupported tool: " + name
              return "ok"


          def digest(name, instance, version, data):
              counters = dict.fromkeys(CATEGORIES, 0)
              try:
                  status = count(name, json.loads(data), counters)
              except Exception as err:  # any unreadable report: zero counters, and say why
                  counters = dict.fromkeys(CATEGORIES, 0)
                  status = "Failed to generate the digest: " + str(err)
              return {
                  "tool": {"name": name, "instance": instance, "version": version},
                  "issues": counters,
                  "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "status": status,
              }


          def multipart(parts):
              boundary = uuid.uuid4().hex
              body = b""
              for field, content in parts:
                  body += (
                      "--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s.json\"\r\n"
                      "Content-Type: application/json\r\n\r\n" % (boundary, field, field)
                  ).encode() + content + b"\r\n"
              body += ("--%s--\r\n" % boundary).encode()
              return body, "multipart/form-data; boundary=" + boundary


          def post(url, token, body, content_type):
              """POSTs once the service answers; retries refused connections and 429/502/503/504
              (a service starting from zero, a rate limit), about 30 s in all, as `curl --retry 5`."""
              request = urllib.request.Request(url, data=body, method="POST", headers={
                  "Authorization": "Bearer " + token, "Content-Type": content_type})
              for attempt in range(6):
                  last = attempt == 5
                  try:
                      with urllib.request.urlopen(request, timeout=120) as response:
                          response.read()
                          return
                  except urllib.error.HTTPError as err:
                      detail = err.read()[:2000].decode("utf-8", "replace")
                      if err.code not in (429, 502, 503, 504) or last:
                          sys.exit("the job report was refused: HTTP %d %s" % (err.code, detail))
                      delay = err.headers.get("Retry-After", "")
                      wait = min(int(delay), 30) if delay.isdigit() else 2 ** attempt
                  except (urllib.error.URLError, OSError) as err:
                      if last:
                          sys.exit("the job report could not be sent: %s" % err)
                      wait = 2 ** attempt
                  time.sleep(wait)


          def main():
              parser = argparse.ArgumentParser()
              parser.add_argument("--name", required=True)
              parser.add_argument("--version", default="")
              parser.add_argument("--server-url", required=True)
              parser.add_argument("--pipeline-id", required=True)
              parser.add_argument("--run-id", required=True)
              parser.add_argument("--report", action="append", default=[])
              parser.add_argument("--instance", action="append", default=[])
              args = parser.parse_args()
              token = os.environ.get("AQ_CALLBACK_TOKEN", "")
              if not token:
                  sys.exit("AQ_CALLBACK_TOKEN is not set: cannot authenticate the job reports")
              instances = args.instance or [""] * len(args.report)
              if len(instances) != len(args.report):
                  sys.exit("%d reports but %d instances" % (len(args.report), len(instances)))
              base = "%s/api/pipelines/%s/runs/%s/jobreports/" % (
                  args.server_url.rstrip("/"), urllib.parse.quote(args.pipeline_id, safe=""),
                  urllib.parse.quote(args.run_id, safe=""))
              for path, instance in zip(args.report, instances):
                  with open(path, "rb") as handle:
                      data = handle.read()
                  summary = digest(args.name, instance, args.version, data)
                  query = urllib.parse.urlencode({"name": args.name, "instance": instance})
                  body, content_type = multipart([("report", data), ("digest", json.dumps(summary).encode())])
                  post(base + "?" + query, token, body, content_type)
                  print("%s %s: %s" % (args.name, instance or "-", json.dumps(summary["issues"])))


          main()
  inputs:
    reports:
      type:
        type: array
        items: File
        inputBinding:
          prefix: --report
      inputBinding:
        position: 2
    instances:
      type:
      - 'null'
      - type: array
        items: string
        inputBinding:
          prefix: --instance
      inputBinding:
        position: 3
    name:
      type: string
      inputBinding:
        prefix: --name
        position: 1
    version:
      type: string
      default: ""
      inputBinding:
        prefix: --version
        position: 1
    server_url:
      type: string
      inputBinding:
        prefix: --server-url
        position: 1
    pipeline_id:
      type: string
      inputBinding:
        prefix: --pipeline-id
        position: 1
    run_id:
      type: string
      inputBinding:
        prefix: --run-id
        position: 1
  outputs: []
  baseCommand: [python3, report.py]
- class: Workflow
  id: ruff_ipynb_subworkflow
  label: Ruff on notebooks
  requirements:
    MultipleInputFeatureRequirement: {}
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
    analyse:
      run: '#ruff_tool'
      in:
        source_directory: source_directory
        regex: filter.regex
        select: ruff.select
      out: [report]
    send:
      run: '#report_tool'
      in:
        reports:
          source: [analyse/report]
          linkMerge: merge_flattened
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