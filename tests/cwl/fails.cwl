cwlVersion: v1.2
class: CommandLineTool
doc: Exits non-zero; the runner must report a failure.
baseCommand: [sh, -c, "echo broken >&2; exit 4"]
inputs: []
outputs: []
