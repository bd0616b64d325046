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
