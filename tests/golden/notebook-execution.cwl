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
      doc: "Regular expression (JavaScript\u0027s) matched against whole paths such as ./docs/intro.ipynb."
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
    send:
      run: '#report_tool'
      in:
        reports: execute/report
        instances: select/file_list
        name:
          default: papermill
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
      out: []
- class: ExpressionTool
  id: filter_tool
  label: Select files by regular expression
  doc: |-
    Lists the files of `source_directory` whose path (relative, starting with `./`, such as
    ./docs/intro.ipynb) matches the regular expression `regex` as a whole, sorted; `.git` is
    skipped. An expression the workflow engine evaluates over the directory's listing: no
    container, so no pod on Kubernetes (a step pod costs about a second there, whatever its
    command). The expression is JavaScript's, which agrees with POSIX extended expressions on
    the usual patterns (`.*\.ipynb`, `notebooks/[^/]*\.ipynb`, `(a|b)`), but has no bracket
    classes such as `[[:alpha:]]`. The resource hint is what the engine books for it while the
    expression runs (milliseconds).
  hints:
    ResourceRequirement:
      coresMin: 0.25
      ramMin: 128
  requirements:
    InlineJavascriptRequirement: {}
    LoadListingRequirement:
      loadListing: deep_listing
  inputs:
    source_directory: Directory
    regex: string
  outputs:
    file_list: string[]
  expression: |-
    ${
      var pattern = new RegExp("^(?:" + inputs.regex + ")$");
      var found = [];
      var walk = function (dir, prefix) {
        (dir.listing || []).forEach(function (entry) {
          var path = prefix + "/" + entry.basename;
          if (entry.class === "Directory") {
            if (path !== "./.git") {
              walk(entry, path);
            }
          } else if (pattern.test(path)) {
            found.push(path);
          }
        });
      };
      walk(inputs.source_directory, ".");
      found.sort();
      return {"file_list": found};
    }
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
    ResourceRequirement:
      coresMin: 0.5
      ramMin: 512
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