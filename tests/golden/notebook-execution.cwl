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
    papermill_subworkflow.filter.regex:
      type: string
      label: "File pattern"
      doc: "POSIX regular expression matched against paths such as ./docs/intro.ipynb."
      default: ".*\\.ipynb"
    papermill_subworkflow.papermill.kernel:
      type: string
      label: "Kernel"
      doc: "The Jupyter kernel to run every notebook with (python3 is ipykernel\u0027s)."
      default: "python3"
    papermill_subworkflow.papermill.parameters:
      type: string
      label: "Execution parameters"
      doc: "Injected as Papermill does: a JSON object, or e.g. alpha=0.6, ratio=0.1 (values read as JSON, else text); {} for none."
      default: "{}"
    papermill_subworkflow.papermill.time_limit:
      type: int
      label: "Time limit per notebook (seconds)"
      doc: "A notebook still running after this long is stopped and reported as timed out."
      default: 600
  outputs: []
  steps:
    clone_step:
      run: '#clone_subworkflow'
      in:
        clone.repo_url: clone_subworkflow.clone.repo_url
        clone.repo_branch: clone_subworkflow.clone.repo_branch
      out: [repo_directory]
    papermill_step:
      run: '#papermill_subworkflow'
      in:
        source_directory: clone_step/repo_directory
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
        filter.regex: papermill_subworkflow.filter.regex
        papermill.time_limit: papermill_subworkflow.papermill.time_limit
        papermill.kernel: papermill_subworkflow.papermill.kernel
        papermill.parameters: papermill_subworkflow.papermill.parameters
      out: [reports]
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
  id: papermill_subworkflow
  label: Notebook execution
  requirements:
    ScatterFeatureRequirement: {}
  inputs:
    source_directory: Directory
    server_url: string
    pipeline_id: string
    run_id: string
    filter.regex: string
    papermill.time_limit: int
    papermill.kernel: string
    papermill.parameters: string
  outputs:
    reports:
      type: File[]
      outputSource: execute/report
  steps:
    select:
      run: '#filter_tool'
      in:
        source_directory: source_directory
        regex: filter.regex
      out: [file_list]
    execute:
      run: '#papermill_tool'
      scatter: notebook_path
      in:
        source_directory: source_directory
        notebook_path: select/file_list
        time_limit: papermill.time_limit
        kernel: papermill.kernel
        parameters: papermill.parameters
      out: [report]
    digest:
      run: '#digest_tool'
      scatter: [report, instance]
      scatterMethod: dotproduct
      in:
        report: execute/report
        instance: select/file_list
        name:
          default: papermill
      out: [digest]
    save:
      run: '#save_tool'
      scatter: [report, digest, instance]
      scatterMethod: dotproduct
      in:
        report: execute/report
        digest: digest/digest
        instance: select/file_list
        name:
          default: papermill
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
  id: papermill_tool
  label: Execute a Jupyter notebook with Papermill
  doc: |-
    Executes one notebook of `source_directory` with Papermill on a Python kernel (ipykernel),
    in a copy of the repository (without `.git`), within `time_limit` seconds for the whole
    notebook, with `parameters` (a JSON object, or "name=value, ..." with values read as JSON,
    else text; "{}" for none) injected as Papermill does. The report is the executed notebook, as Papermill writes it (cell
    outputs, `metadata.papermill`), with `metadata.execution_summary`: the status (succeeded,
    failed, timed_out, error), and for a failure the cell (its index in the notebook as
    written), its source and its error (name, value, traceback). A report over 768 KiB leaves
    out images, then every output but errors (`outputs_trimmed`). Runs user code by design: on
    the local runner only inside its sandbox. A notebook that fails is a finding: the step
    itself never fails.
  hints:
    DockerRequirement:
      dockerPull: aq-local/tools:1
  requirements:
    InitialWorkDirRequirement:
      listing:
      - entryname: run_notebook.py
        entry: |-
          import json
          import os
          import re
          import shutil
          import sys
          import time

          root, rel, limit, kernel, params_text = sys.argv[1:6]
          limit = int(limit)
          started = time.monotonic()
          scratch = os.path.join(os.environ.get("TMPDIR") or os.getcwd(), "papermill")
          os.makedirs(scratch, exist_ok=True)
          # Jupyter, IPython and the libraries a notebook imports write their state under the home
          # and XDG directories: all of it goes to this step's own scratch space.
          for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                           ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
                           ("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "xdg-config"),
                           ("XDG_DATA_HOME", "xdg-data")):
              os.environ[var] = os.path.join(scratch, sub)
          os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
          os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
          report_path = os.path.abspath("papermill.ipynb")
          summary = {"notebook": rel, "status": "succeeded", "time_limit_seconds": limit,
                     "kernel": kernel, "parameters": {}}
          ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


          def parse_parameters(text):
              # A JSON object, or "name=value, ..." as the reference's form had it; "{}" or
              # nothing: none.
              if text.strip().startswith("{"):
                  out = json.loads(text)
                  if not isinstance(out, dict) or not all(k.isidentifier() for k in out):
                      raise ValueError("expected a JSON object of parameter names")
                  return out
              out = {}
              for item in filter(None, (p.strip() for p in text.split(","))):
                  name, sep, value = item.partition("=")
                  name = name.strip()
                  if not sep or not name.isidentifier():
                      raise ValueError("expected name=value, got %r" % item)
                  try:
                      out[name] = json.loads(value.strip())
                  except ValueError:
                      out[name] = value.strip()
              return out


          def original_index(cells, index):
              # Papermill adds cells of its own (injected parameters, error markers): count the others.
              own = {"injected-parameters", "papermill-error-cell-tag"}
              return sum(1 for c in cells[:index] if not own & set(c.get("metadata", {}).get("tags", [])))


          def cell_failure(nb, index):
              cell = nb["cells"][index]
              src = cell.get("source", "")
              failure = {"cell": original_index(nb["cells"], index),
                         "execution_count": cell.get("execution_count"),
                         "source": "".join(src) if isinstance(src, list) else src}
              for output in cell.get("outputs", []):
                  if output.get("output_type") == "error":
                      failure["ename"] = output.get("ename")
                      failure["evalue"] = output.get("evalue")
                      failure["traceback"] = [ANSI.sub("", line) for line in output.get("traceback", [])]
                      break
              return failure


          def load(path):
              with open(path, encoding="utf-8") as handle:
                  return json.load(handle)


          nb = None
          try:
              summary["parameters"] = parse_parameters(params_text)
              work = os.path.join(scratch, "repo")
              # The notebook runs in a copy of the repository: what it writes stays out of the clone
              # the other steps read, and out of the other notebooks' way.
              shutil.copytree(root, work, symlinks=True, ignore=shutil.ignore_patterns(".git"))
              source = os.path.join(work, rel)
              import papermill
              from nbclient.exceptions import CellTimeoutError, DeadKernelError

              deadline = started + limit

              def remaining(_cell):
                  return max(1, int(deadline - time.monotonic()))

              try:
                  papermill.execute_notebook(
                      source, report_path, parameters=summary["parameters"], kernel_name=kernel,
                      cwd=os.path.dirname(source), progress_bar=False, start_timeout=min(limit, 60),
                      timeout_func=remaining)
              except papermill.PapermillExecutionError:
                  summary["status"] = "failed"
              except (CellTimeoutError, TimeoutError):
                  summary["status"] = "timed_out"
              except DeadKernelError as err:
                  summary["status"] = "failed"
                  summary["message"] = "the kernel died: " + str(err)
              if os.path.exists(report_path):
                  nb = load(report_path)
              if nb is not None and summary["status"] != "succeeded":
                  states = [c.get("metadata", {}).get("papermill", {}) for c in nb["cells"]]
                  if summary["status"] == "failed":
                      hit = [i for i, c in enumerate(nb["cells"]) if any(
                          o.get("output_type") == "error" for o in c.get("outputs", []))]
                  else:
                      hit = [i for i, s in enumerate(states)
                             if s.get("start_time") and nb["cells"][i].get("cell_type") == "code"]
                  if hit:
                      summary["failure"] = cell_failure(nb, hit[-1])
                      if summary["status"] == "timed_out":
                          summary["failure"]["ename"] = "TimeoutError"
                          summary["failure"]["evalue"] = (
                              "the notebook's time limit (%d s) ran out in this cell" % limit)
          except Exception as err:  # a notebook that cannot be run at all is a finding, not a crash
              summary["status"] = "error"
              summary["message"] = "%s: %s" % (type(err).__name__, err)
          if nb is None:
              try:
                  nb = load(os.path.join(root, rel))
              except Exception:
                  nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
          summary["duration_seconds"] = round(time.monotonic() - started, 3)
          nb.setdefault("metadata", {})["execution_summary"] = summary
          # The service takes request bodies up to 1 MiB (MAX_BODY_BYTES): a notebook whose
          # outputs are larger (plots, long prints) is reported without its images, then
          # without its outputs but errors, rather than not at all.
          LIMIT = 768 * 1024
          if len(json.dumps(nb)) > LIMIT:
              summary["outputs_trimmed"] = "images"
              for cell in nb.get("cells", []):
                  for output in cell.get("outputs", []):
                      data = output.get("data")
                      if isinstance(data, dict):
                          for mime in [m for m in data if not m.startswith("text/")]:
                              size = len(json.dumps(data.pop(mime)))
                              data.setdefault("text/plain", "[%s output of %d bytes left out]"
                                              % (mime, size))
          if len(json.dumps(nb)) > LIMIT:
              summary["outputs_trimmed"] = "all but errors"
              for cell in nb.get("cells", []):
                  if "outputs" in cell:
                      cell["outputs"] = [o for o in cell["outputs"]
                                         if o.get("output_type") == "error"]
          with open(report_path, "w", encoding="utf-8") as handle:
              json.dump(nb, handle)
          print(json.dumps(summary))
  inputs:
    source_directory: Directory
    notebook_path: string
    time_limit: int
    kernel: string
    parameters: string
  outputs:
    report:
      type: File
      outputBinding:
        glob: papermill.ipynb
  baseCommand: python3
  arguments:
  - run_notebook.py
  - $(inputs.source_directory.path)
  - $(inputs.notebook_path)
  - $(inputs.time_limit)
  - $(inputs.kernel)
  - $(inputs.parameters)
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