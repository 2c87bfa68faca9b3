cwlVersion: v1.2
class: Workflow
label: Sort then count
requirements:
  - class: StepInputExpressionRequirement
inputs:
  infile: File
outputs:
  line_count:
    type: File
    outputSource: count/count
steps:
  sort:
    run: sort.cwl
    in: {unsorted: infile}
    out: [sorted]
  count:
    run: count.cwl
    in: {text: sort/sorted}
    out: [count]
