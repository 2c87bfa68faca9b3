cwlVersion: v1.2
class: CommandLineTool
doc: A record input, an enum input, defaults, and a record output.
requirements:
  InlineJavascriptRequirement: {}
baseCommand: echo
inputs:
  sample:
    type:
      type: record
      name: Sample
      fields:
        name: {type: string, inputBinding: {position: 1}}
        reads: {type: int, inputBinding: {position: 2}}
  mode:
    type: {type: enum, symbols: [fast, slow], name: Mode}
    inputBinding: {position: 3}
  repeat: {type: int, default: 2, inputBinding: {position: 4}}
  label: {type: string, default: none, inputBinding: {position: 5}}
outputs:
  said: {type: stdout}
  summary:
    type:
      type: record
      name: Summary
      fields:
        name: {type: string, outputBinding: {outputEval: $(inputs.sample.name)}}
        mode: {type: string, outputBinding: {outputEval: $(inputs.mode)}}
        total: {type: int, outputBinding: {outputEval: $(inputs.sample.reads * inputs.repeat)}}
stdout: said.txt
