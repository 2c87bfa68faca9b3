cwlVersion: v1.2
class: CommandLineTool
baseCommand: sort
requirements:
  - class: ResourceRequirement
    coresMin: 4
inputs:
  unsorted:
    type: File
    inputBinding: {position: 1}
stdout: sorted.txt
outputs:
  sorted: stdout
