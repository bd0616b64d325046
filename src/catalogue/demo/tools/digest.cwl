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
