cwlVersion: v1.2
class: Workflow
doc: Scatter a line count over several files; the result is an array of Files and of ints.
requirements:
  ScatterFeatureRequirement: {}
  InlineJavascriptRequirement: {}
inputs:
  files: File[]
outputs:
  counts: {type: 'File[]', outputSource: count/out}
  numbers: {type: 'int[]', outputSource: count/n}
steps:
  count:
    in: {f: files}
    scatter: f
    out: [out, n]
    run:
      class: CommandLineTool
      baseCommand: [wc, -l]
      stdin: $(inputs.f.path)
      inputs: {f: File}
      outputs:
        out: {type: stdout}
        n:
          type: int
          outputBinding:
            glob: $(inputs.f.nameroot).count
            loadContents: true
            outputEval: $(parseInt(self[0].contents))
      stdout: $(inputs.f.nameroot).count
