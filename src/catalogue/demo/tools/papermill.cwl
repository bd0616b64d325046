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
