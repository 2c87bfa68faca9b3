cwlVersion: v1.2
class: Workflow
doc: Two steps, the second consuming the first's output.
inputs:
  infile: File
outputs:
  sorted: {type: File, outputSource: sort/out}
  lines: {type: File, outputSource: count/out}
steps:
  sort:
    in: {f: infile}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: sort
      inputs: {f: {type: File, inputBinding: {position: 1}}}
      outputs: {out: {type: stdout}}
      stdout: sorted.txt
  count:
    in: {f: sort/out}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [wc, -l]
      stdin: $(inputs.f.path)
      inputs: {f: File}
      outputs: {out: {type: stdout}}
      stdout: count.txt
