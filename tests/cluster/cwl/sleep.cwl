cwlVersion: v1.2
class: CommandLineTool
doc: Sleep for a while (for abort tests).
baseCommand: sleep
inputs:
  seconds: {type: int, inputBinding: {position: 1}}
outputs: []
