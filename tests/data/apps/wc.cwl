cwlVersion: v1.2
class: CommandLineTool
label: Line counter
doc: Counts lines of a text file.
baseCommand: [wc, -l]
requirements:
  - class: ResourceRequirement
    coresMin: 2
    ramMin: 2048
hints:
  - class: DockerRequirement
    dockerPull: debian:bookworm-slim
inputs:
  reads:
    type: File
    label: Input file
    secondaryFiles:
      - .bai
      - pattern: .crai
        required: false
    inputBinding: {position: 1}
  lines:
    type: int?
  mode:
    type:
      type: enum
      symbols: [fast, slow]
    default: fast
stdout: count.txt
outputs:
  count:
    type: stdout
sbg:batchInput: "#reads"
sbg:batchBy:
  type: CRITERIA
  criteria: [metadata.sample_id]
