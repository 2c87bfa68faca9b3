cwlVersion: v1.2
class: CommandLineTool
doc: A tool that writes to stderr and exits 3.
baseCommand: [sh, -c, 'echo broken input >&2; exit 3']
inputs: []
outputs: []
