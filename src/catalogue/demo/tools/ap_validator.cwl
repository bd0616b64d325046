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
