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
    ap_validator_subworkflow.ap_validator.detail:
      type: string
      label: "Detail"
      doc: "Which findings the report\u0027s issues list (none, errors, hints, all); the digest counts those."
      default: "hints"
    ap_validator_subworkflow.ap_validator.entry_point:
      type: string
      label: "Entry point"
      doc: "Id of the Workflow to validate; main (the reference\u0027s default) also names the document\u0027s only Workflow when no process is called main."
      default: "main"
    ap_validator_subworkflow.filter.regex:
      type: string
      label: "File pattern"
      doc: "Regular expression (JavaScript\u0027s) matched against whole paths such as ./app-package.cwl."
      default: ".*\\.cwl"
  outputs: []
  steps:
    clone_step:
      run: '#clone_subworkflow'
      in:
        clone.repo_url: clone_subworkflow.clone.repo_url
        clone.repo_branch: clone_subworkflow.clone.repo_branch
      out: [repo_directory]
    ap_validator_step:
      run: '#ap_validator_subworkflow'
      in:
        source_directory: clone_step/repo_directory
        server_url: server_url
        pipeline_id: pipeline_id
        run_id: run_id
        filter.regex: ap_validator_subworkflow.filter.regex
        ap_validator.entry_point: ap_validator_subworkflow.ap_validator.entry_point
        ap_validator.detail: ap_validator_subworkflow.ap_validator.detail
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
  id: ap_validator_subworkflow
  label: Application Package validation
  requirements:
    ScatterFeatureRequirement: {}
  inputs:
    source_directory: Directory
    server_url: string
    pipeline_id: string
    run_id: string
    filter.regex: string
    ap_validator.entry_point: string
    ap_validator.detail: string
  outputs:
    reports:
      type: File[]
      outputSource: validate/report
  steps:
    select:
      run: '#filter_tool'
      in:
        source_directory: source_directory
        regex: filter.regex
      out: [file_list]
    validate:
      run: '#ap_validator_tool'
      scatter: file_path
      in:
        source_directory: source_directory
        file_path: select/file_list
        entry_point: ap_validator.entry_point
        detail: ap_validator.detail
      out: [report]
    send:
      run: '#report_tool'
      in:
        reports: validate/report
        instances: select/file_list
        name:
          default: ap_validator
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
  id: ap_validator_tool
  label: Validate a CWL Application Package with eoap-validator
  doc: |-
    Runs `eoap-validator` (CWL validation by cwltool plus the OGC EO Application Package
    rules, offline) on one CWL file of `source_directory`, at `entry_point` (a Workflow id;
    `main`, the reference's default, or empty: the document's only Workflow when none is
    called `main`). The report is the validator's JSON (`findings`,
    `counts`, `exit_code`) with the reference validator's fields beside it: `valid`, and
    `issues` (`type` error, hint or note, `message`, `req`) for each finding that did not
    pass, as far as `detail` asks (none, errors, hints, all). The step never fails on findings.
  hints:
    DockerRequirement:
      dockerPull: aq-local/tools:1
    ResourceRequirement:
      coresMin: 0.5
      ramMin: 256
  requirements:
    InitialWorkDirRequirement:
      listing:
      - entryname: ap_validate.py
        entry: |-
          import json
          import os
          import subprocess
          import sys

          root, rel, entry_point, detail = sys.argv[1:5]
          TYPES = {"error": "error", "warning": "hint", "info": "note"}
          SHOWN = {"none": set(), "errors": {"error"}, "hints": {"error", "hint"},
                   "all": {"error", "hint", "note"}}
          path = os.path.join(root, rel)


          def process_ids():
              # The ids of the document's processes (a $graph, or one process); none if it
              # does not parse (the validator says why).
              import yaml
              try:
                  with open(path, encoding="utf-8") as handle:
                      doc = yaml.safe_load(handle)
              except Exception:
                  return set()
              items = doc.get("$graph", [doc]) if isinstance(doc, dict) else []
              return {str(i.get("id", "")).lstrip("#") for i in items if isinstance(i, dict)}


          # "main", the reference's default, names the document's only Workflow when no process
          # is called so (eoap-validator then picks it); any other id is passed as it is.
          if entry_point == "main" and "main" not in process_ids():
              entry_point = ""
          target = path + ("#" + entry_point if entry_point else "")
          proc = subprocess.run(["eoap-validator", target, "--format", "json"], cwd=root,
                                capture_output=True, text=True)
          try:
              report = json.loads(proc.stdout)
              findings = report["findings"]
          except (ValueError, KeyError, TypeError):
              report = {"findings": [], "operational_failure": True, "exit_code": proc.returncode}
              findings = [{"rule_id": "VALIDATOR", "status": "failed", "severity": "error",
                           "message": "eoap-validator gave no report (exit status %d): %s"
                           % (proc.returncode, proc.stderr.strip()[-2000:])}]
              report["findings"] = findings
          # The shape the reference's validator wrote (and its dashboards read), beside the new one:
          # `valid`, and `issues` (type error, hint or note; the rule as `req`) for every finding that
          # did not pass, as much of them as `detail` asks for.
          report["valid"] = not report.get("operational_failure") and report.get("exit_code") == 0
          report["issues"] = [
              {"type": TYPES.get(f.get("severity"), "error"), "message": f.get("message", ""),
               "req": f.get("rule_id", ""), "location": f.get("location")}
              for f in findings
              if f.get("status") in ("failed", "needs-review", "blocked")
              and TYPES.get(f.get("severity"), "error") in SHOWN.get(detail, SHOWN["hints"])
          ]
          with open("ap_validator.json", "w", encoding="utf-8") as out:
              json.dump(report, out)
  inputs:
    source_directory: Directory
    file_path: string
    entry_point: string
    detail: string
  outputs:
    report:
      type: File
      outputBinding:
        glob: ap_validator.json
  baseCommand: python3
  arguments:
  - ap_validate.py
  - $(inputs.source_directory.path)
  - $(inputs.file_path)
  - $(inputs.entry_point)
  - $(inputs.detail)
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