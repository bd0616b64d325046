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
