cwlVersion: v1.2
class: Workflow
doc: Two steps, sort a file then count its lines.
inputs:
  infile: File
outputs:
  count:
    type: File
    outputSource: count/out
steps:
  sort:
    in: {infile: infile}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: sort
      inputs:
        infile: {type: File, inputBinding: {position: 1}}
      stdout: sorted.txt
      outputs:
        out: {type: stdout}
  count:
    in: {infile: sort/out}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [wc, -l]
      inputs:
        infile: {type: File, inputBinding: {position: 1}}
      stdout: count.txt
      outputs:
        out: {type: stdout}
