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
